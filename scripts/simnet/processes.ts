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
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { createWriteStream, mkdirSync, readFileSync, rmSync, writeFileSync, type WriteStream } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { availableParallelism } from 'node:os'
import { PrivacyBudget, seededRandom } from '../../src/privacy/index.ts'
import { buildModel } from '../../src/training/models.ts'
import { LocalTrainer, type TrainOptions } from '../../src/training/trainer.ts'
import * as setup from '../../src/node/setup.ts'
import type { NodeConfig } from '../../src/node/config.ts'
import { DataDir } from '../../src/node/datadir.ts'
import type { TrafficKind } from '../../src/node/metrics.ts'
import { hex } from '../../src/protocol/codec.ts'
import type { Manifest } from '../../src/protocol/manifest.ts'
import type { Ledger, LedgerEntry } from '../../src/protocol/ledger.ts'
import { bestModel, decodeValidation, noLongerImproving } from '../../src/protocol/validation.ts'
import { subset } from '../../src/training/data/dataset.ts'
import { encodeMedMnist } from '../../src/training/data/npz.ts'
import { CRASH_VICTIM, faultsOfRound } from './faults.ts'
import { PHASES, progressLine, emptyTraffic, hospitalData, type FederationResult, type RoundRecord, type SimSetup } from './federation.ts'

const BIN = fileURLToPath(new URL('../../bin/medmesh.js', import.meta.url))
const POLL_MS = 250

/** One sample of a Prometheus text exposition: name, labels, value. */
interface Sample { name: string, labels: Record<string, string>, value: number }

export function parsePrometheus (text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.startsWith('#')) continue
    const brace = line.indexOf('{')
    const space = line.lastIndexOf(' ')
    const name = brace >= 0 ? line.slice(0, brace) : line.slice(0, space)
    const labels: Record<string, string> = {}
    if (brace >= 0) for (const m of line.slice(brace + 1, line.lastIndexOf('}')).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = m[2]
    out.push({ name, labels, value: Number(line.slice(space + 1)) })
  }
  return out
}

/** What a node's metrics say, summed over its incarnations (a restart starts its counters afresh). */
class NodeFigures {
  /** round -> kind -> bytes */
  readonly bytes = new Map<number, Record<TrafficKind, number>>()
  /** round -> phase -> seconds, as this node saw them */
  readonly phases = new Map<number, Record<string, number>>()
  total = 0
  rejected = 0
  #before = { bytes: new Map<number, Record<TrafficKind, number>>(), total: 0, rejected: 0 }
  #now = { bytes: new Map<number, Record<TrafficKind, number>>(), total: 0, rejected: 0 }

