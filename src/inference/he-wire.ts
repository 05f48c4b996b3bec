/**
 * /medmesh/infer/1.0.0: encrypted inference between a clinic and a holder, one request per
 * stream, each a canonical-CBOR header (at most 4 KiB) and a body of the lengths it announces:
 *
 *   {op: 'info'}                              → {ok: true, info: ServedInfo}
 *   {op: 'keys', pk, rk, gk: byte lengths}    + public, relinearisation and Galois keys
 *                                             → {ok: true, s: session id (16 bytes), exp: ms since epoch}
 *   {op: 'query', s: session id, n: length}   + one ciphertext
 *                                             → {ok: true, n, round, state} + one ciphertext
 *   any refusal                               → {ok: false, e: reason}
 *
 * Lengths are checked against the limits before a byte of the body is read.
 */
import { arr, bytes, obj, uint } from '../protocol/codec.ts'
import { reject } from '../protocol/errors.ts'
import { LIMITS } from './ckks.ts'

export const INFER_PROTOCOL = '/medmesh/infer/1.0.0'
export const HEADER_BYTES = 4096
export const SESSION_ID_BYTES = 16

/** What a holder serves, so that the clinic prepares images and keys exactly as the model needs. */
export interface ServedInfo {
  /** SHA-256 of the CKKS parameters (ckks.ts) */
  parameters: string
  model: string
  /** the certified round whose state is served, and that state's hash */
  round: number
  state: string
  classes: number
  classNames: string[]
  mean: number[]
  std: number[]
  /** the rotations the Galois keys must cover, exactly */
  steps: number[]
  /** how long a session's keys are kept, and queries a client may make per minute */
  sessionMs: number
  perMinute: number
}

export type InferRequest =
  | { op: 'info' }
  | { op: 'keys', pk: number, rk: number, gk: number }
  | { op: 'query', s: Uint8Array, n: number }

/** a map whose keys are all among `allowed` (each message's own fields are then required by its parser) */
function fields (v: unknown, what: string, allowed: readonly string[]): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) reject('malformed', `${what} must be a map`)
  for (const k of Object.keys(v as object)) if (!allowed.includes(k)) reject('malformed', `${what} has unexpected field '${k.slice(0, 20)}'`)
  return v as Record<string, unknown>
}

export function parseRequest (v: unknown): InferRequest {
  const o = fields(v, 'inference request', ['op', 'pk', 'rk', 'gk', 's', 'n'])
  const only = (keys: string[]): void => { obj(o, `inference ${String(o.op)} request`, keys) }
  switch (o.op) {
    case 'info': only(['op']); return { op: 'info' }
    case 'keys': only(['op', 'pk', 'rk', 'gk']); return { op: 'keys', pk: uint(o.pk, 'pk', LIMITS.publicKey), rk: uint(o.rk, 'rk', LIMITS.relinKeys), gk: uint(o.gk, 'gk', LIMITS.galoisKeys) }
    case 'query': only(['op', 's', 'n']); return { op: 'query', s: bytes(o.s, 's', SESSION_ID_BYTES), n: uint(o.n, 'n', LIMITS.ciphertext) }
    default: return reject('malformed', `unknown inference operation '${String(o.op).slice(0, 20)}'`)
  }
}

export const requestBodyLength = (r: InferRequest): number => r.op === 'keys' ? r.pk + r.rk + r.gk : r.op === 'query' ? r.n : 0

const num = (v: unknown, what: string): number => {
  if (typeof v !== 'number' || !Number.isFinite(v)) reject('malformed', `${what} must be a number`)
  return v as number
}
const str = (v: unknown, what: string, max = 200): string => {
  if (typeof v !== 'string' || v.length > max) reject('malformed', `${what} must be a string of at most ${max} characters`)
  return v as string
}

export function parseInfo (v: unknown): ServedInfo {
  const o = obj(v, 'served model', ['parameters', 'model', 'round', 'state', 'classes', 'classNames', 'mean', 'std', 'steps', 'sessionMs', 'perMinute'])
  const classes = uint(o.classes, 'classes', 64)
  const info: ServedInfo = {
    parameters: str(o.parameters, 'parameters', 64),
    model: str(o.model, 'model'),
    round: uint(o.round, 'round'),
    state: str(o.state, 'state', 64),
    classes,
    classNames: arr(o.classNames, 'classNames', 64, (x, i) => str(x, `class name ${i}`, 64)),
    mean: arr(o.mean, 'mean', 3, (x, i) => num(x, `mean ${i}`)),
    std: arr(o.std, 'std', 3, (x, i) => num(x, `std ${i}`)),
    steps: arr(o.steps, 'steps', 128, (x, i) => { const s = num(x, `step ${i}`); if (!Number.isInteger(s)) reject('malformed', `step ${i} must be an integer`); return s }),
    sessionMs: uint(o.sessionMs, 'sessionMs'),
    perMinute: uint(o.perMinute, 'perMinute')
  }
  if (info.classNames.length !== classes) reject('malformed', `${info.classNames.length} class names for ${classes} classes`)
  return info
}

/** The clinic's reading of a response header: the refusal's reason as an error, or the fields. */
export function parseResponse (v: unknown): { info?: ServedInfo, s?: Uint8Array, exp?: number, n?: number, round?: number, state?: string } {
  const o = fields(v, 'inference response', ['ok', 'e', 'info', 's', 'exp', 'n', 'round', 'state'])
  if (o.ok === false) throw new InferRefused(str(o.e, 'reason', 500))
  if (o.ok !== true) reject('malformed', 'inference response without ok')
  return {
    info: o.info === undefined ? undefined : parseInfo(o.info),
    s: o.s === undefined ? undefined : bytes(o.s, 's', SESSION_ID_BYTES),
    exp: o.exp === undefined ? undefined : uint(o.exp, 'exp'),
    n: o.n === undefined ? undefined : uint(o.n, 'n', LIMITS.ciphertext),
    round: o.round === undefined ? undefined : uint(o.round, 'round'),
    state: o.state === undefined ? undefined : str(o.state, 'state', 64)
  }
}

/** The holder said no (not allowed, over the rate, bad keys, expired session, …): its reason. */
export class InferRefused extends Error {
  constructor (reason: string) { super(reason); this.name = 'InferRefused' }
}
