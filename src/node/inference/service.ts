/**
 * The holder's /medmesh/infer/1.0.0 handler: who may ask (members, and the clients the manifest
 * lists), how often (admission.ts), and the three requests of he-wire.ts, each checked before a
 * byte reaches SEAL. Evaluations run in the SEAL worker (he-engine.ts). Every request is logged
 * with the client, the sizes and the time it took, never with content; a refused one with why.
 */
import { randomBytes } from 'node:crypto'
import type { Startable } from '@libp2p/interface'
import type { Clock, Timer } from '../clock.ts'
import type { Logger } from '../logger.ts'
import type { StreamNetwork } from '../network.ts'
import { readFramed, sendFramed, type Channel } from '../wire.ts'
import { Admission, SESSION_COST } from '../../inference/admission.ts'
import { INFER_PROTOCOL, HEADER_BYTES, parseRequest, requestBodyLength, type InferRequest, type ServedInfo } from '../../inference/he-wire.ts'
import { rotationSteps } from '../../inference/he-layout.ts'
import type { HeEngine } from './he-engine.ts'

/** The chosen certified he-cnn model, as the node holds it. */
export interface ServedModel {
  round: number
  stateHash: string
  weights: Float32Array
  shape: { filters: number, hidden: number, classes: number }
  classNames: string[]
  mean: number[]
  std: number[]
}

export interface InferenceComponents {
  network: Pick<StreamNetwork, 'handle' | 'unhandle'>
  /** the name of a peer allowed to query (a member, or a client the manifest lists), or null */
  allowed: (peerId: string) => string | null
  /** the model to serve now, or why there is none */
  model: () => ServedModel | string
  engine: Pick<HeEngine, 'parameters' | 'setModel' | 'openSession' | 'closeSessions' | 'evaluate' | 'stop'>
  log: Logger
  /** the node's clock: the rates, the sessions' expiry and the sweep of expired sessions (each sweepMs) */
  clock: Clock
}

export interface InferenceOptions { perMinute?: number, sessionMs?: number, maxSessions?: number, sweepMs?: number }

export const INFERENCE_DEFAULTS = { perMinute: 60, sessionMs: 3_600_000, maxSessions: 8, sweepMs: 60_000 } as const

export interface InferenceService extends Startable {
  readonly admission: Admission
}

async function refuse (channel: Channel, reason: string): Promise<void> {
  try { await sendFramed(channel, { ok: false, e: reason }) } catch { channel.abort(new Error(reason)) }
}

/** What a client is told of the model served now and the terms of a session, or why there is none. */
async function servedInfo (c: Pick<InferenceComponents, 'model' | 'engine'>, admission: Admission): Promise<ServedInfo | string> {
  const m = c.model()
  if (typeof m === 'string') return m
  return {
    parameters: await c.engine.parameters(), model: 'medmesh/he-cnn', round: m.round, state: m.stateHash, classes: m.shape.classes, classNames: m.classNames,
    mean: m.mean, std: m.std, steps: rotationSteps(m.shape.classes), sessionMs: admission.sessionMs, perMinute: admission.perMinute
  }
}

/** The model to serve now, set in the engine; or why there is none. */
async function currentModel (c: Pick<InferenceComponents, 'model' | 'engine'>): Promise<ServedModel | string> {
  const m = c.model()
  if (typeof m !== 'string') await c.engine.setModel(m.stateHash, m.weights, m.shape)
  return m
}

