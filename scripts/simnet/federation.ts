/** What the simulator's two transports share: the run's setup, a round's record, the progress line. */
import { subset, type ImageDataset } from '../../src/training/data/dataset.ts'
import { holdOut } from '../../src/training/data/partition.ts'
import type { AggregationParams, TrainingParams } from '../../src/protocol/manifest.ts'
import type { ValidationFigures } from '../../src/protocol/validation.ts'
import type { ModelId } from '../../src/training/models.ts'
import { formatMetrics, type ClinicalMetrics } from '../../src/training/metrics.ts'
import type { TrafficKind } from '../../src/node/metrics.ts'
import type { Fault } from './faults.ts'

export interface SimData { train: ImageDataset, val: ImageDataset | null, test: ImageDataset }

export interface SimSetup {
  n: number
  rounds: number
  seed: number
  modelId: ModelId
  data: SimData
  /** hospital i trains on these indices of data.train */
  parts: number[][]
  initialWeights: Float32Array
  /** the model's size on the wire (its weights as float32), to express traffic in model sizes */
  modelBytes: number
  /** every hospital's local recipe (the manifest's params.training) and the server's rule */
  training: TrainingParams
  aggregation: Pick<AggregationParams, 'rule' | 'serverLr' | 'beta1'>
  /** DP-SGD's budget per hospital, noise multiplier (0: calibrated at each hospital) and clipping norm */
  dp: { epsilon: number, noise: number, clip: number } | null
  /** sliced aggregation's slices and aggregators per slice (manifest params.slicing), or null: all-to-all */
  slicing: { slices: number, perSlice: number } | null
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
  evaluate: (weights: Float32Array, stats: ArrayLike<number> | null) => ClinicalMetrics
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

/** Hospital i's data: its share of the training split, of which a seeded 10% is its own validation part. */
export function hospitalData (s: Pick<SimSetup, 'data' | 'parts' | 'seedBytes'>, i: number): { train: ImageDataset, val: ImageDataset } {
  const { kept, held } = hospitalSplit(s, i)
  return { train: subset(s.data.train, kept), val: subset(s.data.train, held) }
}

/** Which of data.train's images hospital i trains on (kept) and validates on (held). */
export function hospitalSplit (s: Pick<SimSetup, 'parts' | 'seedBytes'>, i: number): { kept: number[], held: number[] } {
  return holdOut(s.parts[i], 0.1, s.seedBytes(400 + i))
}

/** All hospitals' data pooled: what one site holding all of it would train and validate on. */
export function pooledData (s: Pick<SimSetup, 'data' | 'parts' | 'seedBytes'>): { train: ImageDataset, val: ImageDataset } {
  const splits = s.parts.map((_, i) => hospitalSplit(s, i))
  return { train: subset(s.data.train, splits.flatMap(x => x.kept)), val: subset(s.data.train, splits.flatMap(x => x.held)) }
}

/** The model round the consortium keeps: the best by pooled validation AUC (the last certified one when no eval round certified). */
export function chosenRound (records: RoundRecord[]): number {
  let best = -1
  records.forEach((r, i) => { if (r.validation !== null && !Number.isNaN(r.validation.auc) && (best < 0 || r.validation.auc > records[best].validation!.auc)) best = i })
  if (best >= 0) return best
  for (let i = records.length - 1; i >= 0; i--) if (records[i].metrics !== null) return i
  return -1
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
}

export const PHASES = ['advertise', 'share-keys', 'masked-input', 'survivor-set', 'unmask', 'commit']

export function progressLine (r: RoundRecord, n: number, withEpsilon: boolean): string {
  const certified = r.participants.length > 0
  return `round ${r.round}: ${certified ? `certified, ${r.participants.length}/${n} hospitals` : 'aborted'}${r.offline.length > 0 ? ` (${r.offline.length} offline)` : ''}` +
    `${r.validation !== null ? ` — validation AUC ${r.validation.auc.toFixed(3)}` : ''}${r.metrics !== null ? ` — test ${formatMetrics(r.metrics)}` : ''}${withEpsilon ? ` — ε ${r.epsilon.map(e => e.toFixed(2)).join('/')}` : ''} — ${(r.bytes / 1e6).toFixed(1)} MB sent (${r.modelSizes.toFixed(1)}× the model; ${(r.modelSizes / n).toFixed(1)}× per hospital)` +
    ` — phases ${Object.entries(r.phaseMs).map(([p, ms]) => `${p} ${ms} ms`).join(', ')}`
}
