/**
 * medmesh simnet: a whole consortium on one machine, on real medical images, through the same
 * protocol and training code as production: real secure aggregation, certificates and DP-SGD.
 *
 * Two transports: `tcp` (the default) runs every hospital as a real medmesh node — its own
 * process, libp2p over TCP on 127.0.0.1 (scripts/simnet/processes.ts); `memory` drives the peers
 * in one process over the in-memory network in simulated time, for large N and for faults that
 * need control of the wire (scripts/simnet/memory.ts). Alongside the federation it trains the
 * baselines of the same run — centralised on the union of the data, and each hospital alone —
 * and writes a report.
 */
import { parseArgs } from 'node:util'
import { execFileSync } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { compareReports, describeComparison, readReport, type Fingerprint } from './compare.ts'
import { describeFault } from './faults.ts'
import { statSync, existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { selectBackend, describeBackend } from '../../src/training/backend.ts'
import { describeMaskKernel, installMaskKernel } from '../../src/node/mask-kernel.ts'
import { loadMedMnist, BUNDLED_PNEUMONIAMNIST } from '../../src/training/data/npz.ts'
import { loadImageFolder } from '../../src/training/data/images.ts'
import { subset, classCounts, type ImageDataset } from '../../src/training/data/dataset.ts'
import { holdOut, partitionDirichlet, partitionIid } from '../../src/training/data/partition.ts'
import { buildModel, flattenWeights, setFlatWeights, MODEL_IDS, type ModelId } from '../../src/training/models.ts'
import { LocalTrainer } from '../../src/training/trainer.ts'
import { normalisation, pixelStats, statsVector } from '../../src/training/data/stats.ts'
import { resizeDataset } from '../../src/training/data/resize.ts'
import { learningRateAt, type LrSchedule } from '../../src/training/schedule.ts'
import { AGGREGATION_RULES, defaultSlicing, type AggregationRule, type TrainingParams } from '../../src/protocol/manifest.ts'
import { formatMetrics, rocCurve, calibration, type ClinicalMetrics } from '../../src/training/metrics.ts'
import { lineChart, barChart, rocChart, reliabilityChart, confusionTable, writeReport } from './report.ts'
import { PHASES, chosenRound, hospitalData, pooledData, type FederationResult, type SimData, type SimSetup } from './federation.ts'
import { runMemoryFederation } from './memory.ts'
import { runProcessFederation } from './processes.ts'

/**
 * The recipes the simulator uses unless told otherwise, found by measurement (README, "Learning
 * recipes"): one without DP, and one for DP-SGD, whose noise is calibrated at each hospital to
 * spend its ε budget over the planned rounds.
 */
export const RECIPE = { epochs: '2', 'batch-size': '32', 'learning-rate': '0.001', aggregation: 'fedavgm', momentum: '0.7', 'dp-noise': 'calibrated', 'dp-clip': '1.0' }
export const DP_RECIPE: typeof RECIPE = { epochs: '2', 'batch-size': '128', 'learning-rate': '0.005', aggregation: 'fedavg', momentum: '0.9', 'dp-noise': 'calibrated', 'dp-clip': '1.0' }

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
  --model ID           ${MODEL_IDS.join(' | ')} (default medmesh/cnn-small)
  --epochs E           local epochs per round (default ${RECIPE.epochs}; with DP ${DP_RECIPE.epochs})   --batch-size B (default ${RECIPE['batch-size']}; with DP ${DP_RECIPE['batch-size']})
  --learning-rate LR   local Adam learning rate (default ${RECIPE['learning-rate']}; with DP ${DP_RECIPE['learning-rate']})   --class-weighting balanced|none (default balanced)
  --prior-correction P none | pooled: each hospital's loss corrected for its class mix against the
                       pooled one (logit adjustment; default none)
  --lr-schedule S      constant | cosine | step, over the rounds (default constant)
  --aggregation RULE   fedavg | fedavgm | fedadam (default ${RECIPE.aggregation}; with DP ${DP_RECIPE.aggregation})   --server-lr X (default 1)
  --momentum B         FedAvgM's momentum, FedAdam's β1 (default ${RECIPE.momentum}; with DP ${DP_RECIPE.momentum})
  --dp-epsilon E       DP-SGD with this ε budget per hospital, δ = 1e-5 (default: off), with the DP recipe
  --dp-noise S         noise multiplier, or 'calibrated' (default): each hospital's σ spends its budget over the rounds
  --dp-clip C          per-example clipping norm (default ${DP_RECIPE['dp-clip']})
  --training-workers W worker threads per node process, each batch split among them (tcp; default:
                       this machine's cores / hospitals, at least 1)
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
  --no-baselines       skip the centralised and local-only baselines
  --out DIR            report folder (default reports/simnet-<seed>)
  --repeat K           run K seeds (--seed, --seed + 1, …), each in its own folder under --out, and report
                       the mean and spread of the final figures
  --compare A B        whether two reports (folders) agree round by round, and where they first differ
                       (exit 0 if they agree, 1 if not)`

export async function runSimnet (args: string[], out: (s: string) => void = s => process.stdout.write(s + '\n')): Promise<number> {
  const { values, positionals } = parseArgs({
    args, strict: true,
    options: {
      nodes: { type: 'string', default: '5' }, rounds: { type: 'string', default: '10' }, dataset: { type: 'string' }, partition: { type: 'string', default: 'dirichlet' },
      alpha: { type: 'string', default: '1.0' }, model: { type: 'string', default: 'medmesh/cnn-small' }, epochs: { type: 'string' }, 'batch-size': { type: 'string' },
      'dp-epsilon': { type: 'string' }, 'dp-noise': { type: 'string' }, 'dp-clip': { type: 'string' }, dropout: { type: 'string', default: '0' }, seed: { type: 'string', default: '1' },
      'no-baselines': { type: 'boolean', default: false }, 'training-workers': { type: 'string' }, out: { type: 'string' }, 'kill-at': { type: 'string' }, malicious: { type: 'boolean', default: false },
      latency: { type: 'string', default: '0' }, bandwidth: { type: 'string' }, transport: { type: 'string', default: 'tcp' },
      size: { type: 'string' }, channels: { type: 'string' }, 'lr-schedule': { type: 'string', default: 'constant' },
      'learning-rate': { type: 'string' }, 'class-weighting': { type: 'string', default: 'balanced' }, 'prior-correction': { type: 'string', default: 'none' }, aggregation: { type: 'string' },
      'server-lr': { type: 'string', default: '1' }, patience: { type: 'string', default: '0' }, momentum: { type: 'string' },
      compare: { type: 'boolean', default: false }, repeat: { type: 'string' }, slices: { type: 'string' }, 'per-slice': { type: 'string' }
    },
    allowPositionals: true
  })
  if (values.compare === true) {
    if (positionals.length !== 2) throw new Error('--compare takes two report folders: medmesh simnet --compare A B')
    const c = compareReports(readReport(positionals[0]), readReport(positionals[1]))
    for (const line of describeComparison(c, positionals[0], positionals[1])) out(line)
    return c.agree ? 0 : 1
  }
  if (positionals.length > 0) throw new Error(`unexpected argument '${positionals[0]}'`)
  if (values.repeat !== undefined) {
    const k = Number(values.repeat)
    if (!(Number.isInteger(k) && k >= 2 && k <= 100)) throw new Error('--repeat must be a whole number in [2, 100]')
    return await repeatRuns(args, k, Number(values.seed), values.out ?? join('reports', `simnet-repeat-${values.seed}`), out)
  }
  // the recipe's settings, unless given: the one for DP-SGD when --dp-epsilon is
  const recipe = values['dp-epsilon'] === undefined ? RECIPE : DP_RECIPE
  const setting = (k: keyof typeof RECIPE): string => values[k] ?? recipe[k]
  const n = Number(values.nodes); const rounds = Number(values.rounds); const epochs = Number(setting('epochs')); const batchSize = Number(setting('batch-size'))
  const seed = Number(values.seed); const alpha = Number(values.alpha); const dropout = Number(values.dropout)
  if (!(n >= 2 && n <= 64 && Number.isInteger(n))) throw new Error('--nodes must be an integer in [2, 64]')
  if (!(rounds >= 1 && Number.isInteger(rounds))) throw new Error('--rounds must be a positive integer')
  if (!(dropout >= 0 && dropout < 1)) throw new Error('--dropout must be in [0, 1)')
  if (!(MODEL_IDS as readonly string[]).includes(values.model!)) throw new Error(`--model must be one of ${MODEL_IDS.join(', ')}`)
  const modelId = values.model as ModelId
  const dpEpsilon = values['dp-epsilon'] === undefined ? null : Number(values['dp-epsilon'])
  const outDir = values.out ?? join('reports', `simnet-${seed}`)
  const killAt = values['kill-at'] === undefined ? null : Number(values['kill-at'])
  if (killAt !== null && !(Number.isInteger(killAt) && killAt >= 1 && killAt <= rounds)) throw new Error('--kill-at must be a round number in [1, rounds]')
  const latency = Number(values.latency)
  const bandwidth = values.bandwidth === undefined ? undefined : Number(values.bandwidth) * 1e6 / 8 / 1000 // Mbit/s -> bytes per ms
  if (!(latency >= 0) || (bandwidth !== undefined && !(bandwidth > 0))) throw new Error('--latency and --bandwidth must be positive numbers')
  const transport = values.transport!
  const lrSchedule = values['lr-schedule'] as 'constant' | 'cosine' | 'step'
  if (!['constant', 'cosine', 'step'].includes(lrSchedule)) throw new Error('--lr-schedule must be constant, cosine or step')
  const learningRate = Number(setting('learning-rate')); const classWeighting = values['class-weighting'] as 'balanced' | 'none'
  if (!(learningRate > 0 && learningRate < 10)) throw new Error('--learning-rate must be a number in (0, 10)')
  if (!['balanced', 'none'].includes(classWeighting)) throw new Error('--class-weighting must be balanced or none')
  const priorCorrection = values['prior-correction'] as 'none' | 'pooled'
  if (!['none', 'pooled'].includes(priorCorrection)) throw new Error('--prior-correction must be none or pooled')
  const aggregation = { rule: setting('aggregation') as AggregationRule, serverLr: Number(values['server-lr']), beta1: Number(setting('momentum')) }
  const dpNoise = setting('dp-noise') === 'calibrated' ? 0 : Number(setting('dp-noise')); const dpClip = Number(setting('dp-clip'))
  if (!(dpNoise >= 0) || !(dpClip > 0)) throw new Error('--dp-noise must be a number >= 0 or calibrated, --dp-clip a positive number')
  if (!(epochs > 0) || !(Number.isInteger(batchSize) && batchSize >= 1)) throw new Error('--epochs must be positive and --batch-size a positive integer')
  if (!(AGGREGATION_RULES as readonly string[]).includes(aggregation.rule)) throw new Error(`--aggregation must be one of ${AGGREGATION_RULES.join(', ')}`)
  if (!(aggregation.serverLr > 0 && aggregation.serverLr <= 100) || !(aggregation.beta1 >= 0 && aggregation.beta1 < 1)) throw new Error('--server-lr must be in (0, 100] and --momentum in [0, 1)')
  // the node processes share this machine's cores: by default each trains on its share of them
  const trainingWorkers = values['training-workers'] === undefined ? Math.max(1, Math.floor(availableParallelism() / n)) : Number(values['training-workers'])
  if (!(Number.isInteger(trainingWorkers) && trainingWorkers >= 1 && trainingWorkers <= 256)) throw new Error('--training-workers must be a whole number in [1, 256]')
  const patience = Number(values.patience)
  if (values.slices === undefined && values['per-slice'] !== undefined) throw new Error('--per-slice goes with --slices (sliced aggregation)')
  // --slices 0: all-to-all; absent: the default for a consortium of n
  const slicing = values.slices === undefined ? defaultSlicing(n) : values.slices === '0' ? null : { slices: Number(values.slices), perSlice: Number(values['per-slice'] ?? 2) }
  if (slicing !== null && !(Number.isInteger(slicing.slices) && slicing.slices >= 1 && slicing.slices <= 256)) throw new Error('--slices must be a whole number in [1, 256]')
  if (slicing !== null && !(Number.isInteger(slicing.perSlice) && slicing.perSlice >= 2 && slicing.perSlice <= n)) throw new Error('--per-slice must be a whole number in [2, nodes]')
  if (!(Number.isInteger(patience) && patience >= 0)) throw new Error('--patience must be a whole number')
  const training: TrainingParams = { schedule: lrSchedule, rounds, epochs, batchSize, learningRate, classWeighting, ...(priorCorrection === 'none' ? {} : { priorCorrection }) }
  // the learning rate over the rounds, for the baselines as for the hospitals
  const schedule: LrSchedule = lrSchedule === 'constant' ? { kind: 'constant' } : { kind: lrSchedule, rounds }
  if (transport !== 'tcp' && transport !== 'memory') throw new Error('--transport must be tcp or memory')
  const seedBytes = (k: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (seed * 131 + k * 17 + i) & 0xff)

  const backend = await selectBackend('auto')
  out(describeBackend(backend))
  out(describeMaskKernel(installMaskKernel()))
  const size = values.size === undefined ? undefined : Number(values.size)
  const channels = values.channels === undefined ? undefined : Number(values.channels)
  if (size !== undefined && !(Number.isInteger(size) && size >= 8 && size <= 512)) throw new Error('--size must be an integer in [8, 512]')
  if (channels !== undefined && channels !== 1 && channels !== 3) throw new Error('--channels must be 1 or 3')
  const data = loadSimData(values.dataset ?? BUNDLED_PNEUMONIAMNIST, seedBytes(2), { size, channels })
  const parts = values.partition === 'iid' ? partitionIid(data.train.labels.length, n, seedBytes(1)) : partitionDirichlet(data.train.labels, n, alpha, seedBytes(1))
  out(`${n} hospitals, ${values.partition === 'iid' ? 'IID' : `Dirichlet(α=${alpha})`} split of ${data.train.labels.length} training images: ${parts.map(p => `${p.length} (${classCounts(subset(data.train, p)).join('/')})`).join(', ')}`)

  const spec = { id: modelId, height: data.train.height, width: data.train.width, channels: data.train.channels, classes: data.train.classes.length, seed }
  out(`${data.train.labels.length + (data.val?.labels.length ?? 0) + data.test.labels.length} images of ${data.train.height}×${data.train.width}×${data.train.channels}, ${data.train.classes.length} classes: ${data.train.classes.join(', ')}`)
  const evalModel = buildModel(spec)
  const evaluator = new LocalTrainer(evalModel)
  const setup: SimSetup = {
    n, rounds, seed, modelId, data, parts, training, aggregation, patience, slicing, trainingWorkers, initialWeights: flattenWeights(evalModel), modelBytes: 4 * flattenWeights(evalModel).length,
    dp: dpEpsilon === null ? null : { epsilon: dpEpsilon, noise: dpNoise, clip: dpClip },
    dropout, killAt, malicious: values.malicious === true, latencyMs: latency, bandwidthBytesPerMs: bandwidth, outDir, seedBytes, out,
    evaluate: (weights, stats) => {
      setFlatWeights(evalModel, weights)
      return evaluator.evaluate(data.test, stats === null ? undefined : normalisation(stats, data.train.channels))
    }
  }
  const fed: FederationResult = transport === 'tcp' ? await runProcessFederation(setup) : await runMemoryFederation(setup)
  const { records, bytesPerNode } = fed
  const faults = records.flatMap(r => r.faults)
  const faultLine = faults.length === 0 ? 'faults injected: none' : `faults injected: ${faults.map(f => `round ${f.round} ${describeFault(f)}`).join('; ')}`
  out(faultLine)
  out(`federation: ${fed.longest} certificates; ${fed.consistent ? 'no conflicting certificates on any peer' : 'CONFLICTING CERTIFICATES'}; ${fed.atHead} of ${n} peers at the head; ${fed.seconds.toFixed(0)} s`)

  // the consortium's model: on the test split, and on each hospital's own held-out part
  const k = data.train.classes.length
  const curves: Array<{ name: string, fpr: number[], tpr: number[] }> = []
  const hospitalView: Array<{ hospital: number, federated: ClinicalMetrics | null, alone: ClinicalMetrics | null }> = Array.from({ length: n }, (_, i) => ({ hospital: i, federated: null, alone: null }))
  let calibrated: ReturnType<typeof calibration> | null = null
  if (fed.chosen !== null) {
    setFlatWeights(evalModel, fed.chosen.weights)
    const fnorm = fed.chosen.stats === null ? undefined : normalisation(fed.chosen.stats, data.train.channels)
    const probs = evaluator.predict(data.test, fnorm)
    curves.push({ name: 'federated (medmesh)', ...roc(probs, data.test.labels, k) })
    calibrated = calibration(probs, data.test.labels, k)
    for (let i = 0; i < n; i++) hospitalView[i].federated = evaluator.evaluate(hospitalData(setup, i).val, fnorm)
  }

  // baselines of the same run, on the same data and chosen the same way: each trains for the same
  // rounds with the same recipe and keeps the round with the best AUC on its validation data
  const central: Array<ClinicalMetrics | null> = []
  const local: Array<Array<ClinicalMetrics | null>> = []
  let centralChosen = -1
  const localChosen: number[] = []
  if (values['no-baselines'] !== true) {
    // with DP, the baselines show what the same data gives without it: trained without DP, on the
    // recipe without DP (DP's larger learning rate needs the clipping to stay stable)
    const base = dpEpsilon === null ? { epochs, batchSize, learningRate } : { epochs: Number(RECIPE.epochs), batchSize: Number(RECIPE['batch-size']), learningRate: Number(RECIPE['learning-rate']) }
    if (dpEpsilon !== null) out(`baselines without DP: ${base.epochs} epoch(s) per round, batch ${base.batchSize}, Adam at ${base.learningRate}`)
    const alone = (own: { train: ImageDataset, val: ImageDataset }, seedBase: number) => {
      const norm = normalisation(statsVector(pixelStats(own.train)), own.train.channels)
      const model = buildModel(spec); const trainer = new LocalTrainer(model)
      const series: ClinicalMetrics[] = []
      let best = -1; let bestAuc = -Infinity; let bestWeights = flattenWeights(model)
      for (let r = 1; r <= rounds; r++) {
        trainer.train(own.train, { epochs: base.epochs, batchSize: base.batchSize, learningRate: learningRateAt(base.learningRate, schedule, r), seed: seedBytes(seedBase + r), augment: true, classWeighting, normalisation: norm })
        series.push(trainer.evaluate(data.test, norm))
        const auc = trainer.evaluate(own.val, norm).auc
        if (auc > bestAuc) { bestAuc = auc; best = r - 1; bestWeights = flattenWeights(model) }
      }
      // a validation part too small to judge by (one class only: AUC undefined) keeps the last round
      if (best < 0) { best = rounds - 1; bestWeights = flattenWeights(model) }
      setFlatWeights(model, bestWeights)
      const result = { series, best, probs: trainer.predict(data.test, norm), onOwnVal: trainer.evaluate(own.val, norm) }
      trainer.dispose(); model.dispose()
      return result
    }
    const c = alone(pooledData(setup), 200)
    central.push(...c.series); centralChosen = c.best
    out(`centralised baseline (all hospitals' data pooled; round ${c.best + 1} of ${rounds}, the best by validation AUC): ${formatMetrics(c.series[c.best])}`)
    curves.push({ name: 'centralised', ...roc(c.probs, data.test.labels, k) })
    for (let i = 0; i < n; i++) {
      // a hospital alone trains on what it trains on in the consortium, and is judged on its own held-out part too
      const l = alone(hospitalData(setup, i), 300 + 10 * i)
      local.push(l.series); localChosen.push(l.best)
      curves.push({ name: `hospital ${i} alone`, ...roc(l.probs, data.test.labels, k) })
      hospitalView[i].alone = l.onOwnVal
      out(`hospital ${i} alone (round ${l.best + 1}): ${formatMetrics(l.series[l.best])}`)
    }
  }

  const fedMetrics = records.map(r => r.metrics)
  // the consortium's model: the round with the best pooled validation AUC
  const chosen = chosenRound(records)
  const finalFed = chosen < 0 ? null : records[chosen].metrics
  const series = (pick: (m: ClinicalMetrics) => number) => [
    { name: 'federated (medmesh)', values: fedMetrics.map(m => m === null ? null : pick(m)) },
    ...(central.length > 0 ? [{ name: 'centralised', values: central.map(m => m === null ? null : pick(m)) }] : []),
    ...local.map((s, i) => ({ name: `hospital ${i} alone`, values: s.map(m => m === null ? null : pick(m)) }))
  ]
  const charts = [
    lineChart('Test ROC-AUC per round', series(m => m.auc), 0.5, 1, 'AUC'),
    lineChart('Test accuracy per round', series(m => m.accuracy), 0.3, 1, 'accuracy'),
    lineChart(`Validation AUC per round (pooled by secure aggregation; chosen: round ${chosen + 1})`, [
      { name: 'consortium validation', values: records.map(r => r.validation?.auc ?? null) },
      { name: 'chosen round', values: records.map((r, i) => i === chosen ? r.validation?.auc ?? null : null) }
    ], 0.5, 1, 'AUC'),
    barChart(`${transport === 'memory' ? 'Simulated time' : 'Time'} per phase (all rounds)`, PHASES, PHASES.map(p => records.reduce((a, r) => a + (r.phaseMs[p] ?? 0), 0) / 1000), 's'),
    barChart('Bytes sent per hospital (whole run)', bytesPerNode.map((_, i) => `hospital ${i}`), bytesPerNode.map(b => b / 1e6), 'MB'),
    barChart('Bytes sent per round and hospital, in model sizes', records.map(r => `round ${r.round}`), records.map(r => r.modelSizes / n), '× model'),
    ...(dpEpsilon !== null ? [barChart('ε spent per hospital', fed.epsilon.map((_, i) => `hospital ${i}`), fed.epsilon, '')] : []),
    ...(curves.length > 0 ? [rocChart(`ROC on the test split${k > 2 ? ' (micro-average over the classes)' : ''}`, curves)] : []),
    ...(finalFed !== null ? [confusionTable(`Confusion matrix of the federated model (round ${chosen + 1}) on the test split`, data.train.classes, finalFed.confusion)] : []),
    ...(calibrated !== null ? [reliabilityChart('Reliability of the federated model on the test split', calibrated.bins, calibrated.ece)] : []),
    ...(hospitalView.some(v => v.alone !== null) ? [barChart('Each hospital\'s view: AUC on its own held-out data, federated model / trained alone',
      hospitalView.flatMap(v => [`hospital ${v.hospital}: federated`, `hospital ${v.hospital}: alone`]), hospitalView.flatMap(v => [v.federated?.auc ?? 0, v.alone?.auc ?? 0]), '')] : [])
  ]
  const fingerprint = runFingerprint(seed, args, backend.name)
  const summary = [
    `run: medmesh ${fingerprint.version}${fingerprint.commit === null ? '' : ` (commit ${fingerprint.commit.slice(0, 12)})`}, Node ${fingerprint.node}, ${fingerprint.cores} cores, seed ${seed}; command: medmesh simnet ${args.join(' ')}`,
    `transport: ${fed.transport}`,
    `${n} hospitals, ${rounds} rounds, model ${modelId}, ${values.partition} partition${values.partition === 'iid' ? '' : ` (α=${alpha})`}, dropout ${dropout}, seed ${seed}, backend ${backend.name}`,
    `recipe: ${epochs} local epoch(s) per round, batch ${batchSize}, Adam at ${learningRate}${lrSchedule === 'constant' ? '' : ` (${lrSchedule} over the rounds)`}, class weighting ${classWeighting}${priorCorrection === 'none' ? '' : `, prior correction ${priorCorrection}`}, ${aggregation.rule}${aggregation.rule === 'fedavg' ? '' : ` (β ${aggregation.beta1})`}${aggregation.serverLr === 1 ? '' : `, server learning rate ${aggregation.serverLr}`}` +
      (dpEpsilon === null ? '' : `; DP-SGD at ε ${dpEpsilon}, δ 1e-5 per hospital, clipping norm ${dpClip}, noise ${dpNoise === 0 ? 'calibrated at each hospital to its budget' : `multiplier ${dpNoise}`}`),
    finalFed !== null ? `federated model (round ${chosen + 1}, the best by pooled validation AUC ${records[chosen].validation?.auc.toFixed(3) ?? 'n/a'}) on the test split: ${formatMetrics(finalFed)}` : 'no certified model round',
    ...(centralChosen >= 0 ? [`centralised (pooled data, round ${centralChosen + 1}, the best by validation AUC) on the test split: ${formatMetrics(central[centralChosen]!)}`] : []),
    faultLine,
    ((short) => short.length === 0 ? `every round certified with all ${n} hospitals` : `rounds without every hospital: ${short.map(r => `${r.round} (${r.participants.length}/${n})`).join(', ')}`)(records.filter(r => r.participants.length < n)),
    `rounds certified: ${records.filter(r => r.participants.length > 0).length} of ${rounds}; no conflicting certificates: ${fed.consistent}; ${fed.atHead} of ${n} peers at the head`,
    transport === 'memory'
      ? `peak memory ${fed.peakRssMB} MB for the whole process (${fed.peakRssPerNodeMB} MB per simulated hospital); ${fed.rejections} rejected inputs logged`
      : `peak memory ${fed.peakRssPerNodeMB} MB for the largest node process (${fed.peakRssMB} MB for all ${n}); ${fed.rejections} rejected inputs logged`,
    ...(calibrated !== null ? [`expected calibration error of the federated model: ${calibrated.ece.toFixed(3)}`] : []),
    ...hospitalView.filter(v => v.federated !== null && v.alone !== null).map(v => `hospital ${v.hospital} on its own held-out data (n=${v.federated!.n}): federated AUC ${v.federated!.auc.toFixed(3)}, alone ${v.alone!.auc.toFixed(3)}`),
    ...(dpEpsilon !== null ? [`DP-SGD: ε budget ${dpEpsilon} per hospital, spent ${fed.epsilon.map(e => e.toFixed(2)).join(', ')}`] : [])
  ]
  const paths = writeReport(outDir, {
    fingerprint,
    config: { nodes: n, rounds, model: modelId, modelBytes: setup.modelBytes, partition: values.partition, alpha, training, aggregation, dpEpsilon, dropout, seed, backend: backend.name, transport },
    partition: parts.map(p => ({ size: p.length, classes: classCounts(subset(data.train, p)) })),
    rounds: records, chosenRound: chosen + 1, final: finalFed, calibration: calibrated, hospitalView, centralised: central, centralisedChosen: centralChosen + 1, local, localChosen: localChosen.map(x => x + 1), bytesPerNode, federatedSeconds: fed.seconds, agree: fed.consistent,
    peakRssMB: fed.peakRssMB, peakRssPerNodeMB: fed.peakRssPerNodeMB, rejections: fed.rejections, transport: fed.transport, epsilon: fed.epsilon
  }, charts, summary)
  out(`report: ${paths.html} and ${paths.json}`)
  evaluator.dispose(); evalModel.dispose()
  return fed.consistent ? 0 : 1
}

/** `--repeat K`: the same command for seeds s, s+1, …, s+K-1, each in its own folder, then the mean and spread of the final figures. */
async function repeatRuns (args: string[], k: number, seed: number, outDir: string, out: (s: string) => void): Promise<number> {
  const skip = new Set(['--repeat', '--seed', '--out'])
  const base = args.filter((a, i) => !skip.has(a) && !skip.has(args[i - 1]) && !a.startsWith('--repeat=') && !a.startsWith('--seed=') && !a.startsWith('--out='))
  const runs: Array<{ seed: number, federated: ClinicalMetrics | null, centralised: ClinicalMetrics | null }> = []
  let worst = 0
  for (let j = 0; j < k; j++) {
    const dir = join(outDir, `seed-${seed + j}`)
    out(`repeat ${j + 1} of ${k}: seed ${seed + j}`)
    worst = Math.max(worst, await runSimnet([...base, '--seed', String(seed + j), '--out', dir], out))
    const r = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { final: ClinicalMetrics | null, centralised: ClinicalMetrics[], centralisedChosen: number }
    runs.push({ seed: seed + j, federated: r.final, centralised: r.centralisedChosen > 0 ? r.centralised[r.centralisedChosen - 1] : null })
  }
  const spread = (xs: number[]): { mean: number, sd: number, min: number, max: number, n: number } => {
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length
    const sd = xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1))
    return { mean, sd, min: Math.min(...xs), max: Math.max(...xs), n: xs.length }
  }
  const figure = (pick: (m: ClinicalMetrics) => number, which: 'federated' | 'centralised') => spread(runs.flatMap(r => r[which] === null || Number.isNaN(pick(r[which]!)) ? [] : [pick(r[which]!)]))
  const summary = {
    seeds: runs.map(r => r.seed),
    federated: { auc: figure(m => m.auc, 'federated'), accuracy: figure(m => m.accuracy, 'federated') },
    centralised: { auc: figure(m => m.auc, 'centralised'), accuracy: figure(m => m.accuracy, 'centralised') },
    // paired by seed: the same split, the same hospitals
    difference: { auc: spread(runs.flatMap(r => r.federated !== null && r.centralised !== null ? [r.federated.auc - r.centralised.auc] : [])) },
    runs
  }
  mkdirSync(outDir, { recursive: true })
  writeFileSync(join(outDir, 'repeat.json'), JSON.stringify(summary, null, 2) + '\n')
  const show = (x: { mean: number, sd: number, min: number, max: number, n: number }): string => x.n === 0 ? 'n/a' : `${x.mean.toFixed(3)} ± ${x.sd.toFixed(3)} (${x.min.toFixed(3)}–${x.max.toFixed(3)}, ${x.n} runs)`
  out(`over seeds ${summary.seeds.join(', ')} (mean ± standard deviation, range):`)
  out(`  federated test AUC ${show(summary.federated.auc)}, ACC ${show(summary.federated.accuracy)}`)
  out(`  centralised test AUC ${show(summary.centralised.auc)}, ACC ${show(summary.centralised.accuracy)}`)
  out(`  federated − centralised AUC, paired by seed: ${show(summary.difference.auc)}`)
  out(`summary: ${join(outDir, 'repeat.json')}`)
  return worst
}

