/**
 * A hospital's training site whose work runs in a worker thread (site-worker.ts), each worker
 * with its own TF.js backend: the thread that owns it (a node's event loop) stays free to serve
 * gossip, blobs and /status while a round trains. Every call is asynchronous and answered in
 * order. A worker that crashes or runs out of memory fails the calls in flight with a clear
 * error; the next call starts a fresh worker on the same shared images, so one bad round costs
 * that round only.
 *
 * `TrainingSite` is the surface a node trains through; `InThreadSite` gives it for a Site on the
 * calling thread (tests, and a node configured with no training workers).
 */
import { Worker } from 'node:worker_threads'
import { PrivacyBudget, type PrivacyBudgetState } from '../privacy/index.ts'
import type { BackendChoice } from './backend.ts'
import type { ImageDataset } from './data/dataset.ts'
import { fitData, Site, type SiteData, type SiteOptions, type SiteSpec } from './site.ts'
import { normalisation, pixelStats, statsVector, type Normalisation } from './data/stats.ts'
import type { ClinicalMetrics } from './metrics.ts'
import type { TrainResult } from './trainer.ts'

export type Split = 'val' | 'test'
export interface Predictions { probs: Float32Array, labels: Int32Array }

/** What a node needs of its training site; every call that computes is asynchronous. */
export interface TrainingSite {
  readonly options: Pick<SiteOptions, 'epochs' | 'batchSize' | 'budget'>
  readonly backend: BackendChoice | null
  readonly norm: Normalisation | undefined
  readonly lastTrain: TrainResult | null
  readonly noiseMultiplier: number | null
  initialWeights: () => Float32Array
  statsInput: () => { values: number[], count: number }
  useStatistics: (combined: ArrayLike<number>) => void
  update: (weights: Float32Array, round: number, modelRound?: number) => Promise<{ values: Float32Array, count: number }>
  predictions: (weights: Float32Array, split: Split) => Promise<Predictions | null>
  evaluate: (weights: Float32Array, split: Split) => Promise<ClinicalMetrics | null>
  /** free the model; stop the worker now, whatever it is doing */
  close: () => Promise<void>
}

/** A Site on the calling thread, behind the asynchronous surface. */
export class InThreadSite implements TrainingSite {
  readonly site: Site
  constructor (site: Site) { this.site = site }
  get options (): Site['options'] { return this.site.options }
  get backend (): BackendChoice | null { return this.site.backend }
  get norm (): Normalisation | undefined { return this.site.norm }
  get lastTrain (): TrainResult | null { return this.site.lastTrain }
  get noiseMultiplier (): number | null { return this.site.noiseMultiplier }
  initialWeights (): Float32Array { return this.site.initialWeights() }
  statsInput (): { values: number[], count: number } { return this.site.statsInput() }
  useStatistics (combined: ArrayLike<number>): void { this.site.useStatistics(combined) }
  async update (weights: Float32Array, round: number, modelRound = round): Promise<{ values: Float32Array, count: number }> { return this.site.update(weights, round, modelRound) }
  async predictions (weights: Float32Array, split: Split): Promise<Predictions | null> { return this.site.predictions(weights, split) }
  async evaluate (weights: Float32Array, split: Split): Promise<ClinicalMetrics | null> { return this.site.evaluate(weights, split) }
  async close (): Promise<void> { this.site.dispose() }
}

/** What a worker is started with (its workerData). */
export interface SiteInit {
  spec: SiteSpec
  data: SiteData
  options: Omit<SiteOptions, 'budget' | 'noiseRandom'>
  budget: PrivacyBudgetState | null
  /** a simulation's public seed for DP noise; null: the CSPRNG */
  noiseSeed: Uint8Array | null
}

export type SiteRequest =
  | { type: 'statistics', stats: number[] }
  | { type: 'update', id: number, weights: Float32Array, round: number, modelRound: number, budget: PrivacyBudgetState | null }
  | { type: 'predictions', id: number, weights: Float32Array, split: Split }
  | { type: 'evaluate', id: number, weights: Float32Array, split: Split }

export type SiteReply =
  | { type: 'ready', backend: BackendChoice, initialWeights: Float32Array, noiseMultiplier: number | null }
  | { type: 'updated', id: number, values: Float32Array, count: number, train: TrainResult, budget: PrivacyBudgetState | null }
  | { type: 'predictions', id: number, result: Predictions | null }
  | { type: 'evaluated', id: number, result: ClinicalMetrics | null }
  | { type: 'failed', id: number, message: string }

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

interface Pending { resolve: (r: SiteReply) => void, reject: (e: Error) => void }

export interface WorkerSiteOptions extends Omit<SiteOptions, 'noiseRandom'> {
  noiseSeed?: Uint8Array
  /** V8 heap limit of the worker (MB); wasm memory is outside it */
  maxHeapMb?: number
}

export class WorkerSite implements TrainingSite {
  readonly spec: SiteSpec
  readonly options: WorkerSiteOptions
  backend: BackendChoice | null = null
  norm: Normalisation | undefined
  lastTrain: TrainResult | null = null
  noiseMultiplier: number | null = null
  readonly #data: SiteData
  #initial: Float32Array | null = null
  #stats: number[] | null = null
  #worker: Worker | null = null
  #ready: Promise<void> | null = null
  #pending = new Map<number, Pending>()
  #nextId = 1
  #closed = false

