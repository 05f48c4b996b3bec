/** What both layouts of bench/transfer share: one random blob served by the blob protocol and over a raw TCP socket. */
import { randomFillSync } from 'node:crypto'
import { createServer } from 'node:net'
import { NodeIdentity } from '../src/privacy/index.ts'
import { validateManifest } from '../src/protocol/manifest.ts'
import { createHost } from '../src/node/host.ts'
import { DEFAULTS, type NodeConfig } from '../src/node/config.ts'
import { BLOB_PROTOCOL, sendFramed, readFramed, parseBlobRequest } from '../src/node/wire.ts'
import { channelOf } from '../src/node/network.ts'
import { hash, hex } from '../src/protocol/codec.ts'

export const hostConfig = (dir: string): NodeConfig => ({ ...DEFAULTS, dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], http: 'off' })

export interface ServedBlob { blobHash: string, addr: string, port: number, stop: () => Promise<void> }

export async function serveBlob (seed: Uint8Array, manifestInput: unknown, bytes: number, dir: string): Promise<ServedBlob> {
  const blob = new Uint8Array(bytes)
  randomFillSync(blob)
  const host = await createHost(hostConfig(dir), NodeIdentity.fromSeed(seed), validateManifest(manifestInput), { onRefused: () => {}, denied: new Set() })
  await host.handle(BLOB_PROTOCOL, async (stream) => {
    const channel = channelOf(stream)
    await readFramed(channel, 1024, parseBlobRequest, () => 0)
    await sendFramed(channel, { n: blob.length }, blob)
  })
  const raw = createServer(socket => { socket.end(blob) })
  await new Promise<void>(resolve => raw.listen(0, '127.0.0.1', resolve))
  const port = (raw.address() as { port: number }).port
  return { blobHash: hex(hash(blob)), addr: host.getMultiaddrs()[0].toString(), port, stop: async () => { raw.close(); await host.stop() } }
}
