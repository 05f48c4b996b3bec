/**
 * What the simulator's two transports share: the run's setup, a round's record and how it is
 * built, the faults of a round, the traffic sums, the check that no two peers certified different
 * things, the progress line.
 */
import type { SelectionParams } from '../../src/protocol/selection.ts'
import type { AggregationParams, TrainingParams } from '../../src/protocol/manifest.ts'
import type { Ledger, LedgerEntry } from '../../src/protocol/ledger.ts'
import { candidateFiguresLine, decisionAt, decisionLine, selectionStatus, type SelectionStatus } from '../../src/node/selection-status.ts'
import { hex } from '../../src/protocol/codec.ts'
import { chooseIndex, decodeValidation, degenerateReason, judgeSeries, noLongerImproving, stillChoosable, type ValidationFigures } from '../../src/protocol/validation.ts'
import type { ModelId } from '../../src/training/models.ts'
import { formatMetrics, type ClinicalMetrics } from '../../src/training/metrics.ts'
import type { TrafficKind } from '../../src/node/metrics.ts'
import { faultsOfRound, type Fault } from './faults.ts'
import type { SimData } from './data.ts'

export interface SimSetup {
  n: number
  rounds: number
  seed: number
  modelId: ModelId
  data: SimData
  /** hospital i trains on these indices of data.train */
  parts: number[][]
  initialWeights: Float32Array
  /** the file they came from (--init), or null: built from the seed */
  init: string | null
  /** the model's size on the wire (its weights as float32), to express traffic in model sizes */
  modelBytes: number
  /** every hospital's local recipe (the manifest's params.training) and the server's rule */
  training: TrainingParams
  aggregation: Pick<AggregationParams, 'rule' | 'serverLr' | 'beta1'>
  /** DP-SGD's budget per hospital, noise multiplier (0: calibrated at each hospital) and clipping norm */
  dp: { epsilon: number, noise: number, clip: number } | null
  /** sliced aggregation's slices and aggregators per slice (manifest params.slicing), or null: all-to-all */
  slicing: { slices: number, perSlice: number } | null
  /** federated recipe selection (manifest params.selection), or null */
  selection: SelectionParams | null
  /** the initial weights of the model at a candidate's other width */
  initialOf: (width: number) => Float32Array
  /** eval rounds without a better pooled validation AUC that end the run (0: run every round) */
  patience: number
  /** worker threads per node process that split each batch (tcp) */
  trainingWorkers: number
  dropout: number
  killAt: number | null
  malicious: boolean
  latencyMs: number
  bandwidthBytesPerMs: number | undefined
  outDir: string
  /** test metrics of a global model, normalised with the certified pixel statistics */
  /** test metrics of a global model; null for a state of several candidates' models side by side (recipe selection) */
  evaluate: (weights: Float32Array, stats: ArrayLike<number> | null) => ClinicalMetrics | null
  seedBytes: (k: number) => Uint8Array
  out: (s: string) => void
}

export interface RoundRecord {
  /** the model round (1, 2, …) */
  round: number
  /** the protocol rounds it took: the model round and the eval round that judged it */
  protocolRounds: number[]
  participants: number[]
  /** the certified model on the test split */
  metrics: ClinicalMetrics | null
  /** the consortium's pooled validation of it (the eval round), or null if that round did not certify */
  validation: ValidationFigures | null
  /** ε spent per hospital through this round's training */
  epsilon: number[]
  /** bytes all hospitals sent for this round, counted where they were sent */
  bytes: number
  bytesByKind: Record<TrafficKind, number>
  /** bytes / the model's size */
  modelSizes: number
  /** milliseconds spent in each phase, as seen by one peer (simulated time in memory) */
  phaseMs: Record<string, number>
  /** hospitals offline during the round (drawn for --dropout) */
  offline: number[]
  /** every fault injected in this round, as planned from the seed (see faults.ts) */
  faults: Fault[]
  /** the hospital whose view of the phases is reported (-1: none) */
  reference: number
  /** the certified model state of this round (hex SHA-256), or null if the round did not certify */
  stateHash: string | null
}

export const emptyTraffic = (): Record<TrafficKind, number> => ({ gossip: 0, 'masked-vector': 0, state: 0, ledger: 0 })