/** How this run was made: what `--compare` reports when two runs differ in it. */
function runFingerprint (seed: number, args: string[], backend: string): Fingerprint {
  const root = fileURLToPath(new URL('../../', import.meta.url))
  const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version
  let commit: string | null = null
  try { commit = execFileSync('git', ['-C', root, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() } catch { /* not a git checkout */ }
  return { seed, command: args, version, commit, backend, node: process.version, cores: availableParallelism() }
}

/**
 * The data set to split among the hospitals, and the test split to judge the model on: a MedMNIST
 * .npz (its official splits), or a folder of images by class — with train/ and test/ sub-folders,
 * or one folder of which a seeded 20% is held out for testing.
 */
export function loadSimData (path: string, seed: Uint8Array, o: { size?: number, channels?: number } = {}): SimData {
  if (!existsSync(path)) throw new Error(`no such data set: ${path}`)
  if (!statSync(path).isDirectory()) {
    const d = loadMedMnist(path)
    if (o.channels !== undefined && o.channels !== d.train.channels) throw new Error(`${path} holds ${d.train.channels}-channel images; --channels applies to image folders`)
    const fit = (x: ImageDataset): ImageDataset => o.size === undefined ? x : resizeDataset(x, o.size)
    return { train: fit(d.train), val: fit(d.val), test: fit(d.test) }
  }
  if (existsSync(join(path, 'train')) && existsSync(join(path, 'test'))) {
    const train = loadImageFolder(join(path, 'train'), o)
    return { train, val: null, test: loadImageFolder(join(path, 'test'), { size: train.height, channels: train.channels }) }
  }
  const all = loadImageFolder(path, o)
  const { kept, held } = holdOut(Array.from({ length: all.labels.length }, (_, i) => i), 0.2, seed)
  return { train: subset(all, kept), val: null, test: subset(all, held) }
}


/** The ROC curve of class 1 (two classes), or micro-averaged over every class (more). */
function roc (probs: Float32Array, labels: Int32Array, k: number): { fpr: number[], tpr: number[] } {
  if (k === 2) return rocCurve(Float32Array.from(labels, (_, i) => probs[2 * i + 1]), Array.from(labels, l => l === 1))
  return rocCurve(probs, Array.from(probs, (_, j) => labels[Math.floor(j / k)] === j % k))
}
