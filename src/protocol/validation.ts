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
import { CONFORMAL_COVERAGES, conformalThreshold } from './conformal.ts'

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

export interface ValidationFigures {
  auc: number
  accuracy: number
  n: number
  /** how many classes the model predicted for at least one validation image (null: a certificate from before it was counted) */
  predictedClasses: number | null
  /** the most distinct probability bins any scored class's scores fell in (1: every score tied) */
  scoreBins: number | null
  /** split conformal prediction thresholds (conformal.ts), one per CONFORMAL_COVERAGES entry */
  conformal: Array<{ coverage: number, threshold: number }>
}

/** Pooled AUC (macro over the scored classes), accuracy, what shows a degenerate model, and the conformal thresholds, from summed counts. */
export function validationFigures (counts: ArrayLike<number>, l: ValidationLayout): ValidationFigures {
  const k = l.classes
  let n = 0
  let correct = 0
  let predictedClasses = 0
  for (let p = 0; p < k; p++) {
    let column = 0
    for (let t = 0; t < k; t++) { column += counts[t * k + p]; if (t === p) correct += counts[t * k + p] }
    n += column
    if (column > 0) predictedClasses++
  }
  const aucs: number[] = []
  let scoreBins = 0
  scored(l).forEach((_, j) => {
    const pos = k * k + 2 * l.bins * j
    const neg = pos + l.bins
    let negBelow = 0
    let pairs = 0
    let positives = 0
    let occupied = 0
    for (let b = 0; b < l.bins; b++) {
      pairs += counts[pos + b] * (negBelow + 0.5 * counts[neg + b])
      negBelow += counts[neg + b]
      positives += counts[pos + b]
      if (counts[pos + b] + counts[neg + b] > 0) occupied++
    }
    scoreBins = Math.max(scoreBins, occupied)
    if (positives > 0 && negBelow > 0) aucs.push(pairs / (positives * negBelow))
  })
  return {
    auc: aucs.length === 0 ? NaN : aucs.reduce((a, b) => a + b, 0) / aucs.length,
    accuracy: n === 0 ? NaN : correct / n,
    n,
    predictedClasses,
    scoreBins,
    conformal: CONFORMAL_COVERAGES.map(coverage => ({ coverage, threshold: conformalThreshold(counts, l, coverage) }))
  }
}

/**
 * Why a model is degenerate, or null: it predicted one class for every validation image, or every
 * score it gave fell in one bin (all tied). Such a model has learnt nothing a clinician can use,
 * whatever its accuracy (which is then the share of the majority class).
 */
export function degenerateReason (f: Pick<ValidationFigures, 'predictedClasses' | 'scoreBins' | 'n'>, classes: number): string | null {
  if (f.n < 2) return null
  if (f.scoreBins !== null && f.scoreBins <= 1) return 'every validation score is tied'
  if (f.predictedClasses !== null && f.predictedClasses <= 1 && classes > 1) return 'it predicts one class for every validation image'
  return null
}

/**
 * The figures an eval certificate carries in its header's extra field, as float64: [auc, accuracy,
 * n] (the first version), then [predicted classes, score bins, one threshold per conformal coverage].
 */
export function encodeValidation (f: ValidationFigures): Uint8Array {
  const thresholds = CONFORMAL_COVERAGES.map(c => f.conformal.find(x => x.coverage === c)?.threshold ?? 0)
  return new Uint8Array(Float64Array.of(f.auc, f.accuracy, f.n, f.predictedClasses ?? NaN, f.scoreBins ?? NaN, ...thresholds).buffer)
}

const EXTRA_V1 = 24
const EXTRA_V2 = 8 * (5 + CONFORMAL_COVERAGES.length)