/** The model round the consortium keeps, chosen as its nodes choose it (protocol/validation.ts chooseIndex; the last certified one when no eval round certified). */
export function chosenRound (records: RoundRecord[], classes: number): number {
  const validated = records.map((r, i) => ({ r, i })).filter(x => x.r.validation !== null)
  const pick = chooseIndex(judgeSeries(validated.map(x => x.r.validation!), classes))
  if (pick >= 0) return validated[pick].i
  for (let i = records.length - 1; i >= 0; i--) if (records[i].metrics !== null) return i
  return -1
}

/** The records (indices) whose models may still be chosen as more rounds are validated (validation.ts stillChoosable). */
export function stillChoosableRecords (records: RoundRecord[], classes: number): number[] {
  const validated = records.map((r, i) => ({ r, i })).filter(x => x.r.validation !== null)
  return stillChoosable(judgeSeries(validated.map(x => x.r.validation!), classes)).map(j => validated[j].i)
}

export interface FederationResult {
  records: RoundRecord[]
  bytesPerNode: number[]
  seconds: number
  /** no two peers hold different certificates for one round */
  consistent: boolean
  /** certificates on the longest ledger, and how many peers hold it */
  longest: number
  atHead: number
  peakRssMB: number
  peakRssPerNodeMB: number
  rejections: number
  epsilon: number[]
  /** how the peers were connected, for the report */
  transport: string
  /** the consortium's model (the best round by validation) and the certified statistics it is normalised with */
  chosen: { weights: Float32Array, stats: ArrayLike<number> | null } | null
  /** the recipe selection as the ledger records it (node/selection-status.ts), or null without one */
  selection: SelectionStatus | null
}

/** What the eval round that judged model round k says of the recipe selection: each candidate's figures and the rung's decision, if any. */
export function selectionLines (ledger: Ledger | undefined, k: number): string[] {
  const e = ledger?.entries.find(x => x.header.round === 2 * k && x.header.kind === 'eval')
  if (ledger === undefined || e === undefined || ledger.manifest.params.selection === undefined) return []
  const figures = candidateFiguresLine(ledger.manifest, ledger.entries, e)
  const decision = decisionAt(ledger.manifest, ledger.entries, e)
  // (the node's line names the protocol's eval round; the simulator's progress counts model rounds)
  return [...(figures === null ? [] : [figures.replace(/^round \d+:/, `round ${k}:`)]), ...(decision === null ? [] : [decisionLine(ledger.manifest.params.selection, decision)])]
}

/** The selection for the report (null without one). */
export const selectionReport = (ledger: Ledger | undefined): SelectionStatus | null => ledger === undefined ? null : selectionStatus(ledger.manifest, ledger)

export const PHASES = ['advertise', 'share-keys', 'masked-input', 'survivor-set', 'unmask', 'commit']

export function progressLine (r: RoundRecord, n: number, withEpsilon: boolean): string {
  const certified = r.participants.length > 0
  return `round ${r.round}: ${certified ? `certified, ${r.participants.length}/${n} hospitals` : 'aborted'}${r.offline.length > 0 ? ` (${r.offline.length} offline)` : ''}` +
    `${r.validation !== null ? ` — validation AUC ${r.validation.auc.toFixed(3)}${degenerateNote(r)}` : ''}${r.metrics !== null ? ` — test ${formatMetrics(r.metrics)}` : ''}${withEpsilon ? ` — ε ${r.epsilon.map(e => e.toFixed(2)).join('/')}` : ''} — ${(r.bytes / 1e6).toFixed(1)} MB sent (${r.modelSizes.toFixed(1)}× the model; ${(r.modelSizes / n).toFixed(1)}× per hospital)` +
    ` — phases ${Object.entries(r.phaseMs).map(([p, ms]) => `${p} ${ms} ms`).join(', ')}`
}

/** ' (DEGENERATE: why)' when the round's pooled validation found the model degenerate */
function degenerateNote (r: RoundRecord): string {
  const why = r.validation === null || r.metrics === null ? null : degenerateReason(r.validation, r.metrics.confusion.length)
  return why === null ? '' : ` (DEGENERATE: ${why})`
}

