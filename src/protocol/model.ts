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

export function encodeState (s: GlobalState): Uint8Array {
  return encodeCanonical({ v: 1, w: f32Bytes(s.weights), s: s.optimizer.map(f32Bytes), k: s.step })
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
