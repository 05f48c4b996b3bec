/**
 * Federated recipe selection by successive halving (docs/PROTOCOL.md §9). The manifest lists K
 * candidate recipes (learning rate, local epochs, the model's width). While selection runs, the
 * consortium's global state is the K candidates' models side by side, each starting from the
 * consortium's initial weights (a candidate of another width: from that width's, which the
 * manifest pins by size and hash like the model's): every hospital trains each part with its own recipe and sends one
 * update, the concatenation, under the same secure aggregation as any model round (so no
 * hospital's per-recipe update is ever seen either), and each eval round pools every part's
 * validation counts, its certificate carrying one set of figures per candidate. After every
 * `rungRounds` model rounds (a rung) the better half by pooled validation AUC goes on and the rest
 * are dropped; when one is left, it is the consortium's model and trains on with its recipe.
 *
 * Nothing here is decided by anyone: which candidates are alive at a round is a pure function of
 * the manifest and the certified eval figures in the ledger, so every member drops the same parts
 * at the same round, and anyone who verifies the ledger can replay each choice. Pure.
 */
import type { LedgerEntry } from './ledger.ts'
import { initialState, stateHash, type GlobalState } from './model.ts'
import { hex } from './codec.ts'
import { decodeValidation, degenerateReason, modelRoundOf, type ValidationFigures } from './validation.ts'

/**
 * A candidate recipe: what it changes in params.training, and the model's width. `width`: the
 * model's filter counts times this factor (absent: the model as params.model names it); a
 * candidate of another width also names its model's `size` and `initialHash` (the hash of the
 * state its initial weights make, built from params.model.seed), which every member checks as it
 * checks params.model's.
 */
export interface Recipe { learningRate: number, epochs: number, width?: number, size?: number, initialHash?: string }

export interface SelectionParams {
  /** the candidates, the first usually the consortium's base recipe (it wins ties) */
  candidates: Recipe[]
  /** model rounds each rung trains before the worse half is dropped */
  rungRounds: number
}

export const MAX_CANDIDATES = 8

/** Why these selection parameters cannot run (null: they can), for validateManifest. */
export function selectionProblem (s: unknown, p: { rounds: number, weightDecay?: number, dp: boolean, model?: { size: number, init?: string }, unsized?: boolean }): string | null {
  if (typeof s !== 'object' || s === null || Array.isArray(s)) return 'params.selection must be { candidates, rungRounds }'
  const o = s as Record<string, unknown>
  if (Object.keys(o).some(k => k !== 'candidates' && k !== 'rungRounds')) return 'params.selection must be { candidates, rungRounds }'
  if (!Array.isArray(o.candidates) || o.candidates.length < 2 || o.candidates.length > MAX_CANDIDATES) return `params.selection.candidates must list 2 to ${MAX_CANDIDATES} recipes`
  for (const [i, c] of (o.candidates as unknown[]).entries()) {
    const r = c as Record<string, unknown>
    if (typeof c !== 'object' || c === null || Object.keys(r).some(k => !CANDIDATE_KEYS.includes(k))) return `params.selection.candidates[${i}] must be { learningRate, epochs[, width, size, initialHash] }`
    if (typeof r.learningRate !== 'number' || !(r.learningRate >= 1e-9 && r.learningRate <= 10)) return `params.selection.candidates[${i}].learningRate must be in [1e-9, 10]`
    if (typeof r.epochs !== 'number' || !(r.epochs >= 0.01 && r.epochs <= 1000)) return `params.selection.candidates[${i}].epochs must be in [0.01, 1000]`
    if (p.weightDecay !== undefined && r.learningRate * p.weightDecay >= 0.1) return `params.selection.candidates[${i}]: weightDecay times learningRate must be below 0.1`
    const width = widthProblem(p.unsized === true && r.width !== undefined ? { ...r, size: 1, initialHash: '0'.repeat(64) } : r, i, p.model)
    if (width !== null) return width
  }
  const sizes = p.unsized === true ? null : widthsProblem(o.candidates as Recipe[], p.model?.size)
  if (sizes !== null) return sizes
  if (typeof o.rungRounds !== 'number' || !Number.isInteger(o.rungRounds) || o.rungRounds < 1 || o.rungRounds > 1000) return 'params.selection.rungRounds must be an integer in [1, 1000]'
  // DP-SGD would spend a hospital's budget once per candidate, and the accountant plans one recipe
  if (p.dp) return 'recipe selection does not run with DP-SGD: each candidate would spend the privacy budget again'
  if (selectionRounds(o as unknown as SelectionParams) >= p.rounds) return `recipe selection takes ${selectionRounds(o as unknown as SelectionParams)} model rounds: params.training.rounds must be more`
  return null
}

