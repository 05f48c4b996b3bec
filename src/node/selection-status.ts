/**
 * What a node says of the consortium's recipe selection (protocol/selection.ts): each eval round's
 * figures per candidate, each rung's decision when it is made, and /status's summary. Everything
 * is read from the verified ledger, so any member (or anyone holding the ledger) says the same.
 */
import type { Ledger, LedgerEntry } from '../protocol/ledger.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { decodeCandidateFigures, selectionAt, type Recipe, type RungDecision, type SelectionParams } from '../protocol/selection.ts'
import { degenerateReason, modelRoundOf } from '../protocol/validation.ts'

/** What a candidate changes, in words: its learning rate, epochs and, for another width than the model's, the width. */
export const recipeWords = (r: { learningRate: number, epochs: number, width?: number }): string => `lr ${r.learningRate}, ${r.epochs} epoch(s)${r.width === undefined ? '' : `, width ×${r.width}`}`

export const recipeName = (s: SelectionParams, c: number): string => `#${c + 1} (${recipeWords(s.candidates[c])})`

/** The eval certificate's line while candidates are judged side by side, or null for any other certificate. */
export function candidateFiguresLine (manifest: Manifest, entries: readonly LedgerEntry[], e: LedgerEntry): string | null {
  const s = manifest.params.selection
  if (s === undefined || e.header.kind !== 'eval') return null
  const live = selectionAt(entries, s, manifest.params.model.classes, modelRoundOf(e.header.round)).live
  const figures = decodeCandidateFigures(e.header.extra, live.length)
  if (figures === null) return null
  const each = figures.map((f, i) => {
    const degenerate = degenerateReason(f, manifest.params.model.classes)
    return `${recipeName(s, live[i])} AUC ${f.auc.toFixed(3)} ACC ${f.accuracy.toFixed(3)}${degenerate === null ? '' : ' DEGENERATE'}`
  })
  return `round ${e.header.round}: recipe selection, consortium validation of each candidate (n=${figures[0]?.n ?? 0}): ${each.join('; ')}`
}

export function decisionLine (s: SelectionParams, d: RungDecision): string {
  const scored = d.scores.map(x => `${recipeName(s, x.candidate)} ${Number.isNaN(x.auc) ? 'no AUC' : `AUC ${x.auc.toFixed(3)}`}${x.degenerate === null ? '' : ' degenerate'} ${x.kept ? 'kept' : 'dropped'}`)
  const how = d.evals === 0 ? 'no eval round of the rung was certified, so nobody is dropped' : `by the mean pooled validation AUC of its last ${Math.min(2, d.evals)} eval round(s)`
  const end = d.live.length === 1 ? `; ${recipeName(s, d.live[0])} is the consortium's recipe from now on` : ''
  return `recipe selection, rung ${d.rung + 1} (model rounds ${d.fromRound}-${d.toRound}) decided ${how}: ${scored.join('; ')}${end}`
}

/** The decision this eval certificate completes (its model round ends a rung), or null. */
export function decisionAt (manifest: Manifest, entries: readonly LedgerEntry[], e: LedgerEntry): RungDecision | null {
  const s = manifest.params.selection
  if (s === undefined || e.header.kind !== 'eval') return null
  const m = modelRoundOf(e.header.round)
  if (m % s.rungRounds !== 0) return null
  return selectionAt(entries, s, manifest.params.model.classes, m + 1).decisions.find(d => d.toRound === m) ?? null
}

/** /status's and the simulator report's selection (candidates numbered from 1, as the log names them). */
export interface SelectionStatus {
  candidates: Array<Recipe & { candidate: number }>
  rungRounds: number
  live: number[]
  winner: (Recipe & { candidate: number }) | null
  decisions: Array<{ rung: number, modelRounds: [number, number], evals: number, scores: Array<{ candidate: number, auc: number, accuracy: number, degenerate: string | null, kept: boolean }> }>
}

/** The selection in words, a line for the candidates and one per decision (the simulator's report). */
export function selectionSummary (s: SelectionStatus): string[] {
  const name = (c: Recipe & { candidate: number }): string => `#${c.candidate} (${recipeWords(c)})`
  return [
    `recipe selection among ${s.candidates.map(name).join(', ')}, halved every ${s.rungRounds} model round(s) by pooled validation AUC: ${s.winner === null ? `not finished (alive: ${s.live.map(c => `#${c}`).join(', ')})` : `${name(s.winner)} chosen`}`,
    ...s.decisions.map(d => `  rung ${d.rung} (model rounds ${d.modelRounds[0]}-${d.modelRounds[1]}, ${d.evals} eval round(s)): ${d.scores.map(x => `#${x.candidate} ${Number.isNaN(x.auc) ? 'no AUC' : `AUC ${x.auc.toFixed(3)}`}${x.degenerate === null ? '' : ' degenerate'} ${x.kept ? 'kept' : 'dropped'}`).join(', ')}`)
  ]
}

/** /status's selection: the candidates, who is alive for the next model round, each decision, the winner; null without selection. */
export function selectionStatus (manifest: Manifest, ledger: Pick<Ledger, 'entries' | 'lastRound'>): SelectionStatus | null {
  const s = manifest.params.selection
  if (s === undefined) return null
  const p = selectionAt(ledger.entries, s, manifest.params.model.classes, modelRoundOf(ledger.lastRound + 1) + 1)
  const named = (c: number): Recipe & { candidate: number } => ({ candidate: c + 1, ...s.candidates[c] })
  return {
    candidates: s.candidates.map((_, c) => named(c)),
    rungRounds: s.rungRounds,
    live: p.live.map(c => c + 1),
    winner: p.winner === null ? null : named(p.winner),
    decisions: p.decisions.map(d => ({ rung: d.rung + 1, modelRounds: [d.fromRound, d.toRound] as [number, number], evals: d.evals, scores: d.scores.map(x => ({ candidate: x.candidate + 1, auc: x.auc, accuracy: x.accuracy, degenerate: x.degenerate, kept: x.kept })) }))
  }
}
