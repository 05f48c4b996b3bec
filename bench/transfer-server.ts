/**
 * The serving side of bench/transfer, run in a worker thread so that sender and receiver each
 * have a core, as two hospitals' nodes do. It serves one random blob (transfer-common.ts) and
 * posts back the addresses.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { serveBlob } from './transfer-common.ts'

const { seed, manifestInput, bytes } = workerData as { seed: Uint8Array, manifestInput: unknown, bytes: number }
const served = await serveBlob(seed, manifestInput, bytes, '/tmp/bench-transfer-worker')
parentPort!.postMessage({ addr: served.addr, blobHash: served.blobHash, port: served.port })
parentPort!.once('message', () => { void served.stop().then(() => { parentPort!.close() }) })
