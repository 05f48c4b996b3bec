/**
 * The TCP transport: every hospital is a real medmesh node — its own process, its own data
 * directory and identity, a libp2p host on 127.0.0.1 (TCP, Noise, Yamux, gossipsub) — set up the
 * way a consortium sets itself up: `init`, `manifest create`, every member `manifest sign`, `join`
 * with the others as bootstrap peers, `start`. Each hospital's share of the data is written to its
 * own .npz file, so no node sees another's images. The simulator only watches: it reads each
 * node's /status and /metrics (bytes per round and kind, time per phase, rejections) and its data
 * directory (ledger, certified states, ε), keeps its log in a file, and injects faults by killing a
 * node (SIGKILL) and starting it again.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { availableParallelism } from 'node:os'
import { UsageError } from '../../src/cli/main.ts'
import { PrivacyBudget, seededRandom } from '../../src/privacy/index.ts'
import { buildModel } from '../../src/training/models.ts'
import { LocalTrainer, type TrainOptions } from '../../src/training/trainer.ts'
import { DataDir } from '../../src/node/datadir.ts'
import { hex } from '../../src/protocol/codec.ts'
import type { Manifest } from '../../src/protocol/manifest.ts'
import type { ManifestOptions } from '../../src/node/setup.ts'
import type { Ledger, LedgerEntry } from '../../src/protocol/ledger.ts'
import { bestModel } from '../../src/protocol/validation.ts'
import { subset } from '../../src/training/data/dataset.ts'
import { encodeMedMnist } from '../../src/training/data/npz.ts'
import { CRASH_VICTIM } from './faults.ts'
import { hospitalData } from './data.ts'
import { PHASES, progressLine, selectionLines, selectionReport, roundFaults, roundRecord, sumTraffic, ledgerAgreement, stopsEarly, type FederationResult, type RoundRecord, type SimSetup, type Traffic } from './federation.ts'
import { NodeProcess, POLL_MS, formConsortium, sleep, type NodeFigures } from './nodes.ts'

export { freePorts, formConsortium, parsePrometheus, type Consortium } from './nodes.ts'

/** One run: its setup, the node processes and their data directories, the manifest they signed. */
interface ProcessRun {
  s: SimSetup
  nodes: NodeProcess[]
  dirs: string[]
  manifest: Manifest
  /** member index (canonical order in the manifest) -> hospital */
  hospitalOf: number[]
  phaseMs: number
  roundMs: number
  /** when the watching gives up */
  deadline: number
}

export async function runProcessFederation (s: SimSetup): Promise<FederationResult> {
  if (s.malicious || s.latencyMs > 0 || s.bandwidthBytesPerMs !== undefined) {
    throw new UsageError('--malicious, --latency and --bandwidth need control of the wire: use them with --transport memory')
  }
  if (s.data.train.height !== s.data.train.width) throw new UsageError('the TCP transport needs square images (--size resizes them)')
  const run = await formRun(s)
  const { nodes } = run
  const started = Date.now()
  const records: RoundRecord[] = []
  try {
    for (const node of nodes) node.start()
    run.deadline = Date.now() + (2 * s.rounds + 2) * run.roundMs + 120_000
    let certifiedUpdates = 0
    // model round k is protocol round 2k - 1; the eval round that judges it is 2k
    for (let k = 1; certifiedUpdates < s.rounds && nodes.some(nd => nd.alive); k++) {
      if (Date.now() > run.deadline) throw new Error(`the simulation ran out of time in round ${k}`)
      const record = await playRound(run, k)
      if (record.stateHash !== null) certifiedUpdates++
      records.push(record)
      s.out(progressLine(record, s.n, s.dp !== null))
      for (const line of selectionLines(longestLedger(readLedgers(run)), k)) s.out(line)
      // the nodes stop by themselves (their stop policy): so does the watching
      if (stopsEarly(longestLedger(readLedgers(run)), s)) break
      // the absent come back (they catch up from the others' ledgers), unless the run is over
      if (certifiedUpdates < s.rounds) for (const i of new Set(record.offline)) if (!nodes[i].alive) nodes[i].start()
    }
    // every node stops by itself after its last round; give the stragglers time to catch up
    const end = Date.now() + Math.max(30_000, 2 * run.phaseMs)
    while (nodes.some(nd => nd.alive) && Date.now() < end) { await pollAll(nodes); await sleep(POLL_MS) }
  } finally {
    for (const nd of nodes) await nd.close()
  }
  // the figures of each round once every node has had its say (late fetches of a certified state count too)
  for (const r of records) {
    Object.assign(r, traffic(nodes, r.protocolRounds, s.modelBytes))
    if (r.reference >= 0) r.phaseMs = phaseTimes(nodes[r.reference].figures, r.protocolRounds[0])
  }
  const all = readLedgers(run)
  const peaks = nodes.map(nd => nd.peakRss)
  return {
    records,
    bytesPerNode: nodes.map(nd => nd.figures.total),
    seconds: (Date.now() - started) / 1000,
    ...ledgerAgreement(all),
    peakRssMB: Math.round(peaks.reduce((a, b) => a + b, 0) / 1e6),
    peakRssPerNodeMB: Math.round(Math.max(...peaks) / 1e6),
    rejections: nodes.reduce((a, nd) => a + nd.figures.rejected, 0),
    epsilon: spentEpsilon(run.dirs),
    transport: 'separate processes, libp2p over TCP on 127.0.0.1',
    chosen: chosenModel(run.dirs, all),
    selection: selectionReport(longestLedger(all))
  }
}

