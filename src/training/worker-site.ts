/**
 * A hospital's training site whose work runs in worker threads (site-worker.ts), each with its
 * own TF.js backend: the thread that owns it (a node's event loop) stays free to serve gossip,
 * blobs and /status while a round trains. With W workers every step's batch is split among them
 * and their gradients summed in shared memory (all-reduce.ts), one optimiser step on each
 * replica, so W cores train one model. Every call is asynchronous. A worker that crashes or runs
 * out of memory fails the calls in flight with a clear error; the next call starts fresh workers
 * on the same shared images, so one bad round costs that round only.
 *
 * `TrainingSite` is the surface a node trains through.
 */
import { Worker } from 'node:worker_threads'
import { PrivacyBudget, type PrivacyBudgetState } from '../privacy/index.ts'
import type { BackendChoice } from './backend.ts'
import type { ImageDataset } from './data/dataset.ts'
import { fitData, type SiteData, type SiteOptions, type SiteSpec } from './site.ts'
import { normalisation, pixelStats, statsVector, type Normalisation } from './data/stats.ts'
import type { ClinicalMetrics } from './metrics.ts'
import { allocateReduceBuffers, type SharedReduceBuffers } from './all-reduce.ts'
import type { TrainResult } from './trainer.ts'
import type { CandidateRecipe } from './candidates.ts'

export type Split = 'val' | 'test'
export interface Predictions { probs: Float32Array, labels: Int32Array }

/** What a node needs of its training site; every call that computes is asynchronous. */
export interface TrainingSite {
  readonly options: Pick<SiteOptions, 'epochs' | 'batchSize' | 'budget' | 'minSteps'>
  readonly backend: BackendChoice | null
  readonly norm: Normalisation | undefined
  readonly lastTrain: TrainResult | null
  readonly noiseMultiplier: number | null
  /** how many images this site trains and validates on */
  readonly images: { train: number, validation: number }
  initialWeights: (widthFactor?: number) => Float32Array
  statsInput: () => { values: number[], count: number }
  useStatistics: (combined: ArrayLike<number>) => void
  update: (weights: Float32Array, round: number, modelRound?: number, recipe?: CandidateRecipe) => Promise<{ values: Float32Array, count: number }>
  predictions: (weights: Float32Array, split: Split) => Promise<Predictions | null>
  evaluate: (weights: Float32Array, split: Split) => Promise<ClinicalMetrics | null>
  /** free the model; stop the worker now, whatever it is doing */
  close: () => Promise<void>
}

/** What a worker is started with (its workerData). */
export interface SiteInit {
  spec: SiteSpec
  data: SiteData
  options: Omit<SiteOptions, 'budget' | 'noiseRandom' | 'parallel'>
  budget: PrivacyBudgetState | null
  /** a simulation's public seed for DP noise; null: the CSPRNG */
  noiseSeed: Uint8Array | null
  /** this worker's place among several that split each batch, or null for one alone */
  parallel: { index: number, count: number, buffers: SharedReduceBuffers } | null
}

export type SiteRequest =
  | { type: 'statistics', stats: number[] }
  | { type: 'parallel', parallel: NonNullable<SiteInit['parallel']> }
  | { type: 'update', id: number, weights: Float32Array, round: number, modelRound: number, budget: PrivacyBudgetState | null, recipe?: CandidateRecipe }
  | { type: 'predictions', id: number, weights: Float32Array, split: Split }
  | { type: 'evaluate', id: number, weights: Float32Array, split: Split }

export type SiteReply =
  | { type: 'ready', backend: BackendChoice, initialWeights: Float32Array, variantWeights: Array<[number, Float32Array]>, noiseMultiplier: number | null }
  | { type: 'updated', id: number, values: Float32Array, count: number, train: TrainResult, budget: PrivacyBudgetState | null, memory: WorkerMemory }
  | { type: 'predictions', id: number, result: Predictions | null }
  | { type: 'evaluated', id: number, result: ClinicalMetrics | null }
  | { type: 'failed', id: number, message: string }

/** A worker's memory after a training: its wasm backend's heap (outside V8's) and its V8 heap, in bytes. */
export interface WorkerMemory { wasmBytes: number, heapBytes: number }

export class TrainingWorkerError extends Error {
  constructor (message: string) { super(message); this.name = 'TrainingWorkerError' }
}

/** A copy of the images in shared memory: every worker reads the same bytes. */
function shared (d: ImageDataset | null): ImageDataset | null {
  if (d === null) return null
  const pixels = new Uint8Array(new SharedArrayBuffer(d.pixels.length))
  pixels.set(d.pixels)
  return { ...d, pixels }
}

export interface WorkerSiteOptions extends Omit<SiteOptions, 'noiseRandom' | 'parallel'> {
  noiseSeed?: Uint8Array
  /** worker threads that split each batch (default 1) */
  workers?: number
  /** V8 heap limit of each worker (MB); wasm memory is outside it */
  maxHeapMb?: number
}

