/**
 * A consortium founded with `manifest create --init` trains from the given weights, not its
 * seed's: three real node processes, one model round, and the certified model is the given
 * weights moved by a few small steps (from the seed's weights it would be far from them).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdirSync, readFileSync, writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeCluster, startNode, messages, withTimeout, checkDataDir, type Running } from './cluster.ts'
import { decodeState } from '../../src/protocol/model.ts'
import { selectBackend } from '../../src/training/backend.ts'
import { buildModel, flattenWeights } from '../../src/training/models.ts'

const maxApart = (a: Float32Array, b: Float32Array): number => { let m = 0; for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i])); return m }

test('founded with --init: the nodes train from the given weights, checked at join and at start', async () => {
  await selectBackend('auto')
  const spec = { id: 'medmesh/cnn-small' as const, height: 28, width: 28, channels: 1, classes: 2, seed: 1 }
  const model = buildModel(spec)
  const seeded = flattenWeights(model)
  model.dispose()
  // weights no seed would give: the seed's, shifted by ±0.2 in a fixed pattern
  const given = Float32Array.from(seeded, (w, i) => w + (i % 2 === 0 ? 0.2 : -0.2))
  const folder = join(mkdtempSync(join(tmpdir(), 'medmesh-init-')), 'previous')
  mkdirSync(folder)
  writeFileSync(join(folder, 'weights.bin'), new Uint8Array(given.buffer))
  const c = await makeCluster(3, { threshold: 2, rounds: 1, epochs: 0.05, manifestArgs: ['--init', folder], extra: ['--init', folder] })
  const nodes: Running[] = c.dirs.map(startNode)
  try {
    const codes = await withTimeout(Promise.all(nodes.map(n => n.exit)), 180_000, 'nodes to finish a round')
    assert.equal(codes, [0, 0, 0], nodes.map(n => messages(n).slice(-5).join(' | ')).join('\n'))
    const results = c.dirs.map(checkDataDir)
    assert.is(new Set(results.map(r => r.model)).size, 1, 'one model hash on every node')
    const certified = decodeState(new Uint8Array(readFileSync(join(c.dirs[0], 'states', `${results[0].model}.state`))), 1 << 30).weights
    assert.is(certified.length, given.length)
    // a round of a few Adam steps at 0.001 moves no weight by much; the seed's weights are 0.2 away
    assert.ok(maxApart(certified, given) < 0.1, `the certified model is ${maxApart(certified, given).toFixed(3)} from the given weights`)
    assert.ok(maxApart(certified, seeded) > 0.1, 'the certified model is not the seed\'s')
  } finally {
    for (const n of nodes) n.proc.kill('SIGKILL')
  }
})

test.run()
