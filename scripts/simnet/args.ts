/**
 * `medmesh simnet`'s command line: the flags, their defaults (the measured recipes), and their
 * validation into one typed options object. Every bad flag is a UsageError, which the command line
 * turns into exit 64.
 */
import { selectionFromFlags, selectionProblem, type SelectionParams } from '../../src/protocol/selection.ts'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { UsageError, parseFlags } from '../../src/cli/main.ts'
import {
  AGGREGATION_RULES, AUGMENTATIONS, CLASS_WEIGHTINGS, DEFAULT_GUARDS, LR_SCHEDULES, PRIOR_CORRECTIONS, MAX_SLICES, defaultSlicing, slicingFromFlags,
  type AggregationParams, type SlicingParams, type TrainingParams
} from '../../src/protocol/manifest.ts'
import { MODEL_IDS, type ModelId } from '../../src/training/models.ts'
import type { LrSchedule } from '../../src/training/schedule.ts'
import { RECIPE as LEARNING_RECIPE, DP_RECIPE as LEARNING_DP_RECIPE, type Recipe } from '../../src/protocol/recipe.ts'

/** The recipes (src/protocol/recipe.ts) as this command's flag values: what the simulator uses unless told otherwise. */
function asFlags (r: Recipe): Record<'epochs' | 'batch-size' | 'learning-rate' | 'aggregation' | 'momentum' | 'prior-correction' | 'dp-noise' | 'dp-clip' | 'min-steps', string> {
  return { epochs: String(r.epochs), 'batch-size': String(r.batchSize), 'learning-rate': String(r.learningRate), aggregation: r.aggregation, momentum: String(r.momentum), 'prior-correction': r.priorCorrection, 'dp-noise': 'calibrated', 'dp-clip': String(r.dpClip), 'min-steps': String(r.minSteps) }
}
export const RECIPE = asFlags(LEARNING_RECIPE)
export const DP_RECIPE = asFlags(LEARNING_DP_RECIPE)

export const TRANSPORTS = ['tcp', 'memory'] as const
export const BASELINES = ['all', 'centralised', 'none'] as const
export const PARTITIONS = ['iid', 'dirichlet'] as const