/**
 * The run's recipe as `manifest create` options: every field of the simulator's params.training
 * given, so that the manifest the nodes train by is the run's recipe, not manifest create's
 * defaults for what was left out (an absent prior correction or minimum of steps means none here).
 */
export function manifestRecipe (s: Pick<SimSetup, 'training' | 'aggregation' | 'dp'>): Omit<ManifestOptions, 'name' | 'members'> {
  const t = s.training
  return {
    schedule: t.schedule, scheduleRounds: t.rounds, epochs: t.epochs, batchSize: t.batchSize, learningRate: t.learningRate, classWeighting: t.classWeighting,
    priorCorrection: t.priorCorrection ?? 'none', minSteps: t.minSteps ?? 0,
    ...(t.warmupSteps === undefined ? {} : { warmupSteps: t.warmupSteps }), ...(t.clipGradientNorm === undefined ? {} : { clipGradientNorm: t.clipGradientNorm }),
    ...(t.weightDecay === undefined ? {} : { weightDecay: t.weightDecay }), ...(t.augmentation === undefined ? {} : { augmentation: t.augmentation }),
    aggregation: s.aggregation.rule, serverLr: s.aggregation.serverLr, beta1: s.aggregation.beta1,
    dp: s.dp === null ? undefined : { epsilon: s.dp.epsilon, noise: s.dp.noise, clip: s.dp.clip }
  }
}

/** A consortium forms: identities, each hospital's own data file, a manifest every member signs; the nodes not yet started. */
async function formRun (s: SimSetup): Promise<ProcessRun> {
  const { n, data } = s
  const root = join(s.outDir, 'nodes')
  rmSync(root, { recursive: true, force: true })
  mkdirSync(root, { recursive: true })
  const files = s.parts.map((_, i) => join(root, `hospital-${i}.npz`))
  files.forEach((f, i) => writeFileSync(f, encodeMedMnist({ ...hospitalData(s, i), test: subset(data.test, []) })))
  // phases wait for the slowest hospital's training, measured here: the largest hospital's epochs at
  // this machine's speed for this model, with the n processes sharing its cores, three times over
  const largest = Math.max(...s.parts.map(p => p.length))
  const speed = measuredSpeed(s)
  // (while the recipe is chosen, a model round trains every candidate: their epochs together, a
  // candidate of width w costing about w² of the model's work, its convolutions' filters on both sides)
  const cost = (c: { width?: number }): number => Math.max(1, (c.width ?? 1) ** 2)
  const epochs = s.selection === null ? s.training.epochs : s.selection.candidates.reduce((a, c) => a + c.epochs * cost(c), 0)
  // (a small hospital's minimum steps can make it train more images than the largest one's epochs)
  const images = Math.max(largest * epochs, (s.training.minSteps ?? 0) * s.training.batchSize * (s.selection?.candidates.reduce((a, c) => a + cost(c), 0) ?? 1))
  const phaseMs = Math.max(10_000, Math.ceil(3 * images / speed * Math.max(1, n / availableParallelism())) * 1000)
  const roundMs = 12 * phaseMs
  const faultless = s.dropout === 0 && s.killAt === null
  const { dirs, ids, http } = await formConsortium({
    root, n, name: `simnet seed ${s.seed}`, datasets: files, http: true, rounds: s.rounds,
    manifest: {
      model: s.modelId, seed: s.seed, imageSize: data.train.height, channels: data.train.channels, classes: data.train.classes.length, classNames: data.train.classes, phaseMs, roundMs,
      patience: s.patience, ...manifestRecipe(s),
      slicing: s.slicing ?? undefined, selection: s.selection ?? undefined, init: s.init ?? undefined
    },
    // a simulation repeats: each node's randomness from the run's seed; with no faults, no round
    // starts before every node is connected to every other
    nodeOf: i => ({ simulationSeed: hex(s.seedBytes(100 + i)), trainingWorkers: s.trainingWorkers, ...(faultless ? { minPeers: n - 1 } : {}) })
  })
  const manifest: Manifest = new DataDir(dirs[0]).manifest()
  s.out(`${n} nodes on 127.0.0.1 (TCP, Noise, Yamux, gossipsub), data directories in ${root}; phase timeout ${phaseMs / 1000} s (training measured here at ${speed.toFixed(0)} images/s${s.dp === null ? '' : ' with DP-SGD'})`)
  return {
    s, dirs, manifest, phaseMs, roundMs, deadline: Infinity,
    nodes: dirs.map((d, i) => new NodeProcess(d, http[i])),
    hospitalOf: manifest.members.map(m => ids.indexOf(m.peerId))
  }
}

