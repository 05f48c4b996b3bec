/** Split conformal prediction from the pooled validation counts: thresholds, sets, and coverage on a held-out split. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mulberry32 } from './harness.ts'
import { conformalThreshold, empiricalCoverage, predictionSet, trueClassHistogram } from '../../src/protocol/conformal.ts'
import { validationCounts, validationLength } from '../../src/protocol/validation.ts'

/** n images of k classes from a model of this skill (seeded): softmax of noisy logits, the true class raised. */
function predictions (n: number, k: number, seed: number, skill: number): { probs: Float32Array, labels: Int32Array } {
  const rand = mulberry32(seed)
  const labels = Int32Array.from({ length: n }, () => Math.floor(rand() * k))
  const probs = new Float32Array(n * k)
  for (let i = 0; i < n; i++) {
    const logits = Array.from({ length: k }, (_, c) => (c === labels[i] ? skill : 0) + 2 * (rand() + rand() + rand() - 1.5))
    const m = Math.max(...logits)
    const e = logits.map(x => Math.exp(x - m))
    const s = e.reduce((a, b) => a + b, 0)
    e.forEach((x, c) => { probs[i * k + c] = x / s })
  }
  return { probs, labels }
}

/** the exact split conformal threshold from unbinned probabilities: the (n + 1 − ⌈(n + 1)(1 − α)⌉)-th smallest p_y */
function exactThreshold (p: { probs: Float32Array, labels: Int32Array }, k: number, coverage: number): number {
  const py = Array.from(p.labels, (y, i) => p.probs[i * k + y]).sort((a, b) => a - b)
  const n = py.length
  const rank = n + 1 - Math.ceil((n + 1) * coverage)
  return rank < 1 ? 0 : py[rank - 1]
}

for (const k of [2, 3, 5]) {
  test(`${k} classes: sets from pooled validation counts reach their coverage on a held-out split, and binning only widens them`, () => {
    const layout = { classes: k, bins: 1000 }
    // three hospitals' validation parts, summed as an eval round sums them
    const sites = [predictions(120, k, 11, 1.5), predictions(200, k, 12, 1.5), predictions(80, k, 13, 1.5)]
    const summed = new Float64Array(validationLength(layout))
    for (const s of sites) validationCounts(s.probs, s.labels, layout).forEach((v, i) => { summed[i] += v })
    assert.is(trueClassHistogram(summed, layout).reduce((a, b) => a + b, 0), 400, 'every validation image once')
    const pooled = { probs: Float32Array.from(sites.flatMap(s => Array.from(s.probs))), labels: Int32Array.from(sites.flatMap(s => Array.from(s.labels))) }
    const heldOut = predictions(20_000, k, 99, 1.5)
    for (const coverage of [0.9, 0.95]) {
      const tau = conformalThreshold(summed, layout, coverage)
      const exact = exactThreshold(pooled, k, coverage)
      assert.ok(tau <= exact && exact - tau <= 1 / layout.bins + 1e-9, `binned τ ${tau} is at most the exact ${exact}, by less than a bin`)
      const got = empiricalCoverage(heldOut.probs, heldOut.labels, k, tau)
      // the guarantee is on average over validation draws; 400 images leave a spread of about ±1.5 points
      assert.ok(got.coverage >= coverage - 0.02, `coverage ${got.coverage.toFixed(3)} for a promised ${coverage}`)
      assert.ok(got.meanSetSize < k, 'the sets are informative, not every class')
    }
  })
}

test('a stated coverage holds on average over many validation draws (the guarantee itself)', () => {
  const k = 3
  const layout = { classes: k, bins: 1000 }
  const heldOut = predictions(5000, k, 7, 1)
  let total = 0
  const draws = 40
  for (let d = 0; d < draws; d++) {
    const val = predictions(60, k, 1000 + d, 1)
    const tau = conformalThreshold(validationCounts(val.probs, val.labels, layout), layout, 0.9)
    total += empiricalCoverage(heldOut.probs, heldOut.labels, k, tau).coverage
  }
  assert.ok(total / draws >= 0.9 - 0.005, `mean coverage ${(total / draws).toFixed(4)} over ${draws} validation sets of 60`)
})

test('too few images for the coverage asked: every class (τ = 0); a set is never empty', () => {
  const layout = { classes: 3, bins: 100 }
  const few = predictions(8, 3, 5, 2)
  assert.is(conformalThreshold(validationCounts(few.probs, few.labels, layout), layout, 0.9), 0, '8 images cannot promise 90%')
  assert.is(conformalThreshold(new Float64Array(validationLength(layout)), layout, 0.9), 0)
  assert.equal(predictionSet([0.2, 0.5, 0.3], 0.9), [1], 'the most probable class when none reaches τ')
  assert.equal(predictionSet([0.2, 0.5, 0.3], 0.25), [1, 2])
  assert.equal(predictionSet([0.2, 0.5, 0.3], 0), [0, 1, 2])
})

test.run()
