import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { throwsA } from '../helpers/assert.ts'
import {
  quantize, dequantizeSum, maxSummands, assertNoWrap, encodeWeightedUpdate, decodeWeightedAverage, sumVectors,
  seededRandom, DEFAULT_QUANTIZATION, WrapAroundError, InvalidArgumentError, type QuantizationParams
} from '../../src/privacy/index.ts'
import { testSeed } from '../helpers/bytes.ts'

const P: QuantizationParams = { clip: 4, scale: 1000 }

test('quantise then dequantise: error below one step, values clipped', () => {
  const x = Float64Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 5)
  const back = dequantizeSum(quantize(x, P, seededRandom(testSeed(1))), 1, P)
  for (let i = 0; i < x.length; i++) {
    const clipped = Math.max(-4, Math.min(4, x[i]))
    assert.ok(Math.abs(back[i] - clipped) <= 1 / P.scale, `element ${i}: ${back[i]} vs ${clipped}`)
  }
})

test('negative values are two\'s complement words', () => {
  const q = quantize([-1, 0, 1], { clip: 2, scale: 1 })
  assert.equal(Array.from(q), [2 ** 32 - 1, 0, 1])
})

test('stochastic rounding is unbiased', () => {
  const n = 200_000
  const x = new Float64Array(n).fill(0.3 / P.scale) // 0.3 of a step
  const q = quantize(x, P, seededRandom(testSeed(2)))
  let ones = 0
  for (const w of q) { assert.ok(w === 0 || w === 1); ones += w }
  // 0.3 with sd sqrt(0.21/n) ≈ 0.001: six sd is 0.006
  assert.ok(Math.abs(ones / n - 0.3) < 0.006, `rounded up ${ones / n}`)
})

test('the same seed gives the same quantisation', () => {
  const x = Float64Array.from({ length: 5000 }, (_, i) => Math.cos(i))
  assert.equal(quantize(x, P, seededRandom(testSeed(3))), quantize(x, P, seededRandom(testSeed(3))))
})

test('sums of k quantised vectors decode to the sum of the inputs, negative sums included', () => {
  const k = 7
  const rng = seededRandom(testSeed(4))
  const inputs = Array.from({ length: k }, (_, u) => Float64Array.from({ length: 300 }, (_, i) => Math.sin(i * (u + 1)) * 3.4 - 0.5))
  const sum = dequantizeSum(sumVectors(inputs.map(x => quantize(x, P, rng))), k, P)
  for (let i = 0; i < 300; i++) {
    const exact = inputs.reduce((s, x) => s + x[i], 0)
    assert.ok(Math.abs(sum[i] - exact) <= k / P.scale, `element ${i}`)
  }
})

test('wrap-around guard: the largest safe k passes, one more is refused', () => {
  const max = maxSummands(P) // floor((2^31-1) / 4000)
  assert.is(max, Math.floor((2 ** 31 - 1) / 4000))
  assertNoWrap(max, P)
  assert.throws(() => assertNoWrap(max + 1, P), (e: unknown) => e instanceof WrapAroundError && /could wrap around/.test((e as Error).message))
  throwsA(() => dequantizeSum(new Uint32Array(2), max + 1, P), WrapAroundError)
  assert.is(maxSummands(DEFAULT_QUANTIZATION), 1023)
  // at the boundary the decoded sum is still right: max vectors all at +clip
  const one = quantize([4], P)
  const acc = new Uint32Array(1)
  for (let i = 0; i < max; i++) acc[0] += one[0]
  assert.is(dequantizeSum(acc, max, P)[0], 4 * max)
  throwsA(() => quantize([1], { clip: 2 ** 20, scale: 2 ** 12 }), WrapAroundError)
})

test('bad parameters and bad values are refused', () => {
  throwsA(() => quantize([NaN], P), InvalidArgumentError)
  throwsA(() => quantize([Infinity], P), InvalidArgumentError)
  throwsA(() => quantize([1], { clip: 0, scale: 10 }), InvalidArgumentError)
  throwsA(() => quantize([1], { clip: 1, scale: -1 }), InvalidArgumentError)
  throwsA(() => quantize([1], { clip: 0.1, scale: 1 }), InvalidArgumentError)
  throwsA(() => assertNoWrap(0, P), InvalidArgumentError)
})

test('weighted updates: the weight travels as the last element and gives the weighted mean', () => {
  const params = { clip: 4, scale: 2 ** 16, maxSampleCount: 1000 }
  const rng = seededRandom(testSeed(5))
  const counts = [100, 400, 1000]
  const updates = counts.map((_, u) => Float64Array.from({ length: 50 }, (_, i) => Math.sin(i + u) * (u + 1)))
  const vecs = updates.map((x, u) => encodeWeightedUpdate(x, counts[u], params, rng))
  assert.is(vecs[0].length, 51)
  const { mean, totalWeight } = decodeWeightedAverage(sumVectors(vecs), 3, params)
  assert.ok(Math.abs(totalWeight * 1000 - 1500) < 0.1, `total ${totalWeight * 1000}`)
  for (let i = 0; i < 50; i++) {
    const exact = updates.reduce((s, x, u) => s + x[i] * counts[u], 0) / 1500
    assert.ok(Math.abs(mean[i] - exact) < 1e-3, `element ${i}: ${mean[i]} vs ${exact}`)
  }
  throwsA(() => encodeWeightedUpdate([1], 1001, params), InvalidArgumentError)
  throwsA(() => encodeWeightedUpdate([1], 0, params), InvalidArgumentError)
  throwsA(() => decodeWeightedAverage(new Uint32Array(3), 1, params), InvalidArgumentError)
})

test.run()