  private constructor (spec: SiteSpec, data: SiteData, options: WorkerSiteOptions) {
    this.spec = spec
    this.#data = data
    this.options = options
  }

  /** Fit the data to the spec here (so that a refusal is the caller's error), share it, start the worker. */
  static async open (spec: SiteSpec, data: SiteData, options: WorkerSiteOptions): Promise<WorkerSite> {
    const fitted = fitData(data, spec)
    const site = new WorkerSite(spec, { train: shared(fitted.train)!, val: shared(fitted.val), test: shared(fitted.test) }, options)
    await site.#start()
    return site
  }

  #start (): Promise<void> {
    const { noiseSeed, maxHeapMb, budget, ...options } = this.options
    const init: SiteInit = { spec: this.spec, data: this.#data, options, budget: budget?.toJSON() ?? null, noiseSeed: noiseSeed ?? null }
    const worker = new Worker(new URL('./site-worker.ts', import.meta.url), { workerData: init, ...(maxHeapMb === undefined ? {} : { resourceLimits: { maxOldGenerationSizeMb: maxHeapMb } }) })
    worker.unref()
    this.#worker = worker
    this.#ready = new Promise<void>((resolve, reject) => {
      const fail = (e: Error): void => {
        if (this.#worker === worker) { this.#worker = null; this.#ready = null }
        reject(e)
        for (const p of this.#pending.values()) p.reject(e)
        this.#pending.clear()
      }
      worker.on('message', (r: SiteReply) => {
        if (r.type === 'ready') {
          this.backend = r.backend
          this.#initial = r.initialWeights
          this.noiseMultiplier = r.noiseMultiplier
          if (this.#stats !== null) worker.postMessage({ type: 'statistics', stats: this.#stats } satisfies SiteRequest)
          resolve()
          return
        }
        if (r.type === 'failed' && r.id === -1) { fail(new TrainingWorkerError(`the training worker could not start: ${r.message}`)); void worker.terminate(); return }
        const p = this.#pending.get(r.id)
        this.#pending.delete(r.id)
        p?.resolve(r)
      })
      worker.on('error', e => {
        const oom = (e as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY'
        fail(new TrainingWorkerError(oom ? `the training worker ran out of memory (${e.message})` : `the training worker crashed: ${e.message}`))
      })
      worker.on('exit', code => { fail(new TrainingWorkerError(this.#closed ? 'the site was closed' : `the training worker exited (code ${code})`)) })
    })
    // a refusal here is also seen by the caller of the request that started the worker
    this.#ready.catch(() => {})
    return this.#ready
  }

  async #request<T extends SiteReply['type']> (q: SiteRequest & { id: number }, expect: T, transfer: ArrayBuffer[] = []): Promise<Extract<SiteReply, { type: T }>> {
    if (this.#closed) throw new TrainingWorkerError('the site was closed')
    if (this.#ready === null) void this.#start()
    await this.#ready
    const worker = this.#worker!
    // a worker at work keeps the process alive; an idle one does not
    worker.ref()
    const reply = await new Promise<SiteReply>((resolve, reject) => {
      this.#pending.set(q.id, { resolve, reject })
      worker.postMessage(q, transfer)
    }).finally(() => { if (this.#pending.size === 0) worker.unref() })
    if (reply.type === 'failed') throw new Error(reply.message)
    if (reply.type !== expect) throw new TrainingWorkerError(`the training worker answered ${reply.type} to ${q.type}`)
    return reply as Extract<SiteReply, { type: T }>
  }

  initialWeights (): Float32Array { return Float32Array.from(this.#initial!) }

  statsInput (): { values: number[], count: number } {
    const s = pixelStats(this.#data.train)
    return { values: statsVector(s), count: s.count }
  }

  useStatistics (combined: ArrayLike<number>): void {
    this.norm = normalisation(combined)
    this.#stats = Array.from(combined)
    this.#worker?.postMessage({ type: 'statistics', stats: this.#stats } satisfies SiteRequest)
  }

  async update (weights: Float32Array, round: number, modelRound = round): Promise<{ values: Float32Array, count: number }> {
    const r = await this.#request({ type: 'update', id: this.#nextId++, weights: Float32Array.from(weights), round, modelRound, budget: this.options.budget?.toJSON() ?? null }, 'updated')
    if (r.budget !== null) this.options.budget = PrivacyBudget.fromJSON(r.budget)
    this.lastTrain = r.train
    return { values: r.values, count: r.count }
  }

  async predictions (weights: Float32Array, split: Split): Promise<Predictions | null> {
    return (await this.#request({ type: 'predictions', id: this.#nextId++, weights: Float32Array.from(weights), split }, 'predictions')).result
  }

  async evaluate (weights: Float32Array, split: Split): Promise<ClinicalMetrics | null> {
    return (await this.#request({ type: 'evaluate', id: this.#nextId++, weights: Float32Array.from(weights), split }, 'evaluated')).result
  }

  /** Stop the worker now, whatever it is doing (a node that stops does not wait for a training step). */
  async close (): Promise<void> {
    this.#closed = true
    await this.#worker?.terminate()
    this.#worker = null
  }

  /** The worker's thread id, for tests that kill it. */
  get threadId (): number | null { return this.#worker?.threadId ?? null }

  /** Kill the worker (tests: a crash mid-round); the next call starts a new one. */
  async terminateWorker (): Promise<void> { await this.#worker?.terminate() }
}