interface Pending { resolve: (r: SiteReply) => void, reject: (e: Error) => void }

/** One worker thread and the requests it has yet to answer. */
class SiteThread {
  readonly worker: Worker
  readonly ready: Promise<Extract<SiteReply, { type: 'ready' }>>
  readonly pending = new Map<number, Pending>()
  failure: Error | null = null

  constructor (init: SiteInit, maxHeapMb: number | undefined, onFailure: (e: Error) => void) {
    this.worker = new Worker(new URL('./site-worker.ts', import.meta.url), { workerData: init, ...(maxHeapMb === undefined ? {} : { resourceLimits: { maxOldGenerationSizeMb: maxHeapMb } }) })
    this.worker.unref()
    this.ready = new Promise((resolve, reject) => {
      const fail = (e: Error): void => {
        if (this.failure !== null) return
        this.failure = e
        reject(e)
        for (const p of this.pending.values()) p.reject(e)
        this.pending.clear()
        onFailure(e)
      }
      this.worker.on('message', (r: SiteReply) => {
        if (r.type === 'ready') { resolve(r); return }
        if (r.type === 'failed' && r.id === -1) { fail(new TrainingWorkerError(`the training worker could not start: ${r.message}`)); void this.worker.terminate(); return }
        const p = this.pending.get(r.id)
        this.pending.delete(r.id)
        if (this.pending.size === 0) this.worker.unref()
        p?.resolve(r)
      })
      this.worker.on('error', e => {
        const oom = (e as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY'
        fail(new TrainingWorkerError(oom ? `the training worker ran out of memory (${e.message})` : `the training worker crashed: ${e.message}`))
      })
      this.worker.on('exit', code => { fail(new TrainingWorkerError(`the training worker exited (code ${code})`)) })
    })
    this.ready.catch(() => {})
  }

  async request (q: SiteRequest & { id: number }, transfer: ArrayBuffer[] = []): Promise<SiteReply> {
    if (this.failure !== null) throw this.failure
    // a worker at work keeps the process alive; an idle one does not
    this.worker.ref()
    return await new Promise<SiteReply>((resolve, reject) => {
      this.pending.set(q.id, { resolve, reject })
      this.worker.postMessage(q, transfer)
    })
  }
}

export class WorkerSite implements TrainingSite {
  readonly spec: SiteSpec
  readonly options: WorkerSiteOptions
  backend: BackendChoice | null = null
  norm: Normalisation | undefined
  lastTrain: TrainResult | null = null
  /** each worker's memory after the last training */
  lastMemory: WorkerMemory[] = []
  noiseMultiplier: number | null = null
  readonly #data: SiteData
  readonly #count: number
  /** the initial weights of the model at each width factor the spec names (1: the model) */
  #initial: Map<number, Float32Array> | null = null
  #stats: number[] | null = null
  #reduce: SharedReduceBuffers | null = null
  #threads: SiteThread[] = []
  #ready: Promise<void> | null = null
  #nextId = 1
  #closed = false

