import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { throwsA } from '../helpers/assert.ts'
import {
  computeRdp, rdpToEpsilon, logErfc, PrivacyBudget, DEFAULT_ORDERS, gaussianNoise, clipAndSum, privatizeGradients, poissonSample,
  seededRandom, BudgetExceededError, InvalidArgumentError, noiseForBudget, epsilonOf
} from '../../src/privacy/index.ts'
import { testSeed } from '../helpers/bytes.ts'
import erfc from '@stdlib/math-base-special-erfc'

const close = (a: number, b: number, tol: number, what = ''): void => assert.ok(Math.abs(a - b) <= tol, `${what} ${a} vs ${b}`)

test('published vector: (q=1e-5, σ=1, 10 steps) + (q=1e-4, σ=3, 4 steps), δ=1e-5, orders 2..32 → ε ≈ 0.336 at order 23', () => {
  const orders = Array.from({ length: 31 }, (_, i) => i + 2)
  const a = computeRdp(1e-5, 1.0, 10, orders)
  const b = computeRdp(1e-4, 3.0, 4, orders)
  const { epsilon, order } = rdpToEpsilon(orders, a.map((x, i) => x + b[i]), 1e-5)
  close(epsilon, 0.336, 5e-4, 'ε')
  assert.is(order, 23)
})

test('RDP values agree with the reference accountant\'s own test values, integer and fractional orders', () => {
  close(computeRdp(1, 10, 1, [20])[0], 0.1, 1e-12, 'q=1')
  close(computeRdp(0.1, 2, 10, [5])[0], 0.07737, 1e-5, 'scalar')
  const got = computeRdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100, Infinity])
  const want = [0.00065, 0.001085, 0.00218075, 0.023846, 167.416307, Infinity]
  for (let i = 0; i < want.length; i++) {
    if (want[i] === Infinity) assert.is(got[i], Infinity)
    else close(got[i], want[i], 1e-5, `order index ${i}`)
  }
})

test('fractional orders are continuous with integer ones', () => {
  for (const alpha of [2, 3, 8, 20]) {
    const [atInt] = computeRdp(0.02, 1.1, 1, [alpha])
    const [near] = computeRdp(0.02, 1.1, 1, [alpha + 1e-7])
    close(near, atInt, Math.max(1e-9, atInt * 1e-5), `α=${alpha}`)
  }
})

test('RDP is additive in steps and increasing in q, decreasing in σ', () => {
  const r1 = computeRdp(0.01, 1.2, 1)
  const r7 = computeRdp(0.01, 1.2, 7)
  for (let i = 0; i < r1.length; i++) close(r7[i], 7 * r1[i], 1e-12 + 1e-9 * r7[i], `order ${DEFAULT_ORDERS[i]}`)
  const e = (q: number, s: number) => rdpToEpsilon(DEFAULT_ORDERS, computeRdp(q, s, 100), 1e-5).epsilon
  assert.ok(e(0.02, 1.2) > e(0.01, 1.2))
  assert.ok(e(0.01, 2) < e(0.01, 1.2))
  assert.is(computeRdp(0, 1, 10, [2])[0], 0)
  assert.is(computeRdp(0.1, 0, 10, [2])[0], Infinity)
})

test('logErfc stays finite and accurate where erfc underflows', () => {
  close(logErfc(0), 0, 1e-15)
  close(logErfc(1), Math.log(0.15729920705028513), 1e-12)
  const x = 30 // erfc(30) ≈ 2.56e-393 underflows a double
  const leading = -x * x - Math.log(x) - 0.5 * Math.log(Math.PI)
  assert.ok(Number.isFinite(logErfc(x)))
  close(logErfc(x), leading, 1e-3)
  close(logErfc(-3), Math.log(2 - 2.209049699858544e-5), 1e-12)
})

