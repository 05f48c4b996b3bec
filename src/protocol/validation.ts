/**
 * Federated validation: after each model round, an 'eval' round sums, through the same secure
 * aggregation as the model, every site's validation counts: its confusion matrix and, for each
 * scored class, histograms of that class's predicted probability over the site's positives and
 * its negatives. No site's own figures leave it in the clear; everyone learns the consortium's
 * pooled validation AUC and accuracy, which go into the eval certificate's header.
 *
 * Layout of the counts vector, for K classes and B bins:
 *   [ confusion K×K (row = true class, column = predicted) | for each scored class c: B bins of
 *     p_c over samples of class c, then B bins of p_c over the others ]
 * Binary tasks score class 1 only; multi-class tasks score every class (one-vs-rest, macro AUC).
 * The AUC from histograms treats scores in one bin as ties; with 1,000 bins it is within 0.001
 * of the exact pooled AUC (tested).
 */
import type { Ledger, LedgerEntry } from './ledger.ts'

export interface ValidationLayout { classes: number, bins: number }

const scored = (l: ValidationLayout): number[] => l.classes === 2 ? [1] : Array.from({ length: l.classes }, (_, c) => c)

/** Length of the counts vector. */
export function validationLength (l: ValidationLayout): number {
  return l.classes * l.classes + 2 * l.bins * scored(l).length
}

/** One site's counts from its predictions (row-major N × classes probabilities) and true labels. */
export function validationCounts (probs: ArrayLike<number>, labels: ArrayLike<number>, l: ValidationLayout): Float64Array {
  const k = l.classes
  const out = new Float64Array(validationLength(l))
  const classes = scored(l)
  for (let i = 0; i < labels.length; i++) {
    let best = 0
    for (let c = 1; c < k; c++) if (probs[i * k + c] > probs[i * k + best]) best = c
    out[labels[i] * k + best]++
    classes.forEach((c, j) => {
      const bin = Math.min(l.bins - 1, Math.max(0, Math.floor(probs[i * k + c] * l.bins)))
      const base = k * k + 2 * l.bins * j + (labels[i] === c ? 0 : l.bins)
      out[base + bin]++
    })
  }
  return out
}

export interface ValidationFigures { auc: number, accuracy: number, n: number }

/** Pooled AUC (macro over the scored classes) and accuracy from summed counts. */
export function validationFigures (counts: ArrayLike<number>, l: ValidationLayout): ValidationFigures {
  const k = l.classes
  let n = 0
  let correct = 0
  for (let t = 0; t < k; t++) for (let p = 0; p < k; p++) { n += counts[t * k + p]; if (t === p) correct += counts[t * k + p] }
  const aucs: number[] = []
  scored(l).forEach((_, j) => {
    const pos = k * k + 2 * l.bins * j
    const neg = pos + l.bins
    let negBelow = 0
    let pairs = 0
    let positives = 0
    let negatives = 0
    for (let b = 0; b < l.bins; b++) {
      pairs += counts[pos + b] * (negBelow + 0.5 * counts[neg + b])
      negBelow += counts[neg + b]
      positives += counts[pos + b]
    }
    negatives = negBelow
    if (positives > 0 && negatives > 0) aucs.push(pairs / (positives * negatives))
  })
  return { auc: aucs.length === 0 ? NaN : aucs.reduce((a, b) => a + b, 0) / aucs.length, accuracy: n === 0 ? NaN : correct / n, n }
}

/** The figures an eval certificate carries in its header's extra field: [auc, accuracy, n] as float64. */
export function encodeValidation (f: ValidationFigures): Uint8Array {
  return new Uint8Array(Float64Array.of(f.auc, f.accuracy, f.n).buffer)
}

export function decodeValidation (extra: Uint8Array): ValidationFigures | null {
  if (extra.length !== 24) return null
  const v = new Float64Array(Uint8Array.from(extra).buffer)
  return { auc: v[0], accuracy: v[1], n: v[2] }
}

/** Each model certificate with the validation of the eval round that judged it, in order. */
export function validationHistory (ledger: Pick<Ledger, 'entries'>): Array<{ model: LedgerEntry, figures: ValidationFigures }> {
  const out: Array<{ model: LedgerEntry, figures: ValidationFigures }> = []
  let model: LedgerEntry | undefined
  for (const e of ledger.entries) {
    if (e.header.kind === 'update') model = e
    else if (e.header.kind === 'eval' && model !== undefined) {
      const figures = decodeValidation(e.header.extra)
      if (figures !== null) out.push({ model, figures })
      model = undefined
    }
  }
  return out
}

/** The model round with the best validation AUC (the earliest among equals), or undefined before any eval round. */
export function bestModel (ledger: Pick<Ledger, 'entries'>): { model: LedgerEntry, figures: ValidationFigures } | undefined {
  let best: { model: LedgerEntry, figures: ValidationFigures } | undefined
  for (const h of validationHistory(ledger)) if (!Number.isNaN(h.figures.auc) && (best === undefined || h.figures.auc > best.figures.auc)) best = h
  return best
}

/** Whether `patience` eval rounds in a row have not improved on the best validation AUC before them (0: never stop early). */
export function noLongerImproving (ledger: Pick<Ledger, 'entries'>, patience: number): boolean {
  if (patience <= 0) return false
  const history = validationHistory(ledger)
  let bestAt = -1
  let bestAuc = -Infinity
  history.forEach((h, i) => { if (h.figures.auc > bestAuc) { bestAuc = h.figures.auc; bestAt = i } }) // NaN (nothing to judge by) never improves
  return bestAt >= 0 && history.length - 1 - bestAt >= patience
}

/** The kind of round r: statistics first, then a model round and its eval round in turn. */
export function roundKind (r: number): 'stats' | 'update' | 'eval' {
  return r === 0 ? 'stats' : r % 2 === 1 ? 'update' : 'eval'
}

/** Which model round (1, 2, …) protocol round r is, or judges (an eval round judges the one before it). */
export const modelRoundOf = (r: number): number => Math.ceil(r / 2)
