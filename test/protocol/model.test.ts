import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { encodeCanonical } from '../../src/protocol/codec.ts'
import { decodeState, encodeState, stateHash, type GlobalState } from '../../src/protocol/model.ts'

const f32 = (b: Float32Array): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
/** what encodeState must equal: the general deterministic encoder's bytes */
const reference = (s: GlobalState): Uint8Array => encodeCanonical({ v: 1, w: f32(s.weights), s: s.optimizer.map(f32), k: s.step })
const vec = (n: number, seed: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(seed + i) * 3)

test('encodeState writes the general encoder\'s bytes at every length and step boundary', () => {
  // byte lengths 0, 4, 20, 24, 252, 256, 65532, 65536, 4 MB; steps across each CBOR argument size
  const sizes = [0, 1, 5, 6, 63, 64, 16_383, 16_384, 1_000_000]
  const steps = [0, 1, 23, 24, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 2 ** 40]
  for (const [i, d] of sizes.entries()) {
    for (const optimizers of [0, 1, 2]) {
      const s: GlobalState = { weights: vec(d, i), optimizer: Array.from({ length: optimizers }, (_, k) => vec(d, i + k + 1)), step: steps[(i + optimizers) % steps.length] }
      assert.equal(encodeState(s), reference(s), `d=${d}, ${optimizers} optimiser vectors, step ${s.step}`)
    }
  }
  for (const step of steps) {
    const s: GlobalState = { weights: vec(3, step), optimizer: [], step }
    assert.equal(encodeState(s), reference(s), `step ${step}`)
  }
})

test('a view into a larger buffer encodes its own elements only; decoding gives the state back', () => {
  const big = vec(100, 7)
  const s: GlobalState = { weights: big.subarray(10, 60), optimizer: [big.subarray(40, 90)], step: 12 }
  const bytes = encodeState(s)
  assert.equal(bytes, reference(s))
  const back = decodeState(bytes, 1 << 20)
  assert.equal(Array.from(back.weights), Array.from(s.weights))
  assert.equal(Array.from(back.optimizer[0]), Array.from(s.optimizer[0]))
  assert.is(back.step, 12)
  assert.not.equal(stateHash(s), stateHash({ ...s, step: 13 }))
})

test.run()