test('calibrated noise: the smallest σ that keeps the planned steps within ε, on the same accountant', () => {
  for (const [q, steps, epsilon] of [[0.0376, 266, 8], [0.17, 60, 8], [0.01, 10_000, 2], [0.5, 20, 1]] as const) {
    const sigma = noiseForBudget({ q, steps, epsilon, delta: 1e-5 })
    const at = epsilonOf(q, sigma, steps, 1e-5)
    assert.ok(at <= epsilon, `ε(σ=${sigma}) = ${at} within ${epsilon}`)
    assert.ok(epsilonOf(q, sigma * 0.999, steps, 1e-5) > epsilon, `a 0.1% smaller σ (${sigma * 0.999}) spends more than ${epsilon}`)
    // the budget, charged step by step with that σ, takes every planned step
    const budget = new PrivacyBudget(epsilon, 1e-5)
    budget.spend({ q, noiseMultiplier: sigma, steps })
    assert.ok(budget.spent.epsilon <= epsilon)
  }
  // more steps or a larger q need more noise
  assert.ok(noiseForBudget({ q: 0.05, steps: 400, epsilon: 8, delta: 1e-5 }) > noiseForBudget({ q: 0.05, steps: 200, epsilon: 8, delta: 1e-5 }))
  assert.ok(noiseForBudget({ q: 0.1, steps: 200, epsilon: 8, delta: 1e-5 }) > noiseForBudget({ q: 0.05, steps: 200, epsilon: 8, delta: 1e-5 }))
  throwsA(() => noiseForBudget({ q: 0, steps: 10, epsilon: 8, delta: 1e-5 }), InvalidArgumentError)
})

