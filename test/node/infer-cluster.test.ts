/**
 * Encrypted inference from a running node: three members train medmesh/he-cnn; member 0 also
 * serves encrypted inference; a clinic the manifest lists gets, with `medmesh infer --encrypted`,
 * what `medmesh predict` gives a member in the clear; a peer the manifest does not list is refused.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { spawn, type ChildProcess } from 'node:child_process'
import { makeCluster, startNode, messages, waitFor, cli, freePorts, BIN, type Running } from './cluster.ts'
import { pngOf } from '../helpers/images.ts'
import { loadMedMnist, BUNDLED_PNEUMONIAMNIST } from '../../src/training/data/npz.ts'

test('a listed clinic\'s encrypted predictions match the member\'s plaintext ones; an unlisted peer is refused', async () => {
  const clinicDir = join('/tmp', `medmesh-clinic-${process.pid}`)
  const strangerDir = `${clinicDir}-stranger`
  const clinicId = cli('init', '--data-dir', clinicDir).stdout.trim()
  cli('init', '--data-dir', strangerDir)
  const c = await makeCluster(3, { threshold: 2, rounds: 3, epochs: 0.5, manifestArgs: ['--model', 'medmesh/he-cnn', '--inference-client', `${clinicId}=clinic`, '--learning-rate', '0.003'] })
  const [port, servePort] = await freePorts(2)
  const config = join(c.dirs[0], 'config.json')
  writeFileSync(config, JSON.stringify({ ...JSON.parse(readFileSync(config, 'utf8')), inferenceListen: [`/ip4/127.0.0.1/tcp/${port}`] }))
  const nodes: Running[] = c.dirs.map(startNode)
  let server: ChildProcess | undefined
  try {
    // a node that trains serves encrypted inference too when its config says where
    await waitFor(() => messages(nodes[0]).includes('serving encrypted inference'), 60_000, 'node 0 to serve inference')
    const codes = await Promise.all(nodes.map(n => n.exit))
    assert.equal(codes, [0, 0, 0], nodes.map(n => messages(n).slice(-3).join(' | ')).join('\n'))

    // training done: the member serves its data directory's certified model
    server = spawn(process.execPath, [BIN, 'serve', '--data-dir', c.dirs[0], '--inference-listen', `/ip4/127.0.0.1/tcp/${servePort}`], { env: { ...process.env, MEDMESH_LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let printed = ''
    server.stdout!.on('data', (b: Buffer) => { printed += b.toString() })
    server.stderr!.on('data', (b: Buffer) => { printed += b.toString() })
    // its log line (JSON, which also names the address) may come before the lines it prints
    const addressLine = (): string | undefined => printed.split('\n').map(l => l.trim()).find(l => l.startsWith(`/ip4/127.0.0.1/tcp/${servePort}/p2p/`))
    await waitFor(() => addressLine() !== undefined, 60_000, 'medmesh serve to print its address')
    const address = addressLine()!
    assert.match(printed, /serving round \d+ \(state [0-9a-f]{16}\) of 'test consortium'/)

    const test = loadMedMnist(BUNDLED_PNEUMONIAMNIST).test!
    const folder = join(c.root, 'images')
    mkdirSync(folder)
    for (let i = 0; i < 3; i++) writeFileSync(join(folder, `img${i}.png`), pngOf(28, 28, test.pixels.subarray(i * 784, (i + 1) * 784)))

    const enc = await cliAsync('infer', '--encrypted', '--peer', address, '--identity', clinicDir, '--json', folder)
    assert.is(enc.status, 0, enc.stderr)
    const encrypted = JSON.parse(enc.stdout)
    const plain = JSON.parse(cli('predict', '--data-dir', c.dirs[0], '--json', folder).stdout)
    assert.is(encrypted.model.round, plain.model.round)
    assert.is(encrypted.predictions.length, 3)
    for (const [i, p] of encrypted.predictions.entries()) {
      const q = plain.predictions[i]
      assert.is(p.file, q.file)
      // the same class, unless the plaintext model itself is within CKKS's error of undecided
      if (Math.abs(Math.max(...Object.values(q.probabilities as Record<string, number>)) - 0.5) > 0.01) assert.is(p.predicted, q.predicted)
      for (const k of Object.keys(q.probabilities)) assert.ok(Math.abs(p.probabilities[k] - q.probabilities[k]) < 1e-2, `${p.file} ${k}: ${p.probabilities[k]} vs ${q.probabilities[k]}`)
    }
    const text = await cliAsync('infer', '--encrypted', '--peer', address, '--identity', clinicDir, join(folder, 'img0.png'))
    assert.match(text.stdout, /img0\.png\t(normal|pneumonia)\tnormal 0\.\d{4}\tpneumonia 0\.\d{4}/)

    const refused = await cliAsync('infer', '--encrypted', '--peer', address, '--identity', strangerDir, folder)
    assert.is(refused.status, 69, refused.stderr)
    assert.match(refused.stderr, /the holder at .* could not be asked/)
    const logged = printed
    assert.match(logged, /inference connection refused/)
    assert.is((logged.match(/inference query answered/g) ?? []).length, 4)
  } finally {
    server?.kill('SIGKILL')
    for (const n of nodes) n.proc.kill('SIGKILL')
    rmSync(c.root, { recursive: true, force: true }); rmSync(clinicDir, { recursive: true, force: true }); rmSync(strangerDir, { recursive: true, force: true })
  }
})

/** the CLI in a child process without blocking this one (the server runs in another) */
async function cliAsync (...args: string[]): Promise<{ status: number | null, stdout: string, stderr: string }> {
  const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, MEDMESH_LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''; let stderr = ''
  p.stdout!.on('data', (b: Buffer) => { stdout += b.toString() })
  p.stderr!.on('data', (b: Buffer) => { stderr += b.toString() })
  const status = await new Promise<number | null>(resolve => p.on('exit', code => resolve(code)))
  return { status, stdout, stderr }
}

test.run()