export const simnetHelp = `Usage: medmesh simnet [options]

Simulate a consortium on one machine: real training, real secure aggregation and certificates.

  --nodes N            hospitals (default 5)
  --rounds R           model rounds (default 10)
  --transport T        tcp: each hospital a medmesh node in its own process, libp2p over TCP on
                       127.0.0.1 (default) | memory: all in this process, simulated time (large N)
  --dataset PATH       a MedMNIST .npz (grayscale or colour), or a folder of images by class (PNG,
                       JPEG, DICOM) with train/ and test/ sub-folders or without (then 20% is held
                       out for testing) (default: the bundled PneumoniaMNIST)
  --size PX            square side the images are resized to (area averaging; default: the data's own)
  --channels C         1 or 3 for image folders (default: 3 if any image is in colour, else 1)
  --partition P        iid | dirichlet (default dirichlet)   --alpha A (default 1.0)
  --model ID           ${MODEL_IDS.join(' | ')} (default: medmesh/cnn-small
                       up to 32 px, medmesh/cnn-gn-stem above)
  --epochs E           local epochs per round (default ${RECIPE.epochs}; with DP ${DP_RECIPE.epochs})   --batch-size B (default ${RECIPE['batch-size']}; with DP ${DP_RECIPE['batch-size']})
  --learning-rate LR   local Adam learning rate (default ${RECIPE['learning-rate']}; with DP ${DP_RECIPE['learning-rate']})   --class-weighting ${CLASS_WEIGHTINGS.join('|')} (default balanced)
  --prior-correction P none | pooled: each hospital's loss corrected for its class mix against the
                       pooled one (logit adjustment; default ${RECIPE['prior-correction']}; with DP ${DP_RECIPE['prior-correction']})
  --min-steps N        at least N local steps a round, a small hospital's epochs repeated (default ${RECIPE['min-steps']}; with DP ${DP_RECIPE['min-steps']}: none)
  --lr-schedule S      ${LR_SCHEDULES.join(' | ')}, over the rounds (default constant)
  --warmup-steps N     learning-rate warm-up over each site's first N steps (default ${DEFAULT_GUARDS.warmupSteps}; 0: none)
  --clip-grad G        each step's gradient scaled down to global norm G (default ${DEFAULT_GUARDS.clipGradientNorm})
  --weight-decay W     decoupled weight decay of the kernels (default ${DEFAULT_GUARDS.weightDecay}; 0: none)
  --augmentation A     ${AUGMENTATIONS.join(' | ')} (default: xray for grayscale, photo for colour)
  --aggregation RULE   ${AGGREGATION_RULES.join(' | ')} (default ${RECIPE.aggregation}; with DP ${DP_RECIPE.aggregation})   --server-lr X (default 1)
  --momentum B         FedAvgM's momentum, FedAdam's β1 (default ${RECIPE.momentum}; with DP ${DP_RECIPE.momentum})
  --dp-epsilon E       DP-SGD with this ε budget per hospital, δ = 1e-5 (default: off), with the DP recipe
  --dp-noise S         noise multiplier, or 'calibrated' (default): each hospital's σ spends its budget over the rounds
  --dp-clip C          per-example clipping norm (default ${DP_RECIPE['dp-clip']})
  --training-workers W worker threads per node process, each batch split among them (tcp; default:
                       this machine's cores / hospitals, at least 1)
  --select C           federated recipe selection: 'default' (the learning rate, 3× and ⅓ of it) or
                       LR[:EPOCHS[:WIDTH]],... (WIDTH: the model's width factor, e.g. 1e-3,1e-3::0.5);
                       candidates train side by side, the worse half dropped by pooled
                       validation every R model rounds (--rung-rounds R, default 2); not with DP
  --slices S           sliced aggregation: each masked vector in S slices, each summed and unmasked
                       only by its aggregators; 0: all-to-all (default: 64 slices from 5 hospitals,
                       all-to-all below)   --per-slice K (default 2)
  --patience P         stop after P eval rounds without a better pooled validation AUC (default 0: run all rounds)
  --dropout P          fraction of hospitals offline in each round (default 0)
  --kill-at K          hospital 1 crashes at the start of round K and comes back two rounds later,
                       catching up from another member's ledger (default: never)
  --malicious          the last hospital sends garbage and equivocates on its masked input (memory)
  --latency MS         network delay per message (memory; default 0, plus up to 20 ms jitter)
  --bandwidth MBPS     link speed for masked vectors and states (memory; default: unlimited)
  --seed N             the data split, the initial model and the faults; with --transport memory
                       and over tcp alike, the same seed gives the same figures (default 1)
  --baselines B        all: centralised and each hospital alone; centralised: only that (half the
                       time, what bench:learning needs); none (default all)   --no-baselines: none
  --init PATH          start from these weights (a weights.bin or a folder 'medmesh export' wrote, of
                       the same model) instead of the seed's: the federation and the baselines alike
  --out DIR            report folder (default reports/simnet-<seed>)
  --repeat K           run K seeds (--seed, --seed + 1, …), each in its own folder under --out, and report
                       the mean and spread of the final figures
  --compare A B        whether two reports (folders) agree round by round, and where they first differ
                       (exit 0 if they agree, 1 if not)

Exit codes: 0 the run's ledgers agree (or --compare: the reports agree), 1 they do not, 64 bad usage.`

/** One run of the simulator, as the flags describe it. */
export interface SimnetOptions {
  /** the command as given, for the report's fingerprint */
  args: string[]
  n: number
  rounds: number
  seed: number
  /** the model, or null for the default at the data's size (defaultModelFor) */
  modelId: ModelId | null
  transport: typeof TRANSPORTS[number]
  dataset: string | undefined
  size: number | undefined
  channels: number | undefined
  partition: typeof PARTITIONS[number]
  alpha: number
  /** every hospital's recipe (the manifest's params.training) and the learning rate over the rounds */
  training: TrainingParams
  schedule: LrSchedule
  aggregation: Pick<AggregationParams, 'rule' | 'serverLr' | 'beta1'>
  dp: { epsilon: number, noise: number, clip: number } | null
  slicing: SlicingParams | null
  /** federated recipe selection (the manifest's params.selection), or null: the one recipe */
  selection: SelectionParams | null
  trainingWorkers: number
  patience: number
  dropout: number
  killAt: number | null
  malicious: boolean
  latencyMs: number
  /** bytes per simulated millisecond */
  bandwidthBytesPerMs: number | undefined
  /** which baselines train beside the federation (baselines.ts) */
  baselines: 'all' | 'centralised' | 'none'
  /** initial weights from this file (a weights.bin or an export folder) instead of the seed, for the federation and the baselines alike */
  init: string | null
  outDir: string
}

export type SimnetCommand =
  | { kind: 'compare', a: string, b: string }
  | { kind: 'repeat', times: number, seed: number, outDir: string }
  | { kind: 'run', options: SimnetOptions }

