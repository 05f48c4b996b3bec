/**
 * The figures clinicians read, for a binary task with class 1 = positive (pneumonia):
 * accuracy, ROC-AUC, sensitivity (recall of positives), specificity (recall of negatives),
 * Matthews correlation coefficient, and the confusion matrix. For more classes: accuracy, the
 * confusion matrix and the macro one-vs-rest AUC.
 */

export interface ClinicalMetrics {
  n: number
  accuracy: number
  auc: number
  sensitivity: number
  specificity: number
  mcc: number
  /** confusion[true][predicted] */
  confusion: number[][]
}

/** ROC-AUC as the Mann–Whitney statistic (ties count one half). NaN when a class is absent. */
export function rocAuc (scores: ArrayLike<number>, positive: ArrayLike<boolean>): number {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[a] - scores[b])
  let rankSumPos = 0
  let nPos = 0
  let i = 0
  while (i < idx.length) {
    let j = i
    while (j + 1 < idx.length && scores[idx[j + 1]] === scores[idx[i]]) j++
    const avgRank = (i + j) / 2 + 1
    for (let k = i; k <= j; k++) if (positive[idx[k]]) { rankSumPos += avgRank; nPos++ }
    i = j + 1
  }
  const nNeg = idx.length - nPos
  if (nPos === 0 || nNeg === 0) return NaN
  return (rankSumPos - nPos * (nPos + 1) / 2) / (nPos * nNeg)
}

/** Metrics from class probabilities (row-major N × classes) and true labels. */
export function clinicalMetrics (probs: Float32Array, labels: Int32Array, classes: number): ClinicalMetrics {
  const n = labels.length
  if (probs.length !== n * classes) throw new Error(`probs has ${probs.length} values for ${n} examples of ${classes} classes`)
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0))
  let correct = 0
  for (let i = 0; i < n; i++) {
    let best = 0
    for (let c = 1; c < classes; c++) if (probs[i * classes + c] > probs[i * classes + best]) best = c
    confusion[labels[i]][best]++
    if (best === labels[i]) correct++
  }
  const aucs: number[] = []
  for (let c = classes === 2 ? 1 : 0; c < classes; c++) {
    aucs.push(rocAuc(Float32Array.from({ length: n }, (_, i) => probs[i * classes + c]), Array.from(labels, l => l === c)))
  }
  const auc = aucs.reduce((a, b) => a + b, 0) / aucs.length
  let sensitivity = NaN; let specificity = NaN; let mcc = NaN
  if (classes === 2) {
    const [[tn, fp], [fn, tp]] = confusion
    sensitivity = tp / (tp + fn)
    specificity = tn / (tn + fp)
    const denom = Math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = denom === 0 ? 0 : (tp * tn - fp * fn) / denom
  }
  return { n, accuracy: n === 0 ? NaN : correct / n, auc, sensitivity, specificity, mcc, confusion }
}

export function formatMetrics (m: ClinicalMetrics): string {
  const f = (x: number) => Number.isNaN(x) ? 'n/a' : x.toFixed(3)
  return `AUC ${f(m.auc)}  ACC ${f(m.accuracy)}  sens ${f(m.sensitivity)}  spec ${f(m.specificity)}  MCC ${f(m.mcc)}  (n=${m.n})`
}
