import { test } from 'uvu'
import { memberIndex } from '../../src/protocol/manifest.ts'
import * as assert from 'uvu/assert'
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { DataDir } from '../../src/node/datadir.ts'
import { NodeIdentity } from '../../src/privacy/index.ts'
import { makeCluster, startNode, messages, waitFor, withTimeout, getJson, checkDataDir, type Running } from './cluster.ts'

test('four nodes, four processes: three certified rounds, the same model everywhere; an outsider is refused', async () => {
  const c = await makeCluster(4, { threshold: 3, rounds: 3 })
  const nodes: Running[] = c.dirs.map(startNode)
  try {
    // an outsider (not in the manifest) dials member 0: the gater refuses it
    await waitFor(() => messages(nodes[0]).includes('listening'), 60_000, 'node 0 to listen')
    const outsider = await createLibp2p({ privateKey: NodeIdentity.generate().toLibp2pPrivateKey(), transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    let refused = false
    try {
      const conn = await outsider.dial(multiaddr(`/ip4/127.0.0.1/tcp/${c.p2p[0]}/p2p/${c.ids[0]}`), { signal: AbortSignal.timeout(5000) })
      await waitFor(() => conn.status !== 'open', 5000, 'the member to close the outsider\'s connection')
      refused = true
    } catch { refused = true }
    await outsider.stop()
    assert.ok(refused, 'the outsider could not stay connected')
    const metrics = await getJson(c.http[0], '/metrics')
    assert.match(metrics, /medmesh_refused_connections_total [1-9]/)

    const codes = await withTimeout(Promise.all(nodes.map(n => n.exit)), 240_000, 'nodes to finish three rounds')
    assert.equal(codes, [0, 0, 0, 0], nodes.map(n => messages(n).slice(-5).join(' | ')).join('\n'))
    const results = c.dirs.map(checkDataDir)
    for (const r of results) assert.ok(r.updates >= 3, `${r.updates} update rounds`)
    assert.is(new Set(results.map(r => r.model)).size, 1, 'one model hash on every node')
    assert.ok(messages(nodes[1]).some(m => /round \d+: validation of the certified model [0-9a-f]{12}: AUC/.test(m)), 'progress lines with validation metrics')

    // restarted after it finished, alone: it says so at once and stops, without waiting for members
    const t0 = Date.now()
    const again = startNode(c.dirs[1])
    nodes.push(again)
    assert.is(await withTimeout(again.exit, 30_000, 'the finished node to stop'), 0)
    const seconds = (Date.now() - t0) / 1000
    assert.ok(messages(again).some(m => /3 round\(s\) certified: stopping/.test(m)), messages(again).slice(-5).join(' | '))
    assert.ok(seconds < 20, `stopped after ${seconds} s`)
  } finally {
    for (const n of nodes) n.proc.kill('SIGKILL')
    rmSync(c.root, { recursive: true, force: true })
  }
})

test('kill -9 mid-round: the others finish it; the node restarts, verifies, catches up and rejoins', async () => {
  const c = await makeCluster(4, { threshold: 3, rounds: 5 })
  const nodes: Running[] = c.dirs.map(startNode)
  try {
    // wait until round 1 (the first model round) is certified, then kill node 3 while round 2 runs
    await waitFor(() => messages(nodes[3]).some(m => /^round 2: .*; now (share-keys|masked-input|survivor-set)$/.test(m)), 120_000, 'node 3 to be inside round 2')
    nodes[3].proc.kill('SIGKILL')
    await nodes[3].exit
    await waitFor(() => messages(nodes[0]).some(m => /round 2 certified/.test(m)), 120_000, 'the others to certify round 2 without node 3')
      .catch((e: Error) => { throw new Error(`${e.message}; node 0 said: ${messages(nodes[0]).slice(-12).join(' | ')}`) })
    // restart from the same data directory
    const again = startNode(c.dirs[3])
    nodes[3] = again
    await waitFor(() => messages(again).some(m => /ledger verified: \d+ certified/.test(m)), 60_000, 'the ledger check on restart')
    const codes = await withTimeout(Promise.all(nodes.map(n => n.exit)), 300_000, 'all nodes to finish')
    assert.equal(codes, [0, 0, 0, 0], nodes.map(n => messages(n).slice(-6).join(' | ')).join('\n'))
    const results = c.dirs.map(checkDataDir)
    assert.is(new Set(results.map(r => r.model)).size, 1, 'the restarted node ends with the same model')
    const ledger = new DataDir(c.dirs[0]).ledger(new DataDir(c.dirs[0]).manifest())
    const member3 = memberIndex(ledger.manifest, c.ids[3])
    const lastRounds = ledger.entries.slice(-2).map(e => e.header.survivors)
    assert.ok(lastRounds.some(u => u.includes(member3)), `node 3 took part again: survivors ${JSON.stringify(lastRounds)}`)
  } finally {
    for (const n of nodes) n.proc.kill('SIGKILL')
    rmSync(c.root, { recursive: true, force: true })
  }
})

test('a node that stopped holding a certificate but not yet its model resumes from what it has and catches up', async () => {
  const c = await makeCluster(3, { threshold: 2, rounds: 2, phaseMs: 3000 })
  let nodes: Running[] = c.dirs.map(startNode)
  try {
    assert.equal(await withTimeout(Promise.all(nodes.map(n => n.exit)), 240_000, 'two rounds'), [0, 0, 0])
    // the window the soak found: the certificate is on disk, the model it certifies is not
    for (const f of readdirSync(join(c.dirs[2], 'states'))) rmSync(join(c.dirs[2], 'states', f))
    for (const d of c.dirs) {
      const file = join(d, 'config.json')
      writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), rounds: 3 }))
    }
    nodes = c.dirs.map(startNode)
    assert.equal(await withTimeout(Promise.all(nodes.map(n => n.exit)), 240_000, 'a third round'), [0, 0, 0], messages(nodes[2]).slice(-5).join(' | '))
    assert.ok(messages(nodes[2]).some(m => /is not in .*resuming from round/.test(m)), 'it said what it did')
    const results = c.dirs.map(checkDataDir)
    assert.is(new Set(results.map(r => r.model)).size, 1, 'the same model everywhere')
    assert.ok(results.every(r => r.updates >= 3))
  } finally {
    for (const n of nodes) n.proc.kill('SIGKILL')
    rmSync(c.root, { recursive: true, force: true })
  }
})