  get images (): { train: number, validation: number } { return { train: this.#data.train.labels.length, validation: this.#data.val?.labels.length ?? 0 } }

  private constructor (spec: SiteSpec, data: SiteData, options: WorkerSiteOptions) {
    this.spec = spec
    this.#data = data
    this.options = options
    this.#count = options.workers ?? 1
    if (!(Number.isInteger(this.#count) && this.#count >= 1 && this.#count <= 256)) throw new RangeError(`workers must be a whole number in [1, 256], got ${String(options.workers)}`)
  }

  /** Fit the data to the spec here (so that a refusal is the caller's error), share it, start the workers. */
  static async open (spec: SiteSpec, data: SiteData, options: WorkerSiteOptions): Promise<WorkerSite> {
    const fitted = fitData(data, spec)
    const site = new WorkerSite(spec, { train: shared(fitted.train)!, val: shared(fitted.val), test: shared(fitted.test) }, options)
    try {
      await site.#start()
    } catch (e) {
      await site.close()
      throw e
    }
    return site
  }

  get workers (): number { return this.#count }

  #spawn (index: number): SiteThread {
    const { noiseSeed, maxHeapMb, budget, workers, ...options } = this.options
    const parallel = this.#reduce === null ? null : { index, count: this.#count, buffers: this.#reduce }
    const init: SiteInit = { spec: this.spec, data: this.#data, options, budget: budget?.toJSON() ?? null, noiseSeed: noiseSeed ?? null, parallel }
    // one worker that fails takes the others down with it: they would wait for it at every step
    const thread: SiteThread = new SiteThread(init, maxHeapMb, () => { this.#fail(thread) })
    return thread
  }

  /** a worker failed (or a parallel step did): stop this set of workers; the next call starts a new one */
  #fail (thread: SiteThread): void {
    if (!this.#threads.includes(thread)) return
    const all = this.#threads
    this.#threads = []
    this.#ready = null
    for (const t of all) void t.worker.terminate()
  }

  /** Worker 0 first: the model's size (from its weights) sizes the shared gradient slots of the others. */
  #start (): Promise<void> {
    this.#ready = (async () => {
      this.#reduce = null
      const first = this.#spawn(0)
      this.#threads = [first]
      const r = await first.ready
      this.backend = r.backend
      const initial = new Map([[1, r.initialWeights], ...r.variantWeights])
      this.#initial = initial
      this.noiseMultiplier = r.noiseMultiplier
      if (this.#count > 1) {
        // fresh buffers for every set of workers: a worker that died mid-step leaves the barrier counting it
        // as long as the largest of the model's widths it may train
        this.#reduce = allocateReduceBuffers(this.#count, Math.max(...[...initial.values()].map(w => w.length)) + 1)
        first.worker.postMessage({ type: 'parallel', parallel: { index: 0, count: this.#count, buffers: this.#reduce } } satisfies SiteRequest)
        const rest = Array.from({ length: this.#count - 1 }, (_, k) => this.#spawn(k + 1))
        this.#threads.push(...rest)
        await Promise.all(rest.map(async t => await t.ready))
      }
      if (this.#stats !== null) for (const t of this.#threads) t.worker.postMessage({ type: 'statistics', stats: this.#stats } satisfies SiteRequest)
    })()
    const ready = this.#ready
    ready.catch(() => { if (this.#ready === ready) { this.#ready = null; for (const t of this.#threads) void t.worker.terminate(); this.#threads = [] } })
    return ready
  }

  async #threadsReady (): Promise<SiteThread[]> {
    if (this.#closed) throw new TrainingWorkerError('the site was closed')
    if (this.#ready === null) void this.#start()
    await this.#ready
    return this.#threads
  }

  async #ask<T extends SiteReply['type']> (thread: SiteThread, q: SiteRequest & { id: number }, expect: T): Promise<Extract<SiteReply, { type: T }>> {
    const reply = await thread.request(q)
    if (reply.type === 'failed') throw new Error(reply.message)
    if (reply.type !== expect) throw new TrainingWorkerError(`the training worker answered ${reply.type} to ${q.type}`)
    return reply as Extract<SiteReply, { type: T }>
  }

  initialWeights (widthFactor = 1): Float32Array {
    const w = this.#initial?.get(widthFactor)
    if (w === undefined) throw new Error(`the site's workers hold no model of width ×${widthFactor}`)
    return Float32Array.from(w)
  }

  statsInput (): { values: number[], count: number } {
    const s = pixelStats(this.#data.train)
    return { values: statsVector(s), count: s.count }
  }

  useStatistics (combined: ArrayLike<number>): void {
    this.norm = normalisation(combined, this.spec.input.channels)
    this.#stats = Array.from(combined)
    for (const t of this.#threads) t.worker.postMessage({ type: 'statistics', stats: this.#stats } satisfies SiteRequest)
  }

  /** Every worker trains its share of each step; worker 0's replica (the same as the others') is the update. */
  async update (weights: Float32Array, round: number, modelRound = round, recipe?: CandidateRecipe): Promise<{ values: Float32Array, count: number }> {
    const threads = await this.#threadsReady()
    const id = this.#nextId++
    const budget = this.options.budget?.toJSON() ?? null
    let replies: Array<Extract<SiteReply, { type: 'updated' }>>
    try {
      replies = await Promise.all(threads.map(async t => await this.#ask(t, { type: 'update', id, weights, round, modelRound, budget, recipe }, 'updated')))
    } catch (e) {
      // the others may be waiting for the one that failed at a step's barrier: start afresh next time
      if (threads.length > 1 && this.#threads === threads) this.#fail(threads[0])
      throw e
    }
    const r = replies[0]
    if (r.budget !== null) this.options.budget = PrivacyBudget.fromJSON(r.budget)
    this.lastTrain = r.train
    this.lastMemory = replies.map(x => x.memory)
    return { values: r.values, count: r.count }
  }

  async predictions (weights: Float32Array, split: Split): Promise<Predictions | null> {
    const [first] = await this.#threadsReady()
    return (await this.#ask(first, { type: 'predictions', id: this.#nextId++, weights, split }, 'predictions')).result
  }

  async evaluate (weights: Float32Array, split: Split): Promise<ClinicalMetrics | null> {
    const [first] = await this.#threadsReady()
    return (await this.#ask(first, { type: 'evaluate', id: this.#nextId++, weights, split }, 'evaluated')).result
  }

  /** Stop the workers now, whatever they are doing (a node that stops does not wait for a training step). */
  async close (): Promise<void> {
    this.#closed = true
    const threads = this.#threads
    this.#threads = []
    await Promise.all(threads.map(async t => await t.worker.terminate()))
  }

  /** The workers' thread ids, for tests that kill one. */
  get threadIds (): number[] { return this.#threads.map(t => t.worker.threadId) }

  /** Kill worker `index` (tests: a crash mid-round); the next call starts new ones. */
  async terminateWorker (index = 0): Promise<void> { await this.#threads[index]?.worker.terminate() }
}
