/**
 * bench/transfer: a 44.8 MB masked vector (ResNet-18's 11.2M parameters as uint32) between two
 * nodes over loopback through medmesh's blob protocol (libp2p TCP + Noise + Yamux, 1 MiB
 * length-prefixed frames, SHA-256 check on arrival), and the same bytes over a raw TCP socket,
 * side by side in one process. Target: >= 0.5x the raw socket. Last line: one JSON object.
 *
 * Usage: npm run bench:transfer [-- --mb 44.8 --reps 3]
 */
import { createServer, connect } from 'node:net'
import { parseArgs } from 'node:util'
import { randomFillSync } from 'node:crypto'
import { NodeIdentity } from '../src/privacy/index.ts'
import { defaultParams, validateManifest } from '../src/protocol/manifest.ts'
import { createHost, type MedmeshHost } from '../src/node/host.ts'
import { DEFAULTS, type NodeConfig } from '../src/node/config.ts'
import { BLOB_PROTOCOL, sendFramed, readFramed, parseBlobRequest, parseBlobHeader, checkBlob } from '../src/node/wire.ts'
import { channelOf } from '../src/node/network.ts'
import { hash, hex } from '../src/protocol/codec.ts'

const { values } = parseArgs({ options: { mb: { type: 'string', default: '44.8' }, reps: { type: 'string', default: '3' } } })
const bytes = Math.round(Number(values.mb) * 1e6)
const reps = Number(values.reps)
const blob = new Uint8Array(bytes)
randomFillSync(blob)
const blobHash = hex(hash(blob))

const ids = [NodeIdentity.generate(), NodeIdentity.generate()]
const manifest = validateManifest({ version: 1, name: 'bench', members: ids.map((id, i) => ({ peerId: id.peerId, name: `n${i}` })), params: defaultParams(2, 1, '0'.repeat(64)) })
const config = (dir: string): NodeConfig => ({ ...DEFAULTS, dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], http: 'off' })
const hosts: MedmeshHost[] = await Promise.all(ids.map(async (id, i) => await createHost(config(`/tmp/bench-${i}`), id, manifest, { onRefused: () => {}, denied: new Set() })))
await hosts[0].handle(BLOB_PROTOCOL, async (stream) => {
  const channel = channelOf(stream)
  await readFramed(channel, 1024, parseBlobRequest, () => 0)
  await sendFramed(channel, { n: blob.length }, blob)
})
await hosts[1].dial(hosts[0].getMultiaddrs()[0])

async function viaBlobProtocol (): Promise<number> {
  const t0 = performance.now()
  const channel = channelOf(await hosts[1].dialProtocol(hosts[0].peerId, BLOB_PROTOCOL))
  await sendFramed(channel, { h: Uint8Array.from(Buffer.from(blobHash, 'hex')) })
  const { body } = await readFramed(channel, 1024, parseBlobHeader, n => n)
  if (!checkBlob(blobHash, body)) throw new Error('blob corrupted in transit')
  return performance.now() - t0
}

const server = createServer(socket => { socket.end(blob) })
await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
const port = (server.address() as { port: number }).port
async function viaRawSocket (): Promise<number> {
  const t0 = performance.now()
  const received = new Uint8Array(bytes)
  let off = 0
  await new Promise<void>((resolve, reject) => {
    const s = connect(port, '127.0.0.1')
    s.on('data', (chunk: Buffer) => { received.set(chunk, off); off += chunk.length })
    s.on('end', () => resolve())
    s.on('error', reject)
  })
  if (off !== bytes) throw new Error('short read')
  return performance.now() - t0
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
await viaBlobProtocol(); await viaRawSocket() // warm-up
const p2p: number[] = []
const raw: number[] = []
for (let r = 0; r < reps; r++) { p2p.push(await viaBlobProtocol()); raw.push(await viaRawSocket()) }
const p = median(p2p)
const t = median(raw)
console.log(`${(bytes / 1e6).toFixed(1)} MB over loopback, median of ${reps}`)
console.log(`raw TCP socket          ${t.toFixed(0)} ms (${(bytes / t / 1e3).toFixed(0)} MB/s)`)
console.log(`medmesh blob protocol   ${p.toFixed(0)} ms (${(bytes / p / 1e3).toFixed(0)} MB/s), hash checked`)
console.log(`blob / raw throughput   ${(t / p).toFixed(2)}x (target >= 0.5x)`)
await Promise.all(hosts.map(async h => { await h.stop() }))
server.close()
console.log(JSON.stringify({ bench: 'transfer', bytes, reps, raw_ms: +t.toFixed(1), blob_ms: +p.toFixed(1), raw_mb_s: +(bytes / t / 1e3).toFixed(1), blob_mb_s: +(bytes / p / 1e3).toFixed(1), ratio: +(t / p).toFixed(3) }))