/** Answer one admitted request (its header charged, its body read) of `remote`, the client `client`. */
async function answer (c: InferenceComponents, admission: Admission, channel: Channel, req: InferRequest, body: Uint8Array, remote: string, client: string): Promise<void> {
  const log = (msg: string, extra: Record<string, unknown> = {}): void => c.log.info({ peer: remote, client, op: req.op, ...extra }, msg)
  const refused = async (reason: string): Promise<void> => { c.log.warn({ peer: remote, client, op: req.op }, `inference request refused: ${reason}`); await refuse(channel, reason) }
  if (req.op === 'info') {
    const i = await servedInfo(c, admission)
    if (typeof i === 'string') return await refused(i)
    log('inference info served')
    return await sendFramed(channel, { ok: true, info: i })
  }
  const m = await currentModel(c)
  if (typeof m === 'string') return await refused(m)
  if (req.op === 'keys') {
    const keys = { publicKey: body.subarray(0, req.pk), relinKeys: body.subarray(req.pk, req.pk + req.rk), galoisKeys: body.subarray(req.pk + req.rk) }
    const id = randomBytes(16)
    const t = performance.now()
    try { await c.engine.openSession(id.toString('hex'), keys) } catch (e) { return await refused(`keys not accepted: ${(e as Error).message}`) }
    const { entry, evicted } = admission.open(id.toString('hex'), remote)
    await c.engine.closeSessions(evicted)
    log('inference session opened', { bytes: body.length, ms: Math.round(performance.now() - t) })
    return await sendFramed(channel, { ok: true, s: new Uint8Array(id), exp: entry.expires })
  }
  const sid = Buffer.from(req.s).toString('hex')
  const s = admission.session(sid, remote)
  if (!s.ok) return await refused(s.reason)
  const t = performance.now()
  let out: Uint8Array
  try { out = await c.engine.evaluate(sid, body) } catch (e) { return await refused(`query not evaluated: ${(e as Error).message}`) }
  log('inference query answered', { in: body.length, out: out.length, ms: Math.round(performance.now() - t), round: m.round })
  await sendFramed(channel, { ok: true, n: out.length, round: m.round, state: m.stateHash }, out)
}

export function createInferenceService (c: InferenceComponents, o: InferenceOptions = {}): InferenceService {
  const admission = new Admission({ perMinute: o.perMinute ?? INFERENCE_DEFAULTS.perMinute, sessionMs: o.sessionMs ?? INFERENCE_DEFAULTS.sessionMs, maxSessions: o.maxSessions ?? INFERENCE_DEFAULTS.maxSessions, now: () => c.clock.now() })
  let running = false
  let sweep: Timer | undefined
  const keyUploads = new Set<string>()

  async function serve (channel: Channel, remote: string): Promise<void> {
    const client = c.allowed(remote)
    if (client === null) {
      c.log.warn({ peer: remote }, 'inference request refused: neither a member nor a client the manifest lists')
      await refuse(channel, 'not allowed to query this consortium\'s model')
      return
    }
    let request: { header: InferRequest, body: Uint8Array }
    let uploading = false
    try {
      // the rate is charged on the header, before a body is allocated: a client over its rate,
      // or one already sending keys, costs the holder no more than a header
      request = await readFramed(channel, HEADER_BYTES, parseRequest, h => {
        if (h.op === 'info') return 0
        const charged = admission.charge(remote, h.op === 'keys' ? SESSION_COST : 1)
        if (!charged.ok) throw new Error(charged.reason)
        if (h.op === 'keys') {
          if (keyUploads.has(remote)) throw new Error('already sending keys on another stream')
          keyUploads.add(remote); uploading = true
        }
        return requestBodyLength(h)
      })
    } catch (e) {
      if (uploading) keyUploads.delete(remote)
      c.log.warn({ peer: remote, client }, `inference request refused: ${(e as Error).message}`)
      await refuse(channel, (e as Error).message)
      return
    }
    try {
      await answer(c, admission, channel, request.header, request.body, remote, client)
    } catch (e) {
      c.log.warn({ peer: remote, client }, `inference request failed: ${(e as Error).message}`)
      channel.abort(e as Error)
    } finally {
      if (uploading) keyUploads.delete(remote)
    }
  }

  return {
    admission,
    async start () {
      if (running) return
      running = true
      await c.network.handle(INFER_PROTOCOL, serve, 16)
      sweep = c.clock.setInterval(() => { void c.engine.closeSessions(admission.expire()).catch(() => {}) }, o.sweepMs ?? INFERENCE_DEFAULTS.sweepMs)
      sweep.unref()
    },
    async stop () {
      if (!running) return
      running = false
      c.clock.clearInterval(sweep)
      await c.network.unhandle(INFER_PROTOCOL)
      await c.engine.stop()
    }
  }
}