const CANDIDATE_KEYS = ['learningRate', 'epochs', 'width', 'size', 'initialHash']

/** A candidate's width, size and initial hash: absent together, or a width other than 1 with its model's size and hash. */
function widthProblem (r: Record<string, unknown>, i: number, model: { size: number, init?: string } | undefined): string | null {
  const at = `params.selection.candidates[${i}]`
  if (r.width === undefined) return r.size === undefined && r.initialHash === undefined ? null : `${at}: size and initialHash go with a width`
  if (typeof r.width !== 'number' || !(r.width >= 0.25 && r.width <= 4) || !Number.isInteger(r.width * 4) || r.width === 1) return `${at}.width must be a multiple of 0.25 in [0.25, 4] other than 1 (absent: the model's own width)`
  if (typeof r.size !== 'number' || !Number.isInteger(r.size) || r.size < 1 || r.size > 2 ** 28) return `${at}.size must be the weight count of the model at width ${r.width}, an integer in [1, 2^28]`
  if (typeof r.initialHash !== 'string' || !/^[0-9a-f]{64}$/.test(r.initialHash)) return `${at}.initialHash must be 64 hex digits`
  // the other widths' weights are built from the seed: given weights (a pretrained model) are of one width
  if (model?.init !== undefined) return `${at}: a consortium that starts from given weights (params.model.init) cannot try other widths of its model`
  return null
}

/**
 * the candidates' models together, at most: with a server optimiser's two vectors beside the
 * weights a state of 384 MiB, under the 512 MiB a state may travel and be stored in
 */
export const MAX_SELECTION_WEIGHTS = 2 ** 25

/**
 * Each width has one size, and different widths different sizes; no two or more candidates'
 * models together have as many weights as one width's model (a certified state of one model says
 * by its length which width it is, widthOfWeights, and a state of several is never taken for one);
 * the candidates' models together fit a state (MAX_SELECTION_WEIGHTS).
 */
function widthsProblem (candidates: readonly Recipe[], modelSize: number | undefined): string | null {
  const byWidth = new Map<number, number>()
  if (modelSize !== undefined) byWidth.set(1, modelSize)
  for (const c of candidates) {
    if (c.width === undefined) continue
    const known = byWidth.get(c.width)
    if (known !== undefined && known !== c.size) return `params.selection: two candidates of width ${c.width} give different sizes (${known} and ${c.size})`
    byWidth.set(c.width, c.size!)
  }
  if (new Set(byWidth.values()).size !== byWidth.size) return 'params.selection: two widths give models of the same size'
  if (modelSize === undefined) return null
  const sizes = candidates.map(c => c.size ?? modelSize)
  const total = sizes.reduce((a, b) => a + b, 0)
  if (total > MAX_SELECTION_WEIGHTS) return `params.selection: the candidates' models together have ${total} weights, more than a state may hold (${MAX_SELECTION_WEIGHTS}): fewer or narrower candidates`
  const single = new Set(byWidth.values())
  // every subset of two or more candidates (at most 2^8)
  for (let mask = 1; mask < 1 << sizes.length; mask++) {
    const members = sizes.filter((_, i) => (mask & (1 << i)) !== 0)
    if (members.length < 2) continue
    const sum = members.reduce((a, b) => a + b, 0)
    if (single.has(sum)) return `params.selection: ${members.length} candidates' models together have ${sum} weights, as many as one width's model: a state's width could not be told from its size`
  }
  return null
}

/**
 * The candidates with their widths' sizes and initial hashes filled in from the initial weights
 * `initialOf` builds at each width (manifest create, the simulator: from the model's seed).
 */
export function sizedCandidates (s: SelectionParams, initialOf: (width: number) => Float32Array): SelectionParams {
  const candidates = s.candidates.map(c => {
    const r: Recipe = { learningRate: c.learningRate, epochs: c.epochs }
    if (c.width === undefined) return r
    const w = initialOf(c.width)
    return { ...r, width: c.width, size: w.length, initialHash: hex(stateHash(initialState(w))) }
  })
  return { candidates, rungRounds: s.rungRounds }
}

/**
 * The width of the model a state of this many weights is (1: the model's own; each width's size
 * differs), or null when it is no one model: candidates' models side by side while selection runs.
 */
export function widthOfWeights (p: { selection?: SelectionParams, model: { size: number } }, weights: number): number | null {
  if (weights === p.model.size) return 1
  return p.selection?.candidates.find(c => c.size === weights)?.width ?? null
}