export function decodeValidation (extra: Uint8Array): ValidationFigures | null {
  if (extra.length !== EXTRA_V1 && extra.length !== EXTRA_V2) return null
  const v = new Float64Array(Uint8Array.from(extra).buffer)
  const old = extra.length === EXTRA_V1
  const known = (x: number): number | null => old || Number.isNaN(x) ? null : x
  return {
    auc: v[0], accuracy: v[1], n: v[2],
    predictedClasses: known(v[3]), scoreBins: known(v[4]),
    conformal: old ? [] : CONFORMAL_COVERAGES.map((coverage, i) => ({ coverage, threshold: v[5 + i] }))
  }
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

/** Each validated model round with its smoothed AUC (see bestModel) and, if it is degenerate, why. */
export interface JudgedRound { model: LedgerEntry, figures: ValidationFigures, smoothedAuc: number, degenerate: string | null }

/** how many rounds either side the choice averages over */
export const SMOOTHING_RADIUS = 1

/** Each of a series of validated rounds' figures judged: its AUC averaged with its neighbours' and whether it is degenerate. */
export function judgeSeries (series: ValidationFigures[], classes: number): Array<{ smoothedAuc: number, degenerate: string | null }> {
  return series.map((f, i) => {
    const near = series.slice(Math.max(0, i - SMOOTHING_RADIUS), i + SMOOTHING_RADIUS + 1).map(x => x.auc).filter(a => !Number.isNaN(a))
    return { smoothedAuc: Number.isNaN(f.auc) || near.length === 0 ? NaN : near.reduce((a, b) => a + b, 0) / near.length, degenerate: degenerateReason(f, classes) }
  })
}

/**
 * Which of the judged rounds to use. With 15–25 validation images per hospital one round's pooled
 * AUC moves by several points from noise alone (its standard error is about 0.03–0.05 at 100
 * images), so picking the single best round picks noise: the round chosen is the one whose AUC
 * averaged with its neighbours' (one round either side) is highest, a model in a stretch of
 * training that was good, not one lucky evaluation. A degenerate round is never chosen while a
 * round that is not degenerate exists. Earliest among equals; -1 when no round has an AUC.
 */
export function chooseIndex (judged: ReadonlyArray<{ smoothedAuc: number, degenerate: string | null }>): number {
  const withAuc = judged.map((j, i) => ({ ...j, i })).filter(j => !Number.isNaN(j.smoothedAuc))
  const healthy = withAuc.filter(j => j.degenerate === null)
  let best = -1
  for (const j of healthy.length > 0 ? healthy : withAuc) if (best < 0 || j.smoothedAuc > judged[best].smoothedAuc) best = j.i
  return best
}

/**
 * Which of the judged rounds may still become the chosen one as more rounds are validated, so
 * that a node keeps their states: the best among the rounds whose average is final (all but the
 * last SMOOTHING_RADIUS, whose neighbours are not all validated yet), and those last ones. Rounds
 * not yet validated are kept besides (they are the latest). Indices in the series.
 */
export function stillChoosable (judged: ReadonlyArray<{ smoothedAuc: number, degenerate: string | null }>): number[] {
  const settled = judged.slice(0, Math.max(0, judged.length - SMOOTHING_RADIUS))
  const best = chooseIndex(settled)
  const open = Array.from({ length: judged.length - settled.length }, (_, i) => settled.length + i)
  return best < 0 ? open : [best, ...open]
}

/** The model certificates whose states may still be chosen (stillChoosable) and those certified since the last eval round. */
export function modelsToKeep (ledger: Pick<Ledger, 'entries'>, classes: number): LedgerEntry[] {
  const judged = judgedRounds(ledger, classes)
  // models certified since the last eval round (an update whose eval round aborted is never validated: not kept)
  const lastEval = ledger.entries.reduce((at, e, i) => e.header.kind === 'eval' ? i : at, -1)
  return [...stillChoosable(judged).map(i => judged[i].model), ...ledger.entries.slice(lastEval + 1).filter(e => e.header.kind === 'update')]
}

/** Every validated model round of a ledger, judged (judgeSeries). */
export function judgedRounds (ledger: Pick<Ledger, 'entries'>, classes: number): JudgedRound[] {
  const history = validationHistory(ledger)
  const judged = judgeSeries(history.map(h => h.figures), classes)
  return history.map((h, i) => ({ ...h, ...judged[i] }))
}

/** The model round to use (chooseIndex), or undefined before any eval round or when no round has an AUC. */
export function bestModel (ledger: Pick<Ledger, 'entries'>, classes = 2): JudgedRound | undefined {
  const judged = judgedRounds(ledger, classes)
  return judged[chooseIndex(judged)]
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