/** Images per second this machine trains the run's model at (three steps after a warm-up), with DP-SGD when the run uses it. */
function measuredSpeed (s: SimSetup): number {
  const d = s.data.train
  const model = buildModel({ id: s.modelId, height: d.height, width: d.width, channels: d.channels, classes: d.classes.length, seed: s.seed })
  const trainer = new LocalTrainer(model)
  const batch = s.training.batchSize
  const sample = subset(d, Array.from({ length: Math.min(d.labels.length, 4 * batch) }, (_, i) => i))
  const steps = (k: number): TrainOptions => ({
    steps: k, batchSize: batch, learningRate: s.training.learningRate, seed: s.seedBytes(900), augment: true,
    dp: s.dp === null ? undefined : { noiseMultiplier: 1, clipNorm: s.dp.clip, budget: new PrivacyBudget(1e9, 1e-5), noiseRandom: seededRandom(s.seedBytes(901)) }
  })
  trainer.train(sample, steps(1))
  const speed = trainer.train(sample, steps(3)).imagesPerSecond
  trainer.dispose(); model.dispose()
  return speed
}

/** Model round k, with its faults: watched until it and its eval round are certified or given up, and its record. */
async function playRound (run: ProcessRun, k: number): Promise<RoundRecord> {
  const { s, nodes } = run
  const r = 2 * k - 1
  const plan = roundFaults(s, k)
  if (plan.crash) { s.out(`round ${k}: hospital ${CRASH_VICTIM} crashes (SIGKILL)`); await nodes[CRASH_VICTIM].kill() }
  if (plan.restart && !nodes[CRASH_VICTIM].alive) { s.out(`round ${k}: hospital ${CRASH_VICTIM} restarts on its data directory`); nodes[CRASH_VICTIM].start() }
  for (const i of plan.absent) await nodes[i].kill()
  const { entry, holder } = await settle(run, r)
  const metrics = entry?.header.kind === 'update' ? await certifiedMetrics(run, entry, holder) : null
  const judged = entry !== undefined ? (await settle(run, r + 1)).entry : undefined
  await pollAll(nodes)
  const ref = nodes.findIndex((nd, i) => nd.alive && !plan.absent.has(i))
  return roundRecord(k, plan, {
    model: entry, judged, participants: entry === undefined ? [] : entry.header.survivors.map(m => run.hospitalOf[m]).sort((a, b) => a - b), metrics,
    epsilon: spentEpsilon(run.dirs), traffic: traffic(nodes, [r, r + 1], s.modelBytes), phaseMs: ref < 0 ? {} : phaseTimes(nodes[ref].figures, r), reference: ref
  })
}