const FLAGS = {
  nodes: { type: 'string', default: '5' }, rounds: { type: 'string', default: '10' }, dataset: { type: 'string' }, partition: { type: 'string', default: 'dirichlet' },
  alpha: { type: 'string', default: '1.0' }, model: { type: 'string' }, epochs: { type: 'string' }, 'batch-size': { type: 'string' },
  'dp-epsilon': { type: 'string' }, 'dp-noise': { type: 'string' }, 'dp-clip': { type: 'string' }, dropout: { type: 'string', default: '0' }, seed: { type: 'string', default: '1' },
  'no-baselines': { type: 'boolean', default: false }, baselines: { type: 'string', default: 'all' }, init: { type: 'string' }, 'training-workers': { type: 'string' }, out: { type: 'string' }, 'kill-at': { type: 'string' }, malicious: { type: 'boolean', default: false },
  latency: { type: 'string', default: '0' }, bandwidth: { type: 'string' }, transport: { type: 'string', default: 'tcp' },
  size: { type: 'string' }, channels: { type: 'string' }, 'lr-schedule': { type: 'string', default: 'constant' },
  'learning-rate': { type: 'string' }, 'class-weighting': { type: 'string', default: 'balanced' }, 'prior-correction': { type: 'string' }, 'min-steps': { type: 'string' }, aggregation: { type: 'string' },
  'warmup-steps': { type: 'string', default: String(DEFAULT_GUARDS.warmupSteps) }, 'clip-grad': { type: 'string', default: String(DEFAULT_GUARDS.clipGradientNorm) },
  'weight-decay': { type: 'string', default: String(DEFAULT_GUARDS.weightDecay) }, augmentation: { type: 'string' },
  'server-lr': { type: 'string', default: '1' }, patience: { type: 'string', default: '0' }, momentum: { type: 'string' },
  compare: { type: 'boolean', default: false }, repeat: { type: 'string' }, slices: { type: 'string' }, 'per-slice': { type: 'string' },
  select: { type: 'string' }, 'rung-rounds': { type: 'string' }
} as const

/** the flags parsed; an unknown flag, a missing value: a UsageError */
const parse = (args: string[]) => parseFlags({ args, strict: true, options: FLAGS, allowPositionals: true })
type Values = ReturnType<typeof parse>['values']

/** `xs` includes `v`: v is one of the values of the enum xs. */
const oneOf = <T extends string>(xs: readonly T[], v: string | undefined): v is T => (xs as readonly string[]).includes(v as string)
/** 'a, b or c' */
const list = (xs: readonly string[]): string => xs.length < 2 ? xs.join('') : `${xs.slice(0, -1).join(', ')} or ${xs[xs.length - 1]}`
const wholeIn = (x: number, lo: number, hi: number): boolean => Number.isInteger(x) && x >= lo && x <= hi
function check (ok: boolean, message: string): void {
  if (!ok) throw new UsageError(message)
}

/** The command the flags ask for: a comparison of two reports, K runs over seeds, or one run. */
export function parseSimnetArgs (args: string[]): SimnetCommand {
  const { values, positionals } = parse(args)
  if (values.compare) {
    check(positionals.length === 2, '--compare takes two report folders: medmesh simnet --compare A B')
    return { kind: 'compare', a: positionals[0], b: positionals[1] }
  }
  check(positionals.length === 0, `unexpected argument '${positionals[0]}'`)
  const options = runOptions(args, values)
  if (values.repeat === undefined) return { kind: 'run', options }
  const times = Number(values.repeat)
  check(wholeIn(times, 2, 100), '--repeat must be a whole number in [2, 100]')
  return { kind: 'repeat', times, seed: options.seed, outDir: values.out ?? join('reports', `simnet-repeat-${values.seed}`) }
}

function runOptions (args: string[], values: Values): SimnetOptions {
  const n = Number(values.nodes); const rounds = Number(values.rounds); const seed = Number(values.seed)
  check(wholeIn(n, 2, 64), '--nodes must be an integer in [2, 64]')
  check(wholeIn(rounds, 1, Infinity), '--rounds must be a positive integer')
  check(wholeIn(seed, 0, 2 ** 31 - 1), '--seed must be a whole number in [0, 2^31 - 1]')
  check(values.model === undefined || oneOf(MODEL_IDS, values.model), `--model must be one of ${MODEL_IDS.join(', ')}`)
  check(oneOf(TRANSPORTS, values.transport), `--transport must be ${list(TRANSPORTS)}`)
  const transport = values.transport as SimnetOptions['transport']
  // the node processes share this machine's cores: by default each trains on its share of them
  const trainingWorkers = values['training-workers'] === undefined ? Math.max(1, Math.floor(availableParallelism() / n)) : Number(values['training-workers'])
  check(wholeIn(trainingWorkers, 1, 256), '--training-workers must be a whole number in [1, 256]')
  const patience = Number(values.patience)
  check(oneOf(BASELINES, values.baselines), `--baselines must be ${list(BASELINES)}`)
  check(wholeIn(patience, 0, Infinity), '--patience must be a whole number')
  return {
    args, n, rounds, seed, modelId: (values.model ?? null) as ModelId | null, transport, trainingWorkers, patience,
    ...dataOptions(values), ...recipeOptions(values, rounds), slicing: slicingOf(values.slices, values['per-slice'], n), selection: selectionOf(values, rounds),
    ...faultOptions(values, rounds, transport),
    baselines: values['no-baselines'] ? 'none' : values.baselines as SimnetOptions['baselines'], init: values.init ?? null, outDir: values.out ?? join('reports', `simnet-${seed}`)
  }
}

