/** What both layouts of bench/transfer share: a host serving one random blob by the blob protocol. */
import { randomFillSync } from 'node:crypto'
import { NodeIdentity } from '../src/privacy/index.ts'
import { validateManifest } from '../src/protocol/manifest.ts'
import { createHost } from '../src/node/host.ts'
import { DEFAULTS, type NodeConfig } from '../src/node/config.ts'
import { BLOB_PROTOCOL, sendFramed, readFramed, parseBlobRequest } from '../src/node/wire.ts'
import { channelOf } from '../src/node/network.ts'
import { hash, hex } from '../src/protocol/codec.ts'

export const hostConfig = (dir: string): NodeConfig => ({ ...DEFAULTS, dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], http: 'off' })

export interface ServedBlob { blob: Uint8Array, blobHash: string, addr: string, stop: () => Promise<void> }

export async function serveBlob (seed: Uint8Array, manifestInput: unknown, bytes: number, dir: string): Promise<ServedBlob> {
  const blob = new Uint8Array(bytes)
  randomFillSync(blob)
  const host = await createHost(hostConfig(dir), NodeIdentity.fromSeed(seed), validateManifest(manifestInput), { onRefused: () => {}, denied: new Set() })
  await host.handle(BLOB_PROTOCOL, async (stream) => {
    const channel = channelOf(stream)
    await readFramed(channel, 1024, parseBlobRequest, () => 0)
    await sendFramed(channel, { n: blob.length }, blob)
  })
  return { blob, blobHash: hex(hash(blob)), addr: host.getMultiaddrs()[0].toString(), stop: async () => { await host.stop() } }
}