/** Wait for protocol round r to be certified somewhere (the certificate, and a node that holds it), or abandoned by every running node. */
async function settle (run: ProcessRun, r: number): Promise<{ entry: LedgerEntry | undefined, holder: number }> {
  const { nodes } = run
  for (;;) {
    await pollAll(nodes)
    // status first, ledgers after: a node writes a certificate before its status shows the next
    // round, so a round the nodes have moved past is in the files read next if it was certified
    const status = await Promise.all(nodes.map(async nd => nd.alive ? await roundOf(nd) : null))
    const all = readLedgers(run)
    const holder = all.findIndex(l => l?.entries.some(e => e.header.round === r) === true)
    if (holder >= 0) return { entry: all[holder]!.entries.find(e => e.header.round === r), holder }
    const beyond = all.every((l, i) => !nodes[i].alive || (l !== null && l.lastRound > r))
    const moved = status.filter(x => x !== null).length > 0 && status.every((x, i) => !nodes[i].alive || (x !== null && x.round !== null && x.round > r))
    if (beyond || moved) return { entry: undefined, holder: -1 }
    if (Date.now() > run.deadline) throw new Error(`the simulation ran out of time in round ${r}`)
    await sleep(POLL_MS)
  }
}

/** The round a node's /status says it is in, or null if it does not answer. */
async function roundOf (nd: NodeProcess): Promise<{ round: number | null } | null> {
  return await fetch(`http://127.0.0.1:${nd.httpPort}/status`, { signal: AbortSignal.timeout(1000) }).then(async x => await x.json() as { round: number | null }).catch(() => null)
}

/** The certified model of `entry` on the test split, once a node has written it (it may have to fetch it first). */
async function certifiedMetrics (run: ProcessRun, entry: LedgerEntry, holder: number): Promise<RoundRecord['metrics']> {
  const mh = hex(entry.header.stateHash)
  let state = null
  for (let waited = 0; state === null && waited < 60_000; waited += POLL_MS) {
    state = run.dirs.map(d => new DataDir(d).state(mh)).find(x => x !== null) ?? null
    if (state === null) await sleep(POLL_MS)
  }
  return state === null ? null : run.s.evaluate(state.weights, readLedgers(run)[holder]?.statistics ?? null)
}

const pollAll = async (nodes: NodeProcess[]): Promise<void> => { await Promise.all(nodes.map(async nd => await nd.poll())) }

/** Each node's ledger as its data directory holds it (null: unreadable). */
function readLedgers (run: Pick<ProcessRun, 'dirs' | 'manifest'>): Array<Ledger | null> {
  return run.dirs.map(d => { try { return new DataDir(d).ledger(run.manifest) } catch { return null } })
}

const longestLedger = (ledgers: Array<Ledger | null>): Ledger | undefined => ledgers.filter((l): l is Ledger => l !== null).sort((a, b) => b.entries.length - a.entries.length)[0]

const spentEpsilon = (dirs: string[]): number[] => dirs.map(d => new DataDir(d).budget()?.spent.epsilon ?? 0)

/** The consortium's model as the nodes keep it: the best round by validation (else the last), from a data directory that holds it. */
function chosenModel (dirs: string[], ledgers: Array<Ledger | null>): FederationResult['chosen'] {
  const ledger = longestLedger(ledgers)
  const entry = ledger === undefined ? undefined : (bestModel(ledger, ledger.manifest.params.model.classes)?.model ?? ledger.lastOf('update'))
  if (entry === undefined) return null
  const state = dirs.map(d => new DataDir(d).state(hex(entry.header.stateHash))).find(x => x !== null)
  return state === undefined ? null : { weights: state.weights, stats: ledger!.statistics }
}

/** Bytes every node sent for these protocol rounds (a model round and its eval round). */
function traffic (nodes: NodeProcess[], rounds: number[], modelBytes: number): Traffic {
  return sumTraffic(nodes.map(nd => nd.figures.bytes), rounds, modelBytes)
}

/** Wall-clock milliseconds a node spent in each phase of round `r`, from its metrics. */
function phaseTimes (figures: NodeFigures, r: number): Record<string, number> {
  const seen = figures.phases.get(r) ?? {}
  return Object.fromEntries(PHASES.filter(p => seen[p] !== undefined).map(p => [p, Math.round(seen[p] * 1000)]))
}
