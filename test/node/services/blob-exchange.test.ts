/** The blob exchange with a network in memory: serving, fetching from any holder, and refusing what does not check. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as lp from 'it-length-prefixed'
import { pipe } from 'it-pipe'
import { createBlobExchange, type BlobExchange } from '../../../src/node/services/blob-exchange.ts'
import { createMetrics } from '../../../src/node/metrics.ts'
import { BLOB_PROTOCOL, FRAME_BYTES, MAX_BLOB_BYTES, readFramed, sendFramed, parseBlobRequest } from '../../../src/node/wire.ts'
import { encodeCanonical, hash, hex } from '../../../src/protocol/codec.ts'
import { systemClock } from '../../../src/node/clock.ts'
import { MemoryHub, recordingLogger } from './stubs.ts'

const A = 'peer-a'; const B = 'peer-b'; const C = 'peer-c'; const OUTSIDER = 'peer-x'
const members = new Set([A, B, C])
const blob = Uint8Array.from({ length: 3 * FRAME_BYTES + 17 }, (_, i) => (i * 7) & 0xff)
const blobHash = hex(hash(blob))

function exchange (hub: MemoryHub, self: string, held: Map<string, Uint8Array> = new Map()): { ex: BlobExchange, lines: ReturnType<typeof recordingLogger>['lines'], metrics: ReturnType<typeof createMetrics> } {
  const { log, lines } = recordingLogger()
  const metrics = createMetrics()
  const ex = createBlobExchange({ network: hub.network(self), isMember: p => members.has(p), storedState: h => held.get(h) ?? null, log, metrics, clock: systemClock }, { retryMs: 5 })
  return { ex, lines, metrics }
}

async function roundBytes (metrics: ReturnType<typeof createMetrics>): Promise<Array<{ round: string, kind: string, value: number }>> {
  const m = await metrics.registry.getSingleMetric('medmesh_round_bytes_sent_total')!.get()
  return m.values.map(v => ({ round: String(v.labels.round), kind: String(v.labels.kind), value: v.value }))
}

test('a member fetches a published blob by hash, checked, and the bytes count towards its round', async () => {
  const hub = new MemoryHub()
  const a = exchange(hub, A); const b = exchange(hub, B)
  await a.ex.start(); await b.ex.start()
  a.ex.publish(blobHash, blob, 'masked-vector', 4)
  const got = await b.ex.fetch({ hash: blobHash, what: 'masked-vector', round: 4, preferred: A, wanted: () => true })
  assert.ok(got !== null && hex(hash(got)) === blobHash)
  assert.equal(await roundBytes(a.metrics), [{ round: '4', kind: 'masked-vector', value: blob.length }])
  // content-addressed: B now serves it too
  const c = exchange(hub, C); await c.ex.start()
  await a.ex.stop()
  const again = await c.ex.fetch({ hash: blobHash, what: 'masked-vector', round: 4, preferred: A, wanted: () => true })
  assert.ok(again !== null && hex(hash(again)) === blobHash, 'served by B once A is gone')
})

test('a certified state on disk is served; a blob nobody holds is retried until no longer wanted', async () => {
  const hub = new MemoryHub()
  const a = exchange(hub, A, new Map([[blobHash, blob]])); const b = exchange(hub, B)
  await a.ex.start(); await b.ex.start()
  assert.ok(await b.ex.fetch({ hash: blobHash, what: 'state', round: 2, preferred: A, wanted: () => true }) !== null)
  let asked = 0
  const missing = await b.ex.fetch({ hash: 'ab'.repeat(32), what: 'state', round: 2, preferred: A, wanted: () => ++asked < 4 })
  assert.is(missing, null)
  assert.is(asked, 4, 'asked again after each pass, then gave up')
})

test('a blob that does not match its hash is refused, and the honest holder serves it', async () => {
  const hub = new MemoryHub()
  const liar = hub.network(A)
  await liar.handle(BLOB_PROTOCOL, async (channel) => {
    await readFramed(channel, 1024, parseBlobRequest, () => 0)
    const forged = blob.slice(); forged[5] ^= 1
    await sendFramed(channel, { n: forged.length }, forged)
  }, 8)
  const honest = exchange(hub, B); await honest.ex.start()
  honest.ex.publish(blobHash, blob, 'state', 3)
  const c = exchange(hub, C); await c.ex.start()
  const got = await c.ex.fetch({ hash: blobHash, what: 'state', round: 3, preferred: A, wanted: () => true })
  assert.ok(got !== null && hex(hash(got)) === blobHash)
  assert.ok(c.lines.some(l => l.level === 'warn' && l.fields.peer === A && /does not match its hash/.test(l.msg)), 'the liar is named')
})

test('a frame over the limit or a length over the blob limit ends that fetch; the node goes on', async () => {
  const hub = new MemoryHub()
  const rogue = hub.network(A)
  let served = 0
  await rogue.handle(BLOB_PROTOCOL, async (channel) => {
    await readFramed(channel, 1024, parseBlobRequest, () => 0)
    served++
    if (served % 2 === 1) await pipe([new Uint8Array(FRAME_BYTES + 1)], src => lp.encode(src), channel.sink)
    else await pipe([encodeCanonical({ n: MAX_BLOB_BYTES + 1 })], src => lp.encode(src), channel.sink)
  }, 8)
  const c = exchange(hub, C); await c.ex.start()
  let passes = 0
  const got = await c.ex.fetch({ hash: blobHash, what: 'state', round: 1, preferred: A, wanted: () => ++passes <= 2 })
  assert.is(got, null)
  const failures = c.lines.filter(l => l.level === 'debug' && l.fields.peer === A && /blob fetch failed/.test(l.msg))
  assert.is(failures.length, 2, failures.map(f => f.msg).join('; '))
  assert.match(failures[0].msg, /too long/, 'the frame over 1 MiB')
  assert.match(failures[1].msg, new RegExp(`\\[0, ${MAX_BLOB_BYTES}\\]`), 'the length over the blob limit')
})

test('a request from a non-member is refused and logged; a second fetch of a hash under way returns at once', async () => {
  const hub = new MemoryHub()
  const a = exchange(hub, A); await a.ex.start()
  a.ex.publish(blobHash, blob, 'masked-vector', 1)
  const outsider = hub.network(OUTSIDER)
  const channel = await outsider.open(A, BLOB_PROTOCOL, 1000)
  await sendFramed(channel, { h: Uint8Array.from(Buffer.from(blobHash, 'hex')) })
  let refused = false
  try { await readFramed(channel, 1024, () => 0, () => 0) } catch { refused = true }
  assert.ok(refused, 'the stream is aborted')
  assert.ok(a.lines.some(l => l.level === 'warn' && l.fields.peer === OUTSIDER && /non-member/.test(l.msg)))

  const b = exchange(hub, B); await b.ex.start()
  let release = false
  const first = b.ex.fetch({ hash: 'cd'.repeat(32), what: 'state', round: 1, preferred: A, wanted: () => !release })
  assert.is(await b.ex.fetch({ hash: 'cd'.repeat(32), what: 'state', round: 1, preferred: A, wanted: () => true }), null)
  release = true
  assert.is(await first, null)
})

test('blobs of rounds before the one given are forgotten', async () => {
  const hub = new MemoryHub()
  const a = exchange(hub, A); const b = exchange(hub, B)
  await a.ex.start(); await b.ex.start()
  a.ex.publish(blobHash, blob, 'masked-vector', 2)
  a.ex.prune(3)
  let passes = 0
  assert.is(await b.ex.fetch({ hash: blobHash, what: 'masked-vector', round: 2, preferred: A, wanted: () => ++passes <= 1 }), null)
})

test.run()
