import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { rocAuc, clinicalMetrics } from '../../src/training/metrics.ts'

test('ROC-AUC: perfect, inverted, ties, and a hand-computed case', () => {
  assert.is(rocAuc([0.1, 0.2, 0.8, 0.9], [false, false, true, true]), 1)
  assert.is(rocAuc([0.9, 0.8, 0.2, 0.1], [false, false, true, true]), 0)
  assert.is(rocAuc([0.5, 0.5, 0.5, 0.5], [false, true, false, true]), 0.5)
  // positives 0.35, 0.8; negatives 0.1, 0.4: pairs (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
  assert.is(rocAuc([0.1, 0.4, 0.35, 0.8], [false, false, true, true]), 0.75)
  assert.ok(Number.isNaN(rocAuc([0.1, 0.2], [true, true])))
})

test('sensitivity, specificity, MCC and the confusion matrix', () => {
  // labels: 4 negatives, 6 positives; predictions by the larger probability
  const labels = Int32Array.of(0, 0, 0, 0, 1, 1, 1, 1, 1, 1)
  const p1 = [0.2, 0.3, 0.6, 0.1, 0.9, 0.8, 0.7, 0.4, 0.95, 0.55]
  const probs = Float32Array.from(p1.flatMap(p => [1 - p, p]))
  const m = clinicalMetrics(probs, labels, 2)
  // TN=3 FP=1 FN=1 TP=5
  assert.equal(m.confusion, [[3, 1], [1, 5]])
  assert.is(m.accuracy, 0.8)
  assert.ok(Math.abs(m.sensitivity - 5 / 6) < 1e-12)
  assert.ok(Math.abs(m.specificity - 3 / 4) < 1e-12)
  const mcc = (5 * 3 - 1 * 1) / Math.sqrt(6 * 6 * 4 * 4)
  assert.ok(Math.abs(m.mcc - mcc) < 1e-12)
  assert.ok(m.auc > 0.8 && m.auc <= 1)
})

test.run()