test('SIGTERM while training: the node stops within 2 s and sends nothing after the signal', async () => {
  const c = await makeCluster(2, { threshold: 2, rounds: 1, phaseMs: 60_000, epochs: 3 })
  const nodes: Running[] = c.dirs.map(startNode)
  try {
    let s: any = null
    await waitFor(() => { void getJson(c.http[0], '/status').then(x => { s = x }, () => {}); return s?.training != null }, 120_000, 'node 0 to train')
    const before = messages(nodes[0]).length
    const t0 = performance.now()
    nodes[0].proc.kill('SIGTERM')
    assert.is(await withTimeout(nodes[0].exit, 10_000, 'node 0 to stop'), 0)
    const seconds = (performance.now() - t0) / 1000
    const after = messages(nodes[0]).slice(before)
    assert.ok(seconds < 2, `stopped ${seconds.toFixed(2)} s after SIGTERM: ${after.join(' | ')}`)
    assert.ok(after.includes('stopped'), after.join(' | '))
    assert.ok(!after.some(m => /masked input sent|now survivor-set|now commit/.test(m)), `nothing sent after the signal: ${after.join(' | ')}`)
  } finally {
    for (const n of nodes) n.proc.kill('SIGKILL')
    rmSync(c.root, { recursive: true, force: true })
  }
})

test('a node that trains keeps serving: /status answers within 100 ms and gossip is validated and relayed while its worker trains', async () => {
  const c = await makeCluster(3, { threshold: 3, rounds: 1, phaseMs: 60_000 })
  // hospital 0 trains far longer than the others (its own override): their messages arrive while it trains
  const file = join(c.dirs[0], 'config.json')
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), epochs: 2 }))
  const nodes: Running[] = c.dirs.map(startNode)
  try {
    const samples: Array<{ ms: number, training: boolean, accepted: number }> = []
    const exited = Promise.all(nodes.map(n => n.exit))
    let done = false
    void exited.then(() => { done = true })
    while (!done) {
      const t0 = performance.now()
      const s = await getJson(c.http[0], '/status').catch(() => null)
      const ms = performance.now() - t0
      if (s !== null && s.training !== null) {
        const metrics = await getJson(c.http[0], '/metrics') as string
        samples.push({ ms, training: true, accepted: Number(/medmesh_gossip_accepted_total (\d+)/.exec(metrics)?.[1] ?? NaN) })
      }
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    assert.equal(await exited, [0, 0, 0], nodes.map(n => messages(n).slice(-5).join(' | ')).join('\n'))
    assert.ok(samples.length >= 10, `${samples.length} answers while node 0 trained: a training long enough to matter`)
    const worst = Math.max(...samples.map(x => x.ms))
    assert.ok(worst < 100, `/status took up to ${worst.toFixed(0)} ms while the node trained`)
    assert.ok(samples[samples.length - 1].accepted > samples[0].accepted, `gossip accepted while training: ${samples[0].accepted} → ${samples[samples.length - 1].accepted}`)
    assert.ok(messages(nodes[0]).some(m => /round 1: training on 2 epoch\(s\)/.test(m)))
  } finally {
    for (const n of nodes) n.proc.kill('SIGKILL')
    rmSync(c.root, { recursive: true, force: true })
  }
})

test.run()