/** The weights of candidate `c`'s model: its width's size, or the model's. */
export function candidateSize (p: { selection?: SelectionParams, model: { size: number } }, c: number): number {
  return p.selection?.candidates[c]?.size ?? p.model.size
}

/** Candidate c's recipe as a site trains it: its number, learning rate and epochs, its model's width (absent: the model's) and its part's size. */
export function candidateRecipe (p: { selection?: SelectionParams, model: { size: number } }, c: number): { candidate: number, learningRate: number, epochs: number, widthFactor?: number, size: number } {
  const r = p.selection!.candidates[c]
  return { candidate: c, learningRate: r.learningRate, epochs: r.epochs, ...(r.width !== undefined ? { widthFactor: r.width } : {}), size: candidateSize(p, c) }
}

/** The widths other than the model's that the candidates try (none without selection). */
export function candidateWidths (selection: SelectionParams | undefined): number[] {
  return [...new Set((selection?.candidates ?? []).flatMap(c => c.width === undefined ? [] : [c.width]))]
}

/** Model rounds selection takes when no eval round aborts: rungs until one candidate is left. */
export function selectionRounds (s: SelectionParams): number {
  let live = s.candidates.length
  let rungs = 0
  while (live > 1) { live = Math.ceil(live / 2); rungs++ }
  return rungs * s.rungRounds
}

/** One candidate's standing at the end of a rung. */
export interface CandidateScore {
  candidate: number
  /** the mean pooled validation AUC over the rung's last (up to 2) eval rounds, NaN without one */
  auc: number
  /** accuracy in the rung's last eval round */
  accuracy: number
  degenerate: string | null
  kept: boolean
}

/** A decision: after `rung` (its model rounds `fromRound`..`toRound`), who goes on. */
export interface RungDecision { rung: number, fromRound: number, toRound: number, evals: number, scores: CandidateScore[], live: number[] }

export interface SelectionProgress {
  /** the candidates alive at the model round asked about, in candidate order (their parts' order in the state) */
  live: number[]
  /** the decisions of every rung that ended before it */
  decisions: RungDecision[]
  /** the winner once one is left */
  winner: number | null
}

/** The figure sets of a candidates' eval certificate (one per live part), or null for any other extra. */
export function decodeCandidateFigures (extra: Uint8Array, parts: number): ValidationFigures[] | null {
  if (parts < 2 || extra.length % parts !== 0) return null
  const size = extra.length / parts
  const out: ValidationFigures[] = []
  for (let i = 0; i < parts; i++) {
    const f = decodeValidation(extra.subarray(i * size, (i + 1) * size))
    if (f === null) return null
    out.push(f)
  }
  return out
}

/** Rank a rung's candidates: healthy before degenerate, then by mean AUC (NaN last), then the manifest's order. */
function decide (live: number[], evals: ValidationFigures[][], classes: number): CandidateScore[] {
  const recent = evals.slice(-2)
  const scores = live.map((candidate, i) => {
    const aucs = recent.map(e => e[i].auc).filter(a => !Number.isNaN(a))
    const last = recent.at(-1)?.[i]
    return { candidate, auc: aucs.length === 0 ? NaN : aucs.reduce((a, b) => a + b, 0) / aucs.length, accuracy: last?.accuracy ?? NaN, degenerate: last === undefined ? null : degenerateReason(last, classes), kept: false }
  })
  const key = (s: CandidateScore): number => (s.degenerate === null ? 2 : 0) + (Number.isNaN(s.auc) ? 0 : 1)
  const ranked = [...scores].sort((a, b) => key(b) - key(a) || (Number.isNaN(a.auc) ? 0 : b.auc - a.auc) || a.candidate - b.candidate)
  const keep = evals.length === 0 ? live.length : Math.ceil(live.length / 2)
  for (const s of ranked.slice(0, keep)) s.kept = true
  return scores
}

/**
 * Which candidates are alive at model round `modelRound`, from the certified eval rounds of the
 * rungs that ended before it. A rung's evals are those judging its model rounds whose figures
 * name as many candidates as were alive (an eval of a state from before a drop, after an aborted
 * model round, names more and is not counted). A rung with no certified eval drops nobody.
 */