  take (samples: Sample[]): void {
    // counters only grow within one incarnation; a round's series the node no longer lists keeps its last value
    const now = { bytes: new Map([...this.#now.bytes].map(([r, k]) => [r, { ...k }])), total: 0, rejected: 0 }
    for (const x of samples) {
      if (x.name === 'medmesh_round_bytes_sent_total') {
        const r = Number(x.labels.round)
        if (!now.bytes.has(r)) now.bytes.set(r, emptyTraffic())
        now.bytes.get(r)![x.labels.kind as TrafficKind] = x.value
      } else if (x.name === 'medmesh_bytes_sent_total') now.total += x.value
      else if (x.name === 'medmesh_rejected_messages_total') now.rejected += x.value
      else if (x.name === 'medmesh_round_phase_seconds') {
        const r = Number(x.labels.round)
        this.phases.set(r, { ...(this.phases.get(r) ?? {}), [x.labels.phase]: x.value })
      }
    }
    this.#now = now
    this.#sum()
  }

  /** the node was killed: what it counted so far stays counted */
  restarted (): void {
    const b = this.#before
    for (const [r, kinds] of this.#now.bytes) {
      const acc = b.bytes.get(r) ?? emptyTraffic()
      for (const k of Object.keys(kinds) as TrafficKind[]) acc[k] += kinds[k]
      b.bytes.set(r, acc)
    }
    b.total += this.#now.total
    b.rejected += this.#now.rejected
    this.#now = { bytes: new Map(), total: 0, rejected: 0 }
  }

  #sum (): void {
    this.bytes.clear()
    for (const source of [this.#before.bytes, this.#now.bytes]) {
      for (const [r, kinds] of source) {
        const acc = this.bytes.get(r) ?? emptyTraffic()
        for (const k of Object.keys(kinds) as TrafficKind[]) acc[k] += kinds[k]
        this.bytes.set(r, acc)
      }
    }
    this.total = this.#before.total + this.#now.total
    this.rejected = this.#before.rejected + this.#now.rejected
  }
}

/** One hospital's node process; it can be killed and started again on the same data directory. */
class NodeProcess {
  proc: ChildProcess | null = null
  exited: Promise<void> = Promise.resolve()
  peakRss = 0
  readonly figures = new NodeFigures()
  readonly dir: string
  readonly httpPort: number
  readonly #log: WriteStream
  constructor (dir: string, httpPort: number) { this.dir = dir; this.httpPort = httpPort; this.#log = createWriteStream(`${dir}.log`, { flags: 'a' }) }

  get alive (): boolean { return this.proc !== null }

  start (): void {
    const proc = spawn(process.execPath, [BIN, 'start', '--data-dir', this.dir], { env: { ...process.env, MEDMESH_LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] })
    this.proc = proc
    proc.stdout!.pipe(this.#log, { end: false }); proc.stderr!.pipe(this.#log, { end: false })
    this.exited = new Promise(resolve => proc.on('exit', () => { if (this.proc === proc) this.proc = null; resolve() }))
  }

  async kill (): Promise<void> {
    if (this.proc === null) return
    this.proc.kill('SIGKILL')
    await this.exited
    this.figures.restarted()
  }

  /** resident memory of the process now (Linux), in bytes */
  sampleRss (): void {
    if (this.proc?.pid === undefined) return
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.proc.pid}/status`, 'utf8'))
      if (m !== null) this.peakRss = Math.max(this.peakRss, Number(m[1]) * 1024)
    } catch {}
  }

  async poll (): Promise<void> {
    if (this.proc === null) return
    this.sampleRss()
    try {
      this.figures.take(parsePrometheus(await (await fetch(`http://127.0.0.1:${this.httpPort}/metrics`, { signal: AbortSignal.timeout(1000) })).text()))
    } catch {}
  }

  async close (): Promise<void> {
    await this.kill()
    await new Promise(resolve => this.#log.end(resolve))
  }
}

/** n TCP ports on 127.0.0.1 that were free a moment ago. */
export async function freePorts (n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise<import('node:net').Server>(resolve => {
    const srv = createServer(); srv.listen(0, '127.0.0.1', () => resolve(srv))
  })))
  const ports = servers.map(srv => (srv.address() as { port: number }).port)
  await Promise.all(servers.map(srv => new Promise(resolve => srv.close(resolve))))
  return ports
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

export interface Consortium { dirs: string[], ids: string[], p2p: number[], http: number[], manifestFile: string }

/**
 * A consortium of n nodes formed as operators form one (src/node/setup.ts): each data directory
 * gets an identity, one manifest is written and every member signs it, then each joins with the
 * others as bootstrap peers on 127.0.0.1. Node i trains on `datasets[i]`.
 */
export async function formConsortium (o: {
  root: string, n: number, name: string, datasets: string[], http: boolean, rounds: number,
  manifest: Omit<setup.ManifestOptions, 'name' | 'members'>, node?: Partial<NodeConfig>, nodeOf?: (i: number) => Partial<NodeConfig>
}): Promise<Consortium> {
  const dirs = Array.from({ length: o.n }, (_, i) => join(o.root, `hospital-${i}`))
  const ids = dirs.map(d => setup.init(d).identity.peerId)
  const manifestFile = join(o.root, 'manifest.json')
  await setup.createManifest(manifestFile, { ...o.manifest, name: o.name, members: ids.map((peerId, i) => ({ peerId, name: `hospital ${i}` })) })
  for (const d of dirs) setup.signManifest(d, manifestFile)
  const [p2p, http] = [await freePorts(o.n), await freePorts(o.n)]
  dirs.forEach((d, i) => setup.join(d, manifestFile, {
    ...(o.node ?? {}), ...(o.nodeOf?.(i) ?? {}), listen: [`/ip4/127.0.0.1/tcp/${p2p[i]}`], http: o.http ? `127.0.0.1:${http[i]}` : 'off', dataset: o.datasets[i], rounds: o.rounds,
    bootstrap: ids.flatMap((id, j) => j === i ? [] : [`/ip4/127.0.0.1/tcp/${p2p[j]}/p2p/${id}`])
  }))
  return { dirs, ids, p2p, http, manifestFile }
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

export async function runProcessFederation (s: SimSetup): Promise<FederationResult> {
  const { n, rounds, data } = s
  if (s.malicious || s.latencyMs > 0 || s.bandwidthBytesPerMs !== undefined) {
    throw new Error('--malicious, --latency and --bandwidth need control of the wire: use them with --transport memory')
  }
  if (data.train.height !== data.train.width) throw new Error('the TCP transport needs square images')
  const root = join(s.outDir, 'nodes')
  rmSync(root, { recursive: true, force: true })
  mkdirSync(root, { recursive: true })

  // a consortium forms: identities, each hospital's own data file, a manifest every member signs
  const files = s.parts.map((_, i) => join(root, `hospital-${i}.npz`))
  files.forEach((f, i) => writeFileSync(f, encodeMedMnist({ ...hospitalData(s, i), test: subset(data.test, []) })))
  // phases wait for the slowest hospital's training, measured here: the largest hospital's epochs at
  // this machine's speed for this model, with the n processes sharing its cores, three times over
  const largest = Math.max(...s.parts.map(p => p.length))
  const speed = measuredSpeed(s)
  const phaseMs = Math.max(10_000, Math.ceil(3 * largest * s.training.epochs / speed * Math.max(1, n / availableParallelism())) * 1000)
  const roundMs = 12 * phaseMs
  const faultless = s.dropout === 0 && s.killAt === null
  const { dirs, ids, http } = await formConsortium({
    root, n, name: `simnet seed ${s.seed}`, datasets: files, http: true, rounds,
    manifest: {
      model: s.modelId, seed: s.seed, imageSize: data.train.height, channels: data.train.channels, classes: data.train.classes.length, classNames: data.train.classes, phaseMs, roundMs,
      patience: s.patience, schedule: s.training.schedule, scheduleRounds: s.training.rounds, epochs: s.training.epochs, batchSize: s.training.batchSize,
      learningRate: s.training.learningRate, classWeighting: s.training.classWeighting, priorCorrection: s.training.priorCorrection, aggregation: s.aggregation.rule, serverLr: s.aggregation.serverLr, beta1: s.aggregation.beta1,
      dp: s.dp === null ? undefined : { epsilon: s.dp.epsilon, noise: s.dp.noise, clip: s.dp.clip },
      slicing: s.slicing ?? undefined
    },
    // a simulation repeats: each node's randomness from the run's seed; with no faults, no round
    // starts before every node is connected to every other
    nodeOf: i => ({ simulationSeed: hex(s.seedBytes(100 + i)), trainingWorkers: s.trainingWorkers, ...(faultless ? { minPeers: n - 1 } : {}) }),
  })
  const manifest: Manifest = new DataDir(dirs[0]).manifest()
  // member index (canonical order in the manifest) -> hospital
  const hospitalOf = manifest.members.map(m => ids.indexOf(m.peerId))
  s.out(`${n} nodes on 127.0.0.1 (TCP, Noise, Yamux, gossipsub), data directories in ${root}; phase timeout ${phaseMs / 1000} s (training measured here at ${speed.toFixed(0)} images/s${s.dp === null ? '' : ' with DP-SGD'})`)

  const nodes = dirs.map((d, i) => new NodeProcess(d, http[i]))
  const started = Date.now()
  const records: RoundRecord[] = []
  const victim = CRASH_VICTIM
  const ledgers = (): Array<Ledger | null> => dirs.map(d => { try { return new DataDir(d).ledger(manifest) } catch { return null } })
  try {
    for (const node of nodes) node.start()
    let certifiedUpdates = 0
    const deadline = Date.now() + (2 * rounds + 2) * roundMs + 120_000
    /** wait for round r to be certified somewhere, or abandoned by every running node */
    const settle = async (r: number): Promise<{ entry: LedgerEntry | undefined, holder: number }> => {
      for (;;) {
        await Promise.all(nodes.map(async nd => await nd.poll()))
        // status first, ledgers after: a node writes a certificate before its status shows the next
        // round, so a round the nodes have moved past is in the files read next if it was certified
        const status = await Promise.all(nodes.map(async nd => nd.alive ? await fetch(`http://127.0.0.1:${nd.httpPort}/status`, { signal: AbortSignal.timeout(1000) }).then(async x => await x.json() as { round: number | null }).catch(() => null) : null))
        const all = ledgers()
        const holder = all.findIndex(l => l?.entries.some(e => e.header.round === r) === true)
        if (holder >= 0) return { entry: all[holder]!.entries.find(e => e.header.round === r), holder }
        const beyond = all.every((l, i) => !nodes[i].alive || (l !== null && l.lastRound > r))
        const moved = status.filter(x => x !== null).length > 0 && status.every((x, i) => !nodes[i].alive || (x !== null && x.round !== null && x.round > r))
        if (beyond || moved) return { entry: undefined, holder: -1 }
        if (Date.now() > deadline) throw new Error(`the simulation ran out of time in round ${r}`)
        await sleep(POLL_MS)
      }
    }
    // model round k is protocol round 2k - 1; the eval round that judges it is 2k
    for (let k = 1; certifiedUpdates < rounds && nodes.some(nd => nd.alive); k++) {
      const r = 2 * k - 1
      if (Date.now() > deadline) throw new Error(`the simulation ran out of time in round ${k}`)
      const faults = faultsOfRound(s, k)
      const absent = new Set(faults.filter(f => f.fault === 'offline').map(f => f.hospital))
      if (faults.some(f => f.fault === 'crash')) { s.out(`round ${k}: hospital ${victim} crashes (SIGKILL)`); await nodes[victim].kill() }
      if (faults.some(f => f.fault === 'restart') && !nodes[victim].alive) { s.out(`round ${k}: hospital ${victim} restarts on its data directory`); nodes[victim].start() }
      for (const i of absent) await nodes[i].kill()
      const { entry, holder } = await settle(r)
      const certified = entry !== undefined
      let metrics = null
      if (certified && entry.header.kind === 'update') {
        // a node writes the certified model once it holds it (it may have to fetch it first)
        const mh = hex(entry.header.stateHash)
        let state = null
        for (let waited = 0; state === null && waited < 60_000; waited += POLL_MS) {
          state = dirs.map(d => new DataDir(d).state(mh)).find(x => x !== null) ?? null
          if (state === null) await sleep(POLL_MS)
        }
        if (state !== null) metrics = s.evaluate(state.weights, ledgers()[holder]?.statistics ?? null)
        certifiedUpdates++
      }
      const judged = certified ? (await settle(r + 1)).entry : undefined
      await Promise.all(nodes.map(async nd => await nd.poll()))
      const ref = nodes.findIndex((nd, i) => nd.alive && !absent.has(i))
      const record: RoundRecord = {
        round: k,
        protocolRounds: [r, r + 1],
        participants: certified ? entry.header.survivors.map(m => hospitalOf[m]).sort((a, b) => a - b) : [],
        metrics,
        stateHash: certified && entry.header.kind === 'update' ? hex(entry.header.stateHash) : null,
        validation: judged?.header.kind === 'eval' ? decodeValidation(judged.header.extra) : null,
        epsilon: dirs.map(d => new DataDir(d).budget()?.spent.epsilon ?? 0),
        ...traffic(nodes, [r, r + 1], s.modelBytes),
        phaseMs: ref < 0 ? {} : phaseTimes(nodes[ref].figures, r),
        offline: [...absent].sort((a, b) => a - b),
        faults,
        reference: ref
      }
      records.push(record)
      s.out(progressLine(record, n, s.dp !== null))
      const latest = ledgers().filter((l): l is Ledger => l !== null).sort((a, b) => b.entries.length - a.entries.length)[0]
      // the nodes stop by themselves (their stop policy): so does the watching
      if (latest !== undefined && noLongerImproving(latest, s.patience)) { s.out(`validation AUC has not improved for ${s.patience} round(s): the consortium stops early`); break }
      // the absent come back (they catch up from the others' ledgers), unless the run is over
      if (certifiedUpdates < rounds) for (const i of absent) if (!nodes[i].alive) nodes[i].start()
    }
    // every node stops by itself after its last round; give the stragglers time to catch up
    const end = Date.now() + Math.max(30_000, 2 * phaseMs)
    while (nodes.some(nd => nd.alive) && Date.now() < end) { await Promise.all(nodes.map(async nd => await nd.poll())); await sleep(POLL_MS) }
  } finally {
    for (const nd of nodes) await nd.close()
  }
  // the figures of each round once every node has had its say (late fetches of a certified state count too)
  for (const r of records) {
    Object.assign(r, traffic(nodes, r.protocolRounds, s.modelBytes))
    if (r.reference >= 0) r.phaseMs = phaseTimes(nodes[r.reference].figures, r.protocolRounds[0])
  }
  const all = ledgers()
  const byRound = new Map<number, Set<string>>()
  for (const l of all) for (const e of l?.entries ?? []) { if (!byRound.has(e.header.round)) byRound.set(e.header.round, new Set()); byRound.get(e.header.round)!.add(hex(e.hash)) }
  const longest = Math.max(...all.map(l => l?.entries.length ?? 0))
  const peaks = nodes.map(nd => nd.peakRss)
  return {
    records,
    bytesPerNode: nodes.map(nd => nd.figures.total),
    seconds: (Date.now() - started) / 1000,
    consistent: all.every(l => l !== null) && [...byRound.values()].every(x => x.size === 1),
    longest,
    atHead: all.filter(l => (l?.entries.length ?? 0) === longest).length,
    peakRssMB: Math.round(peaks.reduce((a, b) => a + b, 0) / 1e6),
    peakRssPerNodeMB: Math.round(Math.max(...peaks) / 1e6),
    rejections: nodes.reduce((a, nd) => a + nd.figures.rejected, 0),
    epsilon: dirs.map(d => new DataDir(d).budget()?.spent.epsilon ?? 0),
    transport: 'separate processes, libp2p over TCP on 127.0.0.1',
    chosen: chosenModel(dirs, all)
  }
}

/** The consortium's model as the nodes keep it: the best round by validation (else the last), from a data directory that holds it. */
function chosenModel (dirs: string[], ledgers: Array<Ledger | null>): FederationResult['chosen'] {
  const ledger = ledgers.filter((l): l is Ledger => l !== null).sort((a, b) => b.entries.length - a.entries.length)[0]
  const entry = ledger === undefined ? undefined : (bestModel(ledger)?.model ?? ledger.lastOf('update'))
  if (entry === undefined) return null
  const state = dirs.map(d => new DataDir(d).state(hex(entry.header.stateHash))).find(x => x !== null)
  return state === undefined ? null : { weights: state.weights, stats: ledger.statistics }
}

/** Bytes every node sent for these protocol rounds (a model round and its eval round), by kind and in all, and that in model sizes. */
function traffic (nodes: NodeProcess[], rounds: number[], modelBytes: number): Pick<RoundRecord, 'bytes' | 'bytesByKind' | 'modelSizes'> {
  const byKind = emptyTraffic()
  for (const nd of nodes) {
    for (const r of rounds) {
      const x = nd.figures.bytes.get(r)
      if (x !== undefined) for (const k of Object.keys(byKind) as TrafficKind[]) byKind[k] += x[k]
    }
  }
  const bytes = Object.values(byKind).reduce((a, b) => a + b, 0)
  return { bytes, bytesByKind: byKind, modelSizes: bytes / modelBytes }
}

/** Wall-clock milliseconds a node spent in each phase of round `r`, from its metrics. */
function phaseTimes (figures: NodeFigures, r: number): Record<string, number> {
  const seen = figures.phases.get(r) ?? {}
  return Object.fromEntries(PHASES.filter(p => seen[p] !== undefined).map(p => [p, Math.round(seen[p] * 1000)]))
}
