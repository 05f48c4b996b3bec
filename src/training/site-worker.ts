/**
 * The worker thread that trains for a WorkerSite (worker-site.ts): it opens the site on its own
 * TF.js backend and answers one request at a time, so that the thread that started it (a node
 * serving the network) never waits on a training step. The images arrive in shared memory (no
 * copy); the privacy budget arrives with each request and goes back with the answer, so the
 * owner of the budget (the node, which keeps it on disk) stays the only one that counts it.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { getHeapStatistics } from 'node:v8'
import * as tf from '@tensorflow/tfjs-core'
import { PrivacyBudget, deriveKey, seededRandom } from '../privacy/index.ts'
import { Site } from './site.ts'
import { sharedAllReduce } from './all-reduce.ts'
import type { SiteInit, SiteReply, SiteRequest } from './worker-site.ts'

const init = workerData as SiteInit

/** this thread's memory: the wasm backend's heap where it runs, and V8's */
function memory (): { wasmBytes: number, heapBytes: number } {
  const wasm = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8?.byteLength ?? 0
  return { wasmBytes: wasm, heapBytes: getHeapStatistics().used_heap_size }
}
const port = parentPort!

async function main (): Promise<void> {
  const site = await Site.open(init.spec, init.data, { ...init.options, budget: init.budget === null ? null : PrivacyBudget.fromJSON(init.budget) })
  // one of several workers that split each batch: the shared sum of their gradients
  const joinParallel = (p: NonNullable<SiteInit['parallel']>): void => { site.options.parallel = sharedAllReduce(p.buffers, p.index, p.count) }
  /** this worker's place among those that split each batch (0 alone) */
  const workerIndex = (): number => site.options.parallel?.index ?? 0
  if (init.parallel !== null) joinParallel(init.parallel)
  const reply = (r: SiteReply, transfer: ArrayBuffer[] = []): void => { port.postMessage(r, transfer) }
  reply({ type: 'ready', backend: site.backend!, initialWeights: site.initialWeights(), variantWeights: (init.spec.model.widthFactors ?? []).map(f => [f, site.initialWeights(f)]), noiseMultiplier: site.noiseMultiplier })
  port.on('message', (q: SiteRequest) => {
    try {
      if (q.type === 'statistics') { site.useStatistics(q.stats); return }
      if (q.type === 'parallel') { joinParallel(q.parallel); return }
      if (q.type === 'update') {
        if (q.budget !== null) site.options.budget = PrivacyBudget.fromJSON(q.budget)
        // a simulation's DP noise: one stream per round from the public seed, so that it repeats
        // even if this worker is replaced between rounds; each of several workers its own stream
        // (they draw the noise of different coordinates: one stream would repeat its values)
        const index = workerIndex()
        const worker = index === 0 ? [] : [index & 0xff, (index >> 8) & 0xff]
        if (init.noiseSeed !== null) site.options.noiseRandom = seededRandom(deriveKey(init.noiseSeed, 'seeded-random', Uint8Array.of(0xd9, q.round & 0xff, (q.round >> 8) & 0xff, (q.round >> 16) & 0xff, ...worker)))
        const u = site.update(q.weights, q.round, q.modelRound, q.recipe)
        reply({ type: 'updated', id: q.id, values: u.values, count: u.count, train: site.lastTrain!, budget: site.options.budget?.toJSON() ?? null, memory: memory() }, [u.values.buffer as ArrayBuffer])
      } else if (q.type === 'predictions') {
        reply({ type: 'predictions', id: q.id, result: site.predictions(q.weights, q.split) })
      } else {
        reply({ type: 'evaluated', id: q.id, result: site.evaluate(q.weights, q.split) })
      }
    } catch (e) {
      reply({ type: 'failed', id: 'id' in q ? q.id : -1, message: (e as Error).message })
    }
  })
}

main().catch(e => { port.postMessage({ type: 'failed', id: -1, message: (e as Error).message } satisfies SiteReply) })