export function selectionAt (entries: readonly LedgerEntry[], s: SelectionParams, classes: number, modelRound: number): SelectionProgress {
  let live = s.candidates.map((_, i) => i)
  const decisions: RungDecision[] = []
  for (let rung = 0; live.length > 1 && (rung + 1) * s.rungRounds < modelRound; rung++) {
    const fromRound = rung * s.rungRounds + 1
    const toRound = (rung + 1) * s.rungRounds
    const evals = entries
      .filter(e => e.header.kind === 'eval' && modelRoundOf(e.header.round) >= fromRound && modelRoundOf(e.header.round) <= toRound)
      .map(e => decodeCandidateFigures(e.header.extra, live.length))
      .filter((f): f is ValidationFigures[] => f !== null)
    const scores = decide(live, evals, classes)
    live = scores.filter(x => x.kept).map(x => x.candidate)
    decisions.push({ rung, fromRound, toRound, evals: evals.length, scores, live })
  }
  return { live, decisions, winner: live.length === 1 ? live[0] : null }
}

/**
 * The consortium's state before its first model round: each candidate's model from the initial
 * weights, those of its width (`initialOf`, for a candidate of another width) where it names one.
 */
export function selectionStartState (initial: GlobalState, s: SelectionParams | undefined, initialOf?: (width: number) => Float32Array): GlobalState {
  if (s === undefined) return initial
  const parts = s.candidates.map(c => {
    if (c.width === undefined) return initial.weights
    if (initialOf === undefined) throw new Error(`a candidate of width ${c.width} needs that width's initial weights`)
    const w = initialOf(c.width)
    if (w.length !== c.size) throw new Error(`the initial weights at width ${c.width} are ${w.length}, the manifest says ${c.size}`)
    return w
  })
  const weights = new Float32Array(parts.reduce((n, w) => n + w.length, 0))
  let at = 0
  for (const w of parts) { weights.set(w, at); at += w.length }
  return { weights, optimizer: [], step: initial.step }
}

/** The parts of `state` (candidates `from`, candidate c's of `sizeOf(c)` weights) that candidates `to` ⊆ `from` are. */
export function keepParts (state: GlobalState, sizeOf: (candidate: number) => number, from: readonly number[], to: readonly number[]): GlobalState {
  const offsets = partOffsets(from.map(sizeOf))
  if (state.weights.length !== offsets.at(-1)) throw new Error(`a state of ${state.weights.length} weights is not candidates ${from.join(', ')} (${offsets.at(-1)} weights)`)
  const pick = (v: Float32Array): Float32Array => {
    const out = new Float32Array(to.reduce((n, c) => n + sizeOf(c), 0))
    let put = 0
    for (const c of to) {
      const at = from.indexOf(c)
      if (at < 0) throw new Error(`candidate ${c} is not among the state's`)
      out.set(v.subarray(offsets[at], offsets[at + 1]), put)
      put += sizeOf(c)
    }
    return out
  }
  return { weights: pick(state.weights), optimizer: state.optimizer.map(pick), step: state.step }
}

/**
 * The state a model round `round` trains from: the last certified state without the parts of the
 * candidates dropped since it was certified. Without selection, or once it is over, the state as it is.
 */
export function roundBaseState (entries: readonly LedgerEntry[], p: { selection?: SelectionParams, model: { size: number, classes: number } }, round: number, state: GlobalState): GlobalState {
  const s = p.selection
  if (s === undefined) return state
  const lastModel = entries.findLast(e => e.header.kind === 'update')
  const before = lastModel === undefined ? s.candidates.map((_, i) => i) : selectionAt(entries, s, p.model.classes, modelRoundOf(lastModel.header.round)).live
  const now = selectionAt(entries, s, p.model.classes, modelRoundOf(round)).live
  return now.length === before.length ? state : keepParts(state, c => candidateSize(p, c), before, now)
}

/** Where each part starts, and the total last: [0, s0, s0 + s1, …]. */
export function partOffsets (sizes: readonly number[]): number[] {
  const out = [0]
  for (const n of sizes) out.push(out.at(-1)! + n)
  return out
}

/** Whether a round is a model round that starts a rung of recipe selection after the first (the rounds whose length a late certificate may change). */
export function startsRung (kind: string, round: number, selection: SelectionParams | undefined): boolean {
  if (kind !== 'update' || selection === undefined) return false
  const m = modelRoundOf(round)
  return m > 1 && (m - 1) % selection.rungRounds === 0
}

/** The candidates whose models the last certified state holds, in its order (null without selection). */
export function stateCandidates (entries: readonly LedgerEntry[], p: { selection?: SelectionParams, model: { classes: number } }): number[] | null {
  const s = p.selection
  if (s === undefined) return null
  const last = entries.findLast(e => e.header.kind === 'update')
  return last === undefined ? s.candidates.map((_, i) => i) : selectionAt(entries, s, p.model.classes, modelRoundOf(last.header.round)).live
}

