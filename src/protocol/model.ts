/**
 * The global state every peer holds: model weights plus the server optimiser's state, both
 * float32, and its canonical encoding and hash. Any two peers that apply the same aggregates in
 * the same order hold bit-identical states (IEEE-754 float32 arithmetic, fixed operation order).
 *
 * Encoding: CBOR { v: 1, w: <weights, little-endian float32 bytes>, s: [<state vectors, same>], k: step }.
 */
import { bytes, decodeBounded, encodeCanonical, hash, obj, uint, arr } from './codec.ts'
import { reject } from './errors.ts'

export interface GlobalState {
  weights: Float32Array
  /** optimiser state vectors (FedAvgM: [momentum]; FedAdam: [m, v]; FedAvg: []) */
  optimizer: Float32Array[]
  /** how many aggregates have been applied */
  step: number
}

const f32Bytes = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
const bytesF32 = (b: Uint8Array): Float32Array => {
  const copy = b.slice() // an aligned copy
  return new Float32Array(copy.buffer, 0, copy.length / 4)
}

/** CBOR head of major type `major` with argument n < 2^32 (the shortest form, as deterministic CBOR requires) */
function head (major: number, n: number): number[] {
  const m = major << 5
  if (n < 24) return [m | n]
  if (n < 0x100) return [m | 24, n]
  if (n < 0x10000) return [m | 25, n >>> 8, n & 0xff]
  return [m | 26, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]
}

/**
 * The canonical encoding, written straight into one buffer of its exact size: the same bytes as
 * `encodeCanonical({ v: 1, w, s, k })` (keys in deterministic order k, s, v, w; test/protocol/
 * model.test.ts compares the two), without the general encoder's intermediate chunks, which for
 * a model of tens of MB cost two more copies and as many fresh allocations.
 */
export function encodeState (s: GlobalState): Uint8Array {
  const small = (n: number): boolean => Number.isInteger(n) && n >= 0 && n < 0x100000000
  if (!small(s.step) || !small(s.weights.byteLength) || !s.optimizer.every(o => small(o.byteLength))) return encodeCanonical({ v: 1, w: f32Bytes(s.weights), s: s.optimizer.map(f32Bytes), k: s.step })
  const parts: Array<number[] | Uint8Array> = [[0xa4, 0x61, 0x6b], head(0, s.step), [0x61, 0x73], head(4, s.optimizer.length)]
  for (const o of s.optimizer) parts.push(head(2, o.byteLength), f32Bytes(o))
  parts.push([0x61, 0x76, 0x01, 0x61, 0x77], head(2, s.weights.byteLength), f32Bytes(s.weights))
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

export function decodeState (data: Uint8Array, maxBytes: number): GlobalState {
  const o = obj(decodeBounded(data, maxBytes, 'model state'), 'model state', ['v', 'w', 's', 'k'])
  if (o.v !== 1) reject('bad-version', 'model state: unsupported version')
  const w = bytes(o.w, 'model weights', undefined, maxBytes)
  if (w.length % 4 !== 0) reject('malformed', 'model state: weights are not float32')
  const optimizer = arr(o.s, 'optimizer state', 4, (x, i) => {
    const b = bytes(x, `optimizer state ${i}`, w.length, maxBytes)
    return bytesF32(b)
  })
  return { weights: bytesF32(w), optimizer, step: uint(o.k, 'step') }
}

/** SHA-256 of the canonical encoding. */
export function stateHash (s: GlobalState): Uint8Array {
  return hash(encodeState(s))
}

export function initialState (weights: Float32Array): GlobalState {
  return { weights: Float32Array.from(weights), optimizer: [], step: 0 }
}