/** Round k's faults as both transports apply them: the plan, who is offline, whether the crash victim goes down or comes back. */
export function roundFaults (s: Pick<SimSetup, 'n' | 'dropout' | 'killAt' | 'malicious' | 'seed'>, k: number): { faults: Fault[], absent: Set<number>, crash: boolean, restart: boolean } {
  const faults = faultsOfRound(s, k)
  return {
    faults,
    absent: new Set(faults.filter(f => f.fault === 'offline').map(f => f.hospital)),
    crash: faults.some(f => f.fault === 'crash'),
    restart: faults.some(f => f.fault === 'restart')
  }
}

/** Model round k's record, from what a transport saw of protocol rounds 2k - 1 (the model) and 2k (its eval round). */
export function roundRecord (k: number, plan: { faults: Fault[], absent: Set<number> }, seen: {
  model: LedgerEntry | undefined, judged: LedgerEntry | undefined, participants: number[], metrics: ClinicalMetrics | null,
  epsilon: number[], traffic: Traffic, phaseMs: Record<string, number>, reference: number
}): RoundRecord {
  const update = seen.model !== undefined && seen.model.header.kind === 'update' ? seen.model : undefined
  return {
    round: k,
    protocolRounds: [2 * k - 1, 2 * k],
    participants: seen.participants,
    metrics: seen.metrics,
    stateHash: update === undefined ? null : hex(update.header.stateHash),
    validation: seen.judged?.header.kind === 'eval' ? decodeValidation(seen.judged.header.extra) : null,
    epsilon: seen.epsilon,
    ...seen.traffic,
    phaseMs: seen.phaseMs,
    offline: [...plan.absent].sort((a, b) => a - b),
    faults: plan.faults,
    reference: seen.reference
  }
}

export type Traffic = Pick<RoundRecord, 'bytes' | 'bytesByKind' | 'modelSizes'>

/** acc += x, kind by kind */
export function addTraffic (acc: Record<TrafficKind, number>, x: Record<TrafficKind, number>): Record<TrafficKind, number> {
  for (const k of Object.keys(acc) as TrafficKind[]) acc[k] += x[k]
  return acc
}

/** Bytes sent for these protocol rounds, by kind and in all, and that in model sizes, from counts by round (one map per sender, or one for all). */
export function sumTraffic (counts: Iterable<ReadonlyMap<number, Record<TrafficKind, number>>>, rounds: number[], modelBytes: number): Traffic {
  const byKind = emptyTraffic()
  for (const byRound of counts) {
    for (const r of rounds) {
      const x = byRound.get(r)
      if (x !== undefined) addTraffic(byKind, x)
    }
  }
  const bytes = Object.values(byKind).reduce((a, b) => a + b, 0)
  return { bytes, bytesByKind: byKind, modelSizes: bytes / modelBytes }
}

/**
 * Safety across the consortium: no two peers hold different certificates for one round (a peer
 * that missed the last rounds holds a prefix of the others' ledger), and every ledger could be
 * read (null: it could not); the longest ledger's length, and how many peers hold one that long.
 */
export function ledgerAgreement (ledgers: Array<{ entries: readonly LedgerEntry[] } | null>): Pick<FederationResult, 'consistent' | 'longest' | 'atHead'> {
  const byRound = new Map<number, Set<string>>()
  for (const l of ledgers) {
    for (const e of l?.entries ?? []) {
      if (!byRound.has(e.header.round)) byRound.set(e.header.round, new Set())
      byRound.get(e.header.round)!.add(hex(e.hash))
    }
  }
  const length = (l: { entries: readonly LedgerEntry[] } | null): number => l?.entries.length ?? 0
  const longest = Math.max(...ledgers.map(length))
  return {
    consistent: ledgers.every(l => l !== null) && [...byRound.values()].every(x => x.size === 1),
    longest,
    atHead: ledgers.filter(l => length(l) === longest).length
  }
}

/** Whether the consortium stops early (--patience eval rounds without a better pooled validation AUC), said in the progress. */
export function stopsEarly (ledger: Parameters<typeof noLongerImproving>[0] | undefined, s: Pick<SimSetup, 'patience' | 'out'>): boolean {
  if (ledger === undefined || !noLongerImproving(ledger, s.patience)) return false
  s.out(`validation AUC has not improved for ${s.patience} round(s): the consortium stops early`)
  return true
}
