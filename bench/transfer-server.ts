/**
 * The serving side of bench/transfer, run in a worker thread so that sender and receiver each
 * have a core, as two hospitals' nodes do. It serves one random blob both through the blob
 * protocol (a medmesh host) and over a raw TCP socket, and posts back the addresses.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { createServer } from 'node:net'
import { serveBlob } from './transfer-common.ts'

const { seed, manifestInput, bytes } = workerData as { seed: Uint8Array, manifestInput: unknown, bytes: number }
const served = await serveBlob(seed, manifestInput, bytes, '/tmp/bench-transfer-worker')
const server = createServer(socket => { socket.end(served.blob) })
await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
parentPort!.postMessage({ addr: served.addr, blobHash: served.blobHash, port: (server.address() as { port: number }).port })
parentPort!.once('message', () => {
  server.close()
  void served.stop().then(() => { parentPort!.close() })
})