test('budget: spends while it fits, then refuses with a clear message and spends nothing', () => {
  const budget = new PrivacyBudget(1.0, 1e-5)
  assert.is(budget.spent.epsilon, 0)
  const step = { q: 0.01, noiseMultiplier: 1.1, steps: 100 }
  let spent = 0
  let refusals = 0
  for (let i = 0; i < 100; i++) {
    try {
      spent = budget.spend(step).epsilon
    } catch (e) {
      assert.instance(e, BudgetExceededError)
      assert.match((e as Error).message, /would bring ε from .* over this hospital's budget of ε=1/)
      refusals++
      break
    }
  }
  assert.is(refusals, 1)
  assert.ok(spent <= 1.0 && spent > 0.5, `spent ${spent}`)
  close(budget.spent.epsilon, spent, 1e-12)
  // what remains is consistent with maxSteps
  const more = budget.maxSteps(0.01, 1.1)
  assert.ok(more < 100)
  assert.ok(budget.preview({ q: 0.01, noiseMultiplier: 1.1, steps: more }).epsilon <= 1.0)
  assert.ok(budget.preview({ q: 0.01, noiseMultiplier: 1.1, steps: more + 1 }).epsilon > 1.0)
})

test('budget state survives a JSON round trip', () => {
  const budget = new PrivacyBudget(3, 1e-5)
  budget.spend({ q: 0.05, noiseMultiplier: 1.0, steps: 40 })
  const restored = PrivacyBudget.fromJSON(JSON.parse(JSON.stringify(budget)))
  assert.is(restored.spent.epsilon, budget.spent.epsilon)
  throwsA(() => PrivacyBudget.fromJSON({ epsilonBudget: 1, delta: 1e-5, orders: [2], rdp: [-1] }), InvalidArgumentError)
  throwsA(() => new PrivacyBudget(0, 1e-5), InvalidArgumentError)
  throwsA(() => new PrivacyBudget(1, 1), InvalidArgumentError)
})

test('Gaussian noise: mean 0, standard deviation as asked, reproducible from a seed', () => {
  const n = 200_000
  const z = gaussianNoise(n, 2.5, seededRandom(testSeed(1)))
  let s = 0; let s2 = 0; let beyond3 = 0
  for (const v of z) { s += v; s2 += v * v; if (Math.abs(v) > 7.5) beyond3++ }
  const mean = s / n
  const sd = Math.sqrt(s2 / n - mean * mean)
  close(mean, 0, 0.03, 'mean')
  close(sd, 2.5, 0.02, 'sd')
  close(beyond3 / n, 0.0027, 0.0006, 'P(|z| > 3σ)')
  assert.equal(Array.from(gaussianNoise(9, 1, seededRandom(testSeed(2)))), Array.from(gaussianNoise(9, 1, seededRandom(testSeed(2)))))
  assert.is(gaussianNoise(5, 0).every(v => v === 0), true)
})

test('Gaussian noise follows the normal distribution as a whole: Kolmogorov–Smirnov distance to Φ, odd lengths, neighbours uncorrelated', () => {
  const n = 100_001
  const sd = 1.7
  const z = gaussianNoise(n, sd, seededRandom(testSeed(4)))
  assert.is(z.length, n)
  const sorted = Float64Array.from(z).sort()
  const phi = (x: number): number => 0.5 * erfc(-x / (sd * Math.SQRT2))
  let d = 0
  for (let i = 0; i < n; i++) d = Math.max(d, Math.abs(phi(sorted[i]) - (i + 0.5) / n))
  // 1.95/√n is the 0.1% critical value; a transform off by a factor in its radius is ≥ 10× over
  assert.ok(d < 1.95 / Math.sqrt(n), `KS distance ${d}`)
  // the two values of each polar pair, and one pair's and the next's, are independent
  let c = 0
  for (let i = 0; i + 1 < n; i++) c += z[i] * z[i + 1]
  close(c / (n - 1) / (sd * sd), 0, 0.02, 'lag-1 correlation')
  // the last value of an odd length is drawn, not left at zero
  assert.ok(z[n - 1] !== 0)  // a source that is not random (constant bytes: every point falls outside the disc) is refused, not looped on
  throwsA(() => gaussianNoise(4, 1, { fill: (out: Uint8Array) => { out.fill(0) } }), InvalidArgumentError)
})

test('per-example clipping bounds each example\'s contribution to the sum', () => {
  const dim = 4
  const g = Float32Array.from([3, 4, 0, 0, /* norm 5 */ 0.3, 0.4, 0, 0 /* norm 0.5 */])
  const { sum, clipped } = clipAndSum(g, dim, 1)
  assert.is(clipped, 1)
  close(sum[0], 0.6 + 0.3, 1e-6)
  close(sum[1], 0.8 + 0.4, 1e-6)
  assert.equal(Array.from(clipAndSum(new Float32Array(0), dim, 1).sum), [0, 0, 0, 0])
  throwsA(() => clipAndSum(new Float32Array(5), dim, 1), InvalidArgumentError)
  throwsA(() => clipAndSum(Float32Array.from([NaN, 0, 0, 0]), dim, 1), InvalidArgumentError)
})

test('privatized gradient = (clipped sum + N(0, σ²C²)) / expected batch; empty batches get noise too', () => {
  const dim = 1000
  const params = { clipNorm: 1, noiseMultiplier: 2, expectedBatchSize: 10 }
  const empty = privatizeGradients(new Float32Array(0), dim, params, seededRandom(testSeed(3))).gradient
  let s2 = 0
  for (const v of empty) s2 += v * v
  close(Math.sqrt(s2 / dim), 2 * 1 / 10, 0.02, 'noise sd / batch')
  const noiseless = privatizeGradients(Float32Array.from({ length: 2 * dim }, () => 1), dim, { ...params, noiseMultiplier: 0 }).gradient
  close(noiseless[0], 2 * (1 / Math.sqrt(dim)) / 10, 1e-9)
})

test('Poisson sampling includes each index with probability q', () => {
  const idx = poissonSample(100_000, 0.03, seededRandom(testSeed(4)))
  close(idx.length / 100_000, 0.03, 0.002)
  assert.ok(idx.every((v, i) => i === 0 || v > idx[i - 1]))
  throwsA(() => poissonSample(10, 1.5), InvalidArgumentError)
})

test.run()