function dataOptions (values: Values): Pick<SimnetOptions, 'dataset' | 'size' | 'channels' | 'partition' | 'alpha'> {
  const size = values.size === undefined ? undefined : Number(values.size)
  const channels = values.channels === undefined ? undefined : Number(values.channels)
  check(size === undefined || wholeIn(size, 8, 512), '--size must be an integer in [8, 512]')
  check(channels === undefined || channels === 1 || channels === 3, '--channels must be 1 or 3')
  check(oneOf(PARTITIONS, values.partition), `--partition must be ${list(PARTITIONS)}`)
  const alpha = Number(values.alpha)
  check(alpha > 0 && Number.isFinite(alpha), '--alpha must be a positive number')
  return { dataset: values.dataset, size, channels, partition: values.partition as SimnetOptions['partition'], alpha }
}

/** The local recipe, the server's rule and DP-SGD: each setting given, else the recipe's (the one for DP-SGD when --dp-epsilon is given). */
function recipeOptions (values: Values, rounds: number): Pick<SimnetOptions, 'training' | 'schedule' | 'aggregation' | 'dp'> {
  const recipe = values['dp-epsilon'] === undefined ? RECIPE : DP_RECIPE
  const setting = (k: keyof typeof RECIPE): string => values[k] ?? recipe[k]
  const epochs = Number(setting('epochs')); const batchSize = Number(setting('batch-size')); const learningRate = Number(setting('learning-rate'))
  const minSteps = Number(setting('min-steps'))
  check(wholeIn(minSteps, 0, 1_000_000), '--min-steps must be a whole number (0: none)')
  const schedule = values['lr-schedule']; const classWeighting = values['class-weighting']; const priorCorrection = setting('prior-correction')
  check(oneOf(LR_SCHEDULES, schedule), `--lr-schedule must be ${list(LR_SCHEDULES)}`)
  check(learningRate > 0 && learningRate < 10, '--learning-rate must be a number in (0, 10)')
  check(oneOf(CLASS_WEIGHTINGS, classWeighting), `--class-weighting must be ${list(CLASS_WEIGHTINGS)}`)
  check(oneOf(PRIOR_CORRECTIONS, priorCorrection), `--prior-correction must be ${list(PRIOR_CORRECTIONS)}`)
  check(epochs > 0 && Number.isFinite(epochs) && wholeIn(batchSize, 1, Infinity), '--epochs must be positive and --batch-size a positive integer')
  const aggregation = { rule: setting('aggregation') as AggregationParams['rule'], serverLr: Number(values['server-lr']), beta1: Number(setting('momentum')) }
  check(oneOf(AGGREGATION_RULES, aggregation.rule), `--aggregation must be one of ${AGGREGATION_RULES.join(', ')}`)
  check(aggregation.serverLr > 0 && aggregation.serverLr <= 100 && aggregation.beta1 >= 0 && aggregation.beta1 < 1, '--server-lr must be in (0, 100] and --momentum in [0, 1)')
  const noise = setting('dp-noise') === 'calibrated' ? 0 : Number(setting('dp-noise')); const clip = Number(setting('dp-clip'))
  check(noise >= 0 && clip > 0, '--dp-noise must be a number >= 0 or calibrated, --dp-clip a positive number')
  const epsilon = values['dp-epsilon'] === undefined ? null : Number(values['dp-epsilon'])
  check(epsilon === null || (epsilon > 0 && Number.isFinite(epsilon)), '--dp-epsilon must be a positive number')
  const s = schedule as TrainingParams['schedule']
  const warmupSteps = Number(values['warmup-steps']); const clipGradientNorm = Number(values['clip-grad']); const weightDecay = Number(values['weight-decay'])
  check(wholeIn(warmupSteps, 0, 1_000_000) && clipGradientNorm > 0 && Number.isFinite(clipGradientNorm) && weightDecay >= 0 && weightDecay <= 1, '--warmup-steps must be a whole number, --clip-grad a positive number, --weight-decay in [0, 1]')
  check(values.augmentation === undefined || oneOf(AUGMENTATIONS, values.augmentation), `--augmentation must be ${list(AUGMENTATIONS)}`)
  return {
    training: {
      schedule: s, rounds, epochs, batchSize, learningRate, classWeighting: classWeighting as TrainingParams['classWeighting'], ...(priorCorrection === 'none' ? {} : { priorCorrection: priorCorrection as 'pooled' }),
      warmupSteps, clipGradientNorm, weightDecay, ...(minSteps > 0 ? { minSteps } : {}), ...(values.augmentation === undefined ? {} : { augmentation: values.augmentation as TrainingParams['augmentation'] & string })
    },
    // the learning rate over the rounds, for the baselines as for the hospitals
    schedule: s === 'constant' ? { kind: 'constant' } : { kind: s, rounds },
    aggregation,
    dp: epsilon === null ? null : { epsilon, noise, clip }
  }
}

