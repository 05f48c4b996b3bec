/**
 * medmesh simnet: a whole consortium on one machine, on real medical images, through the same
 * protocol and training code as production: real secure aggregation, certificates and DP-SGD.
 *
 * Two transports: `tcp` (the default) runs every hospital as a real medmesh node — its own
 * process, libp2p over TCP on 127.0.0.1 (scripts/simnet/processes.ts); `memory` drives the peers
 * in one process over the in-memory network in simulated time, for large N and for faults that
 * need control of the wire (scripts/simnet/memory.ts). Alongside the federation it trains the
 * baselines of the same run — centralised on the union of the data, and each hospital alone
 * (baselines.ts) — and writes a report (report-model.ts, report.ts). The flags are args.ts's.
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { selectBackend, describeBackend } from '../../src/training/backend.ts'
import { describeMaskKernel, installMaskKernel } from '../../src/node/mask-kernel.ts'
import { BUNDLED_PNEUMONIAMNIST } from '../../src/training/data/npz.ts'
import { subset, classCounts } from '../../src/training/data/dataset.ts'
import { flattenWeights, setFlatWeights, type ModelId } from '../../src/training/models.ts'
import { ModelVariants } from '../../src/training/model-variants.ts'
import { candidateWidths, sizedCandidates } from '../../src/protocol/selection.ts'
import { defaultModelFor } from '../../src/training/model-ids.ts'
import { normalisation } from '../../src/training/data/stats.ts'
import type { ClinicalMetrics } from '../../src/training/metrics.ts'
import { parseSimnetArgs, type SimnetOptions } from './args.ts'
import { runBaselines } from './baselines.ts'
import { readWeightsFile } from '../../src/node/initial-weights.ts'
import { UsageError } from '../../src/cli/usage.ts'
import { compareReports, describeComparison, readReport } from './compare.ts'
import { loadSimData, partition, type SimData } from './data.ts'
import type { FederationResult, SimSetup } from './federation.ts'
import { runMemoryFederation } from './memory.ts'
import { runProcessFederation } from './processes.ts'
import { judgeChosen, reportModel, runFingerprint } from './report-model.ts'
import { faultLine, reportCharts, reportSummary, writeReport } from './report.ts'

export { simnetHelp, RECIPE, DP_RECIPE } from './args.ts'
export { loadSimData } from './data.ts'

type Out = (s: string) => void

/** `medmesh simnet`: one run, K runs over seeds (--repeat), or the comparison of two reports (--compare). Usage errors throw UsageError. */
export async function runSimnet (args: string[], out: Out = s => process.stdout.write(s + '\n')): Promise<number> {
  const command = parseSimnetArgs(args)
  if (command.kind === 'compare') {
    const c = compareReports(readReport(command.a), readReport(command.b))
    for (const line of describeComparison(c, command.a, command.b)) out(line)
    return c.agree ? 0 : 1
  }
  if (command.kind === 'repeat') return await repeatRuns(args, command.times, command.seed, command.outDir, out)
  return await runOnce(command.options, out)
}

/** The options with the model resolved (the one named, or the default at the data's size). */
type ResolvedOptions = SimnetOptions & { modelId: ModelId }