/** The candidates whose models a round of this kind starts from: a model round's live ones, any other round's the certified state's (null without selection). */
export function roundCandidates (entries: readonly LedgerEntry[], p: { selection?: SelectionParams, model: { classes: number } }, round: number, kind: string): number[] | null {
  const s = p.selection
  if (s === undefined) return null
  return kind === 'update' ? selectionAt(entries, s, p.model.classes, modelRoundOf(round)).live : stateCandidates(entries, p)
}

/** model rounds per rung unless the founders say */
export const DEFAULT_RUNG_ROUNDS = 2

/**
 * The candidates `--select default` gives: the base recipe, and its learning rate three times
 * higher and three times lower (the base first: it wins ties). The learning rate is the setting
 * the measurements found to matter most from one data set to the next (docs/SIMULATION.md).
 */
export function defaultCandidates (base: Recipe): Recipe[] {
  const lr = (x: number): number => Number(x.toPrecision(3))
  return [{ ...base }, { learningRate: lr(base.learningRate * 3), epochs: base.epochs }, { learningRate: lr(base.learningRate / 3), epochs: base.epochs }]
}

/**
 * The selection `--select C [--rung-rounds R]` ask for (manifest create, the simulator): C is
 * `default` (defaultCandidates) or a comma list of LR[:EPOCHS[:WIDTH]] (an empty or absent EPOCHS:
 * the base recipe's; WIDTH: the model's width factor, absent or 1: the model's own); null when
 * neither flag is given; --rung-rounds alone is an error. The widths' sizes are filled in later
 * (sizedCandidates), and validateManifest checks the rest.
 */
export function selectionFromFlags (select: string | undefined, rungRounds: number | undefined, base: Recipe): { selection: SelectionParams | null } | { error: string } {
  if (select === undefined) return rungRounds === undefined ? { selection: null } : { error: '--rung-rounds goes with --select (recipe selection)' }
  const rung = rungRounds ?? DEFAULT_RUNG_ROUNDS
  if (select.trim() === 'default') return { selection: { candidates: defaultCandidates(base), rungRounds: rung } }
  const candidates: Recipe[] = []
  for (const item of select.split(',')) {
    const [lr, epochs, width, more] = item.trim().split(':')
    const recipe: Recipe = { learningRate: Number(lr), epochs: epochs === undefined || epochs === '' ? base.epochs : Number(epochs) }
    const w = width === undefined || width === '' ? 1 : Number(width)
    if (more !== undefined || lr === '' || !Number.isFinite(recipe.learningRate) || !Number.isFinite(recipe.epochs) || !Number.isFinite(w)) return { error: `--select takes 'default' or LR[:EPOCHS[:WIDTH]],..., not '${item}'` }
    candidates.push(w === 1 ? recipe : { ...recipe, width: w })
  }
  return { selection: { candidates, rungRounds: rung } }
}

/**
 * What a round of this kind starts from, given the certified state held (or, while `fetching`
 * the one certified last, a stand-in of its length: stateStandIn): for a model round, less the
 * candidates dropped since (roundBaseState); for any other round, as it is. `parts`: how many
 * candidates' models that state holds (roundCandidates; 1 without selection).
 */
export function roundStart (entries: readonly LedgerEntry[], p: { selection?: SelectionParams, model: { size: number, classes: number } }, round: number, kind: string, held: GlobalState, fetching: boolean): { state: GlobalState, parts: number } {
  const certified = (fetching ? stateStandIn(entries, p) : null) ?? held
  const parts = roundCandidates(entries, p, round, kind)?.length ?? 1
  return { state: kind === 'update' ? roundBaseState(entries, p, round, certified) : certified, parts }
}

/**
 * A stand-in for a certified state this peer is still fetching, of the length the certified state
 * has (its candidates' parts): a round that starts meanwhile checks inputs against it, and is
 * rebased onto the state when it arrives (a round cannot be rebased onto another length). Its
 * weights are never trained from or aggregated onto: the input waits for the state (input-gate.ts).
 */
export function stateStandIn (entries: readonly LedgerEntry[], p: { selection?: SelectionParams, model: { size: number, classes: number } }): GlobalState | null {
  const parts = stateCandidates(entries, p)
  if (parts === null) return null
  return { weights: new Float32Array(parts.reduce((n, c) => n + candidateSize(p, c), 0)), optimizer: [], step: 0 }
}
