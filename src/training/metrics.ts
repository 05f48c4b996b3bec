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
  /** more than two classes: each class's one-vs-rest AUC (for normal / bacterial / viral, normal's is the AUC of pneumonia against normal) */
  classAucs?: number[]
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
  return { n, accuracy: n === 0 ? NaN : correct / n, auc, sensitivity, specificity, mcc, confusion, ...(classes > 2 ? { classAucs: aucs } : {}) }
}

export function formatMetrics (m: ClinicalMetrics): string {
  const f = (x: number) => Number.isNaN(x) ? 'n/a' : x.toFixed(3)
  return `AUC ${f(m.auc)}  ACC ${f(m.accuracy)}  sens ${f(m.sensitivity)}  spec ${f(m.specificity)}  MCC ${f(m.mcc)}  (n=${m.n})`
}

/** The ROC curve of scores for a positive class: false and true positive rates from the highest threshold down (at most `points` points). */
export function rocCurve (scores: ArrayLike<number>, positive: ArrayLike<boolean>, points = 200): { fpr: number[], tpr: number[] } {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b] - scores[a])
  const P = idx.filter(i => positive[i]).length
  const N = idx.length - P
  const fpr = [0]; const tpr = [0]
  let tp = 0; let fp = 0
  const every = Math.max(1, Math.floor(idx.length / points))
  for (let k = 0; k < idx.length; k++) {
    if (positive[idx[k]]) tp++; else fp++
    const lastOfTie = k + 1 === idx.length || scores[idx[k + 1]] !== scores[idx[k]]
    if (lastOfTie && (k % every === 0 || k + 1 === idx.length)) { fpr.push(N === 0 ? 0 : fp / N); tpr.push(P === 0 ? 0 : tp / P) }
  }
  return { fpr, tpr }
}

export interface Calibration {
  /** per confidence bin: mean confidence, accuracy and count */
  bins: Array<{ confidence: number, accuracy: number, count: number }>
  /** expected calibration error: Σ_b (n_b / N) · |accuracy_b − confidence_b| */
  ece: number
}

/** Reliability of the predicted class's probability (top-label calibration), in equal-width bins. */
export function calibration (probs: ArrayLike<number>, labels: ArrayLike<number>, classes: number, bins = 10): Calibration {
  const conf = new Float64Array(bins); const hit = new Float64Array(bins); const count = new Float64Array(bins)
  for (let i = 0; i < labels.length; i++) {
    let best = 0
    for (let c = 1; c < classes; c++) if (probs[i * classes + c] > probs[i * classes + best]) best = c
    const p = probs[i * classes + best]
    const b = Math.min(bins - 1, Math.floor(p * bins))
    conf[b] += p; count[b]++
    if (best === labels[i]) hit[b]++
  }
  let ece = 0
  const out = Array.from({ length: bins }, (_, b) => {
    const n = count[b]
    if (n > 0) ece += (n / labels.length) * Math.abs(hit[b] / n - conf[b] / n)
    return { confidence: n === 0 ? NaN : conf[b] / n, accuracy: n === 0 ? NaN : hit[b] / n, count: n }
  })
  return { bins: out, ece }
}
