/**
 * A rogue member (it holds a member's key, so the gater lets it in) sends garbage on every
 * channel a node listens to: gossip (random bytes, truncated and re-signed messages), the blob and
 * ledger protocols (garbage headers, lying lengths, oversized frames, streams that stop halfway).
 * The honest nodes never crash, log each rejection with the peer, and certify every round.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { rmSync } from 'node:fs'
import { pipe } from 'it-pipe'
import * as lp from 'it-length-prefixed'
import { messageStreamToDuplex } from '@libp2p/utils'
import { peerIdFromString } from '@libp2p/peer-id'
import { DataDir } from '../../src/node/datadir.ts'
import { resolveConfig } from '../../src/node/config.ts'
import { createHost } from '../../src/node/host.ts'
import { BLOB_PROTOCOL, LEDGER_PROTOCOL } from '../../src/node/wire.ts'
import { consortiumId, memberIndex } from '../../src/protocol/manifest.ts'
import { encodeCanonical, hex } from '../../src/protocol/codec.ts'
import { PROTOCOL_VERSION } from '../../src/protocol/messages.ts'
import { makeCluster, startNode, messages, records, waitFor, withTimeout, checkDataDir, WARN, type Running } from '../node/cluster.ts'

// both aggregation modes: all-to-all, and sliced (each slice fetched and summed by two aggregators)
for (const mode of [{ name: 'all-to-all', manifestArgs: [] }, { name: 'sliced', manifestArgs: ['--slices', '4'] }]) {
  test(`a member sending garbage on gossip and on every stream protocol: the honest nodes log it, stay up and certify every round [${mode.name}]`, async () => {
    const c = await makeCluster(3, { threshold: 2, rounds: 3, phaseMs: 3000, manifestArgs: mode.manifestArgs })
    // nodes 0 and 1 are honest processes; the test plays member 2 with its real key
    const nodes: Running[] = [startNode(c.dirs[0]), startNode(c.dirs[1])]
    const dir = new DataDir(c.dirs[2])
    const identity = dir.identity(); const manifest = dir.manifest()
    const rogue = await createHost(resolveConfig(c.dirs[2], {}), identity, manifest, { onRefused: () => {}, denied: new Set() })
    const topic = `/medmesh/${hex(consortiumId(manifest))}/v1`
    const me = memberIndex(manifest, identity.peerId)
    let sent = 0
    try {
      rogue.services.pubsub.subscribe(topic)
      await waitFor(() => rogue.getPeers().length >= 2, 60_000, 'the rogue to connect to both honest members')
      const honest = [0, 1].map(i => peerIdFromString(c.ids[i]))
      const garbageStream = async (protocol: string, frames: Uint8Array[], raw = false): Promise<void> => {
        for (const p of honest) {
          try {
            const stream = await rogue.dialProtocol(p, protocol, { signal: AbortSignal.timeout(5000) })
            const duplex = messageStreamToDuplex(stream)
            if (raw) await pipe(frames, duplex.sink)
            else await pipe(frames, (src) => lp.encode(src), duplex.sink)
            sent++
          } catch { sent++ /* the node may reset the stream: that is its answer */ }
        }
      }
      for (let k = 0; k < 40; k++) {
        // gossip: random bytes, and well-formed envelopes signed by this member with bad bodies
        await rogue.services.pubsub.publish(topic, Uint8Array.from({ length: 50 + k * 13 }, (_, i) => (i * 31 + k) & 0xff)).catch(() => {})
        // (sealed by hand: sealMessage writes only the bodies the protocol knows)
        const payload = encodeCanonical({ v: PROTOCOL_VERSION, t: (k % 8) + 1, c: consortiumId(manifest), r: k % 3, a: 0, s: me, b: { junk: new Uint8Array(k) } })
        await rogue.services.pubsub.publish(topic, encodeCanonical([payload, identity.sign('protocol-message', payload)])).catch(() => {})
        sent += 2
        if (k % 8 === 0) {
          await garbageStream(BLOB_PROTOCOL, [Uint8Array.from([1, 2, 3, 4])])
          await garbageStream(BLOB_PROTOCOL, [encodeCanonical({ h: new Uint8Array(31) })])
          await garbageStream(LEDGER_PROTOCOL, [encodeCanonical({ from: -7 })])
          await garbageStream(LEDGER_PROTOCOL, [Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f])], true) // a varint length far over the frame limit
          await garbageStream(LEDGER_PROTOCOL, [encodeCanonical({ from: 0 }), new Uint8Array(2 << 20)])
        }
        await new Promise(resolve => setTimeout(resolve, 100))
      }
      const codes = await withTimeout(Promise.all(nodes.map(n => n.exit)), 300_000, 'the honest nodes to finish their rounds')
      assert.equal(codes, [0, 0], nodes.map(n => messages(n).slice(-4).join(' | ')).join('\n'))
      // a warning naming the rogue peer: a message, record, blob or ledger request refused
      const refusals = (n: Running): number => records(n).filter(x => x.level === WARN && x.peer === identity.peerId).length
      for (const [i, n] of nodes.entries()) {
        assert.ok(refusals(n) > 0, `node ${i} logged rejections naming the rogue peer`)
        checkDataDir(c.dirs[i])
      }
      assert.ok(sent > 100, `${sent} hostile inputs sent`)
      console.log(`  rogue member (${mode.name}): ${sent} hostile inputs sent; honest nodes logged ${nodes.map(refusals).join(' and ')} rejections`)
    } finally {
      await rogue.stop()
      for (const n of nodes) n.proc.kill('SIGKILL')
      rmSync(c.root, { recursive: true, force: true })
    }
  })
}

test.run()