/** One run: the data split among the hospitals, the federation over the chosen transport, the baselines, the report. 0 if no two peers certified different things. */
async function runOnce (given: SimnetOptions, out: Out): Promise<number> {
  const seedBytes = (k: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (given.seed * 131 + k * 17 + i) & 0xff)
  const backend = await selectBackend('auto')
  out(describeBackend(backend))
  out(describeMaskKernel(installMaskKernel()))
  const data = loadSimData(given.dataset ?? BUNDLED_PNEUMONIAMNIST, seedBytes(2), { size: given.size, channels: given.channels })
  // the model named, or the default at the data's size, as manifest create chooses it
  // and the modality by the images' channels unless named, as manifest create names it
  const o: ResolvedOptions = {
    ...given,
    modelId: given.modelId ?? defaultModelFor(data.train.height),
    training: { ...given.training, augmentation: given.training.augmentation ?? (data.train.channels === 3 ? 'photo' : 'xray') }
  }
  if (given.modelId === null) out(`model ${o.modelId} (the default for ${data.train.height} px images)`)
  const parts = partition(data.train, o.n, o.partition, o.alpha, seedBytes(1))
  out(`${o.n} hospitals, ${o.partition === 'iid' ? 'IID' : `Dirichlet(α=${o.alpha})`} split of ${data.train.labels.length} training images: ${parts.map(p => `${p.length} (${classCounts(subset(data.train, p)).join('/')})`).join(', ')}`)
  const spec = { id: o.modelId, height: data.train.height, width: data.train.width, channels: data.train.channels, classes: data.train.classes.length, seed: o.seed }
  out(`${data.train.labels.length + (data.val?.labels.length ?? 0) + data.test.labels.length} images of ${data.train.height}×${data.train.width}×${data.train.channels}, ${data.train.classes.length} classes: ${data.train.classes.join(', ')}`)
  // the model at each width the run's candidates try, each with a trainer that judges it
  const models = new ModelVariants(spec, candidateWidths(o.selection ?? undefined))
  try {
    const setup = simSetup(o, data, parts, seedBytes, out, models)
    const fed: FederationResult = o.transport === 'tcp' ? await runProcessFederation(setup) : await runMemoryFederation(setup)
    out(faultLine(fed.records))
    out(`federation: ${fed.longest} certificates; ${fed.consistent ? 'no conflicting certificates on any peer' : 'CONFLICTING CERTIFICATES'}; ${fed.atHead} of ${o.n} peers at the head; ${fed.seconds.toFixed(0)} s`)
    // the consortium's model: on the test split, and on each hospital's own held-out part
    const judged = judgeChosen(fed, setup, models)
    const baselines = o.baselines === 'none' ? null : runBaselines({ ...setup, spec, schedule: o.schedule }, o.baselines === 'all')
    const model = reportModel({ options: o, setup, fed, judged, baselines, fingerprint: runFingerprint(o.seed, o.args, backend.name), backend: backend.name })
    const paths = writeReport(o.outDir, model.report, reportCharts(model), reportSummary(model))
    out(`report: ${paths.html} and ${paths.json}`)
    return fed.consistent ? 0 : 1
  } finally {
    models.dispose()
  }
}

/** What the transports are given: the options, the data and its split, the initial model, and how to judge a global model on the test split. */
function simSetup (o: ResolvedOptions, data: SimData, parts: number[][], seedBytes: (k: number) => Uint8Array, out: Out, models: ModelVariants): SimSetup {
  const built = flattenWeights(models.at(1).model)
  // taken now: the judge's models are later given the rounds' weights
  const widthInitial = new Map(candidateWidths(o.selection ?? undefined).map(w => [w, flattenWeights(models.at(w).model)]))
  const initialOf = (width: number): Float32Array => widthInitial.get(width)!
  const initialWeights = o.init === null ? built : readWeightsFile(o.init).weights
  if (initialWeights.length !== built.length) throw new UsageError(`--init ${o.init}: ${initialWeights.length} weights, ${o.modelId} here has ${built.length}`)
  if (o.init !== null) out(`initial weights from ${o.init}, not the seed's`)
  return {
    n: o.n, rounds: o.rounds, seed: o.seed, modelId: o.modelId, data, parts, training: o.training, aggregation: o.aggregation, patience: o.patience, slicing: o.slicing,
    // the candidates of other widths with their models' sizes and initial hashes, as manifest create writes them
    selection: o.selection === null ? null : sizedCandidates(o.selection, initialOf), initialOf,
    trainingWorkers: o.trainingWorkers, initialWeights, init: o.init, modelBytes: 4 * initialWeights.length, dp: o.dp,
    dropout: o.dropout, killAt: o.killAt, malicious: o.malicious, latencyMs: o.latencyMs, bandwidthBytesPerMs: o.bandwidthBytesPerMs, outDir: o.outDir, seedBytes, out,
    evaluate: (weights, stats) => {
      // a state of several candidates' models side by side is not one model
      let v: ReturnType<ModelVariants['forWeights']>
      try { v = models.forWeights(weights) } catch { return null }
      setFlatWeights(v.model, weights)
      return v.trainer.evaluate(data.test, stats === null ? undefined : normalisation(stats, data.train.channels))
    }
  }
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
