/**
 * The main thread's handle on the SEAL worker (he-worker.ts): requests by id, answered in order.
 * A worker that dies fails what it was doing with a clear error; the next request starts a new
 * one (sessions are lost with it: clinics open new ones).
 */
import { Worker } from 'node:worker_threads'
import type { EvaluationKeyBytes } from '../../inference/ckks.ts'

export type EngineRequest =
  | { id: number, type: 'model', key: string, weights: Float32Array, shape: { filters: number, hidden: number, classes: number } }
  | { id: number, type: 'open', session: string, keys: EvaluationKeyBytes }
  | { id: number, type: 'close', sessions: string[] }
  | { id: number, type: 'eval', session: string, ciphertext: Uint8Array }
export type EngineReply = { id: number, ok: true, ciphertext?: Uint8Array, parameters?: string } | { id: number, ok: false, error: string }

type Payload<T> = T extends unknown ? Omit<T, 'id'> : never

export class EngineError extends Error {}

export class HeEngine {
  private worker: Worker | null = null
  private ready: Promise<string> | null = null
  private next = 1
  private readonly pending = new Map<number, { resolve: (r: EngineReply) => void, reject: (e: Error) => void }>()
  private modelKey: string | null = null
  private readonly maxHeapMb: number

  constructor (options: { maxHeapMb?: number } = {}) { this.maxHeapMb = options.maxHeapMb ?? 2048 }

  /** the CKKS parameters' id, once the worker has loaded SEAL */
  async parameters (): Promise<string> { return await this.start() }

  async setModel (key: string, weights: Float32Array, shape: { filters: number, hidden: number, classes: number }): Promise<void> {
    if (this.modelKey === key) return
    await this.call({ type: 'model', key, weights, shape })
    this.modelKey = key
  }

  async openSession (session: string, keys: EvaluationKeyBytes): Promise<void> { await this.call({ type: 'open', session, keys }) }
  async closeSessions (sessions: string[]): Promise<void> { if (sessions.length > 0 && this.worker !== null) await this.call({ type: 'close', sessions }) }
  async evaluate (session: string, ciphertext: Uint8Array): Promise<Uint8Array> {
    const r = await this.call({ type: 'eval', session, ciphertext })
    if (!r.ok || r.ciphertext === undefined) throw new EngineError('the SEAL worker gave no ciphertext')
    return r.ciphertext
  }

  async stop (): Promise<void> {
    const w = this.worker
    this.worker = null; this.ready = null; this.modelKey = null
    await w?.terminate()
  }

  private start (): Promise<string> {
    if (this.ready !== null) return this.ready
    const worker = new Worker(new URL('./he-worker.ts', import.meta.url), { resourceLimits: { maxOldGenerationSizeMb: this.maxHeapMb } })
    this.worker = worker
    this.ready = new Promise<string>((resolve, reject) => {
      const fail = (e: Error): void => {
        if (this.worker === worker) { this.worker = null; this.ready = null; this.modelKey = null }
        reject(e)
        for (const p of this.pending.values()) p.reject(e)
        this.pending.clear()
      }
      worker.on('message', (r: EngineReply) => {
        if (r.id === 0) { if (r.ok) resolve(r.parameters ?? ''); return }
        const p = this.pending.get(r.id)
        this.pending.delete(r.id)
        p?.resolve(r)
      })
      worker.on('error', e => { fail(new EngineError(`the SEAL worker failed: ${e.message}`)) })
      worker.on('exit', code => { fail(new EngineError(`the SEAL worker exited (code ${code})`)) })
    })
    this.ready.catch(() => {})
    worker.unref()
    return this.ready
  }

  private async call (m: Payload<EngineRequest>): Promise<EngineReply> {
    await this.start()
    const worker = this.worker
    if (worker === null) throw new EngineError('the SEAL worker is not running')
    const id = this.next++
    const reply = await new Promise<EngineReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      worker.postMessage({ ...m, id })
    })
    if (!reply.ok) throw new EngineError(reply.error)
    return reply
  }
}
