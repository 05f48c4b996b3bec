import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
// @ts-expect-error plain JavaScript module without type declarations
import { nodeVersionProblem } from '../../bin/node-version.js'

const BIN = fileURLToPath(new URL('../../bin/medmesh.js', import.meta.url))
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' })

test('old Node versions get a clear message, new ones none', () => {
  assert.match(nodeVersionProblem('20.20.2'), /needs Node.js 22.18 or newer; this is Node.js 20.20.2/)
  assert.match(nodeVersionProblem('22.17.0'), /needs Node.js 22.18/)
  assert.is(nodeVersionProblem('22.18.0'), null)
  assert.is(nodeVersionProblem('24.1.0'), null)
})

test('help lists the commands and exits 0', () => {
  const r = run('--help')
  assert.is(r.status, 0)
  assert.match(r.stdout, /Usage: medmesh <command>/)
  assert.match(r.stdout, /dp-epsilon/)
  assert.is(run().status, 0)
})

test('an unknown command or a bad flag: a message, no stack trace, exit 64', () => {
  const r = run('frobnicate')
  assert.is(r.status, 64)
  assert.match(r.stderr, /unknown command 'frobnicate'/)
  const bad = run('dp-epsilon', '--samples', 'many', '--batch', '2', '--noise', '1', '--steps', '3')
  assert.is(bad.status, 64)
  assert.match(bad.stderr, /--samples must be a positive integer, got 'many'/)
  assert.not.match(bad.stderr, /\n\s+at /)
  assert.is(run('dp-epsilon', '--bogus').status, 64)
})

test('dp-epsilon reproduces the accountant', () => {
  const r = run('dp-epsilon', '--samples', '100000', '--batch', '1000', '--noise', '1.0', '--steps', '10', '--delta', '1e-5', '--json')
  assert.is(r.status, 0, r.stderr)
  const j = JSON.parse(r.stdout)
  assert.is(j.q, 0.01)
  assert.is(j.steps, 10)
  assert.ok(j.epsilon > 0.1 && j.epsilon < 2, `ε = ${j.epsilon}`)
  assert.match(run('dp-epsilon', '--help').stdout, /Rényi-DP accountant/)
})

test.run()