/**
 * Sliced aggregation as `medmesh manifest create` takes it: --per-slice only with --slices (whose
 * 0 is all-to-all), 2 aggregators per slice unless given; absent, the default for n members.
 */
export function slicingOf (slices: string | undefined, perSlice: string | undefined, n: number): SlicingParams | null {
  const asked = slicingFromFlags(slices === undefined ? undefined : Number(slices), perSlice === undefined ? undefined : Number(perSlice))
  if ('error' in asked) throw new UsageError(asked.error)
  if (asked.slicing === undefined) return defaultSlicing(n)
  const s = asked.slicing
  if (s === null) return null
  check(wholeIn(s.slices, 1, MAX_SLICES), `--slices must be a whole number in [1, ${MAX_SLICES}]`)
  check(wholeIn(s.perSlice, 2, n), '--per-slice must be a whole number in [2, nodes]')
  return s
}

function faultOptions (values: Values, rounds: number, transport: SimnetOptions['transport']): Pick<SimnetOptions, 'dropout' | 'killAt' | 'malicious' | 'latencyMs' | 'bandwidthBytesPerMs'> {
  const dropout = Number(values.dropout)
  check(dropout >= 0 && dropout < 1, '--dropout must be in [0, 1)')
  const killAt = values['kill-at'] === undefined ? null : Number(values['kill-at'])
  check(killAt === null || wholeIn(killAt, 1, rounds), '--kill-at must be a round number in [1, rounds]')
  const latencyMs = Number(values.latency)
  const bandwidthBytesPerMs = values.bandwidth === undefined ? undefined : Number(values.bandwidth) * 1e6 / 8 / 1000 // Mbit/s -> bytes per ms
  check(latencyMs >= 0 && Number.isFinite(latencyMs) && (bandwidthBytesPerMs === undefined || (bandwidthBytesPerMs > 0 && Number.isFinite(bandwidthBytesPerMs))), '--latency and --bandwidth must be positive numbers')
  const malicious = values.malicious
  check(transport === 'memory' || !(malicious || latencyMs > 0 || bandwidthBytesPerMs !== undefined), '--malicious, --latency and --bandwidth need control of the wire: use them with --transport memory')
  return { dropout, killAt, malicious, latencyMs, bandwidthBytesPerMs }
}

/** Recipe selection as `medmesh manifest create` takes it (--select, --rung-rounds), around the run's own recipe. */
function selectionOf (values: Values, rounds: number): SelectionParams | null {
  const recipe = recipeOptions(values, rounds).training
  const asked = selectionFromFlags(values.select, values['rung-rounds'] === undefined ? undefined : Number(values['rung-rounds']), { learningRate: recipe.learningRate, epochs: recipe.epochs })
  if ('error' in asked) throw new UsageError(asked.error)
  if (asked.selection === null) return null
  // the widths' sizes are filled in once the model is built (simnet.ts)
  const problem = selectionProblem(asked.selection, { rounds, weightDecay: recipe.weightDecay, dp: values['dp-epsilon'] !== undefined, unsized: true })
  check(problem === null, (problem ?? '').replace('params.training.rounds', '--rounds'))
  // as validateManifest refuses params.model.init with other widths (over tcp; the in-memory network has no such field)
  check(values.init === undefined || asked.selection.candidates.every(c => c.width === undefined), '--init gives weights of the model\'s own width: --select cannot try other widths with it')
  return asked.selection
}
