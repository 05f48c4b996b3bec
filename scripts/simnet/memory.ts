/**
 * The in-process transport: every hospital is a ProtocolPeer on the in-memory network
 * (src/protocol/memnet.ts) in simulated time, with real training (Site). Fast, reproducible from
 * the seed, and able to hold many peers (20 and more) in one process; it also offers the faults
 * that need control of the wire: latency, bandwidth, a malicious hospital.
 */
import { candidateRecipe, candidateSize, roundCandidates } from '../../src/protocol/selection.ts'
import { splitParts } from '../../src/training/candidates.ts'
import { PrivacyBudget, seededRandom } from '../../src/privacy/index.ts'
import { MemNet } from '../../src/protocol/memnet.ts'
import { hex } from '../../src/protocol/codec.ts'
import type { Manifest, ProtocolParams } from '../../src/protocol/manifest.ts'
import { openMessage, sealMessage, type Envelope, type MaskedInputBody } from '../../src/protocol/messages.ts'
import { stateHash, initialState } from '../../src/protocol/model.ts'
import { Site } from '../../src/training/site.ts'
import { siteSpec } from '../../src/node/site.ts'
import { roundKind, modelRoundOf, validationCounts } from '../../src/protocol/validation.ts'
import { NonFiniteTrainingError } from '../../src/training/trainer.ts'
import { recipeGuards } from '../../src/node/site.ts'
import type { TrafficKind } from '../../src/node/metrics.ts'
import { CRASH_VICTIM } from './faults.ts'
import { hospitalData } from './data.ts'
import {
  PHASES, progressLine, selectionLines, selectionReport, emptyTraffic, chosenRound, stillChoosableRecords, roundFaults, roundRecord, sumTraffic, ledgerAgreement, stopsEarly,
  type FederationResult, type RoundRecord, type SimSetup, type Traffic
} from './federation.ts'

/** One run: the network, each hospital's site, ε before each round's training, the bytes sent. */
interface MemoryRun {
  s: SimSetup
  net: MemNet
  sites: Site[]
  /** ε spent per hospital just before the training of protocol round r began */
  epsilonBefore: Map<number, number[]>
  traffic: TrafficLog
}

export async function runMemoryFederation (s: SimSetup): Promise<FederationResult> {
  const sites: Site[] = []
  const epsilonBefore = new Map<number, number[]>()
  const net = newNet(s, sites, epsilonBefore)
  // member i of the manifest (canonical order) is hospital i
  sites.push(...await openSites(s, net.manifest))
  if (s.malicious) installMalicious(net, s.n - 1)
  const run: MemoryRun = { s, net, sites, epsilonBefore, traffic: new TrafficLog(s.n) }
  const records: RoundRecord[] = []
  // each round's certified weights while it may still be chosen (validation.ts stillChoosable)
  const kept = new Map<number, NonNullable<FederationResult['chosen']>>()
  const classes = s.data.train.classes.length
  const started = Date.now()
  const rss = peakRssSampler()
  net.startAll()
  for (let r = 1; r <= s.rounds; r++) {
    const { record, ref } = playRound(run, r)
    rss.sample()
    records.push(record)
    // keep the consortium's model as the rounds go: the best by pooled validation so far
    if (record.metrics !== null) kept.set(records.length - 1, { weights: Float32Array.from(net.peers[ref].state.weights), stats: net.peers[ref].stats })
    // and the last certified one: the choice when no round has an AUC
    const lastCertified = records.findLastIndex(x => x.metrics !== null)
    const needed = new Set([...stillChoosableRecords(records, classes), lastCertified])
    for (const i of kept.keys()) if (!needed.has(i)) kept.delete(i)
    s.out(progressLine(record, s.n, s.dp !== null))
    for (const line of selectionLines(net.peers[ref].ledger, r)) s.out(line)
    if (stopsEarly(net.peers[ref].ledger, s)) break
  }
  const peakRss = rss.stop()
  run.traffic.count(net.log)
  for (const r of records) Object.assign(r, run.traffic.sums(r.protocolRounds, s.modelBytes))
  return {
    records, bytesPerNode: run.traffic.bytesPerNode, seconds: (Date.now() - started) / 1000,
    ...ledgerAgreement(net.peers.map(p => p.ledger)),
    peakRssMB: Math.round(peakRss / 1e6), peakRssPerNodeMB: Math.round(peakRss / 1e6 / s.n),
    rejections: net.log.filter(l => l.action.type === 'reject').length,
    epsilon: spentEpsilon(sites),
    transport: 'in-process (in-memory network, simulated time)',
    chosen: kept.get(chosenRound(records, classes)) ?? null,
    selection: selectionReport(net.peers[0].ledger)
  }
}

/** The network of n peers; a peer's input is its site's statistics, update or validation counts. */
function newNet (s: SimSetup, sites: Site[], epsilonBefore: Map<number, number[]>): MemNet {
  const layout = { classes: s.data.train.classes.length, bins: 1000 }
  const net: MemNet = new MemNet({
    n: s.n, seed: s.seed, initialWeights: s.initialWeights, initialOf: s.initialOf, lastRound: 2 * s.rounds, latencyMs: s.latencyMs, bandwidthBytesPerMs: s.bandwidthBytesPerMs,
    kindOf: roundKind,
    params: p => { setParams(p, s) },
    input: (member, round, kind): { values: ArrayLike<number>, count: number } | null => {
      const site = sites[member]
      if (kind === 'stats') return site.statsInput()
      if (site.norm === undefined && net.peers[member].stats !== null) site.useStatistics(net.peers[member].stats!)
      // the state the round trains from or judges: while the recipe is chosen, each candidate's model side by side
      const weights = net.peers[member].roundState.weights
      const params = net.manifest.params
      const candidates = roundCandidates(net.peers[member].ledger.entries, params, round, kind)
      const parts = candidates?.map(c => candidateSize(params, c)) ?? 1
      if (kind === 'eval') {
        const counts = splitParts(weights, parts).map(w => { const p = site.predictions(w, 'val')!; return validationCounts(p.probs, p.labels, layout) })
        return { values: Float64Array.from(counts.flatMap(c => [...c])), count: site.data.val?.labels.length ?? 0 }
      }
      // the next round's training starts as soon as a round is certified: note ε before it
      if (!epsilonBefore.has(round)) epsilonBefore.set(round, spentEpsilon(sites))
      try {
        if (candidates === null) return site.update(weights, round, modelRoundOf(round))
        const values = new Float32Array(weights.length)
        let count = 1
        let at = 0
        splitParts(weights, parts).forEach((w, i) => { const u = site.update(w, round, modelRoundOf(round), candidateRecipe(params, candidates[i])); values.set(u.values, at); at += w.length; count = u.count })
        return { values, count }
      } catch (e) {
        // as a node does: a training that diverged sends nothing rather than a poisoned update
        if (!(e instanceof NonFiniteTrainingError)) throw e
        s.out(`round ${round}: hospital ${member}: ${e.message}; it sends no input this round`)
        return null
      }
    }
  })
  return net
}

/** The run's manifest parameters: its model, recipe, rule, slicing and DP. */
function setParams (p: ProtocolParams, s: SimSetup): void {
  const init = s.initialWeights
  p.model = { id: s.modelId, version: '1', seed: s.seed, initialHash: hex(stateHash(initialState(init))), size: init.length, input: { size: s.data.train.height, channels: s.data.train.channels }, classes: s.data.train.classes.length }
  p.quantization.maxSampleCount = Math.max(...s.parts.map(x => x.length))
  p.timeouts = { phaseMs: 5_000, roundMs: 120_000 }
  p.training = { ...s.training }
  p.aggregation = { ...p.aggregation, ...s.aggregation }
  p.validation.patience = s.patience
  if (s.slicing !== null) p.slicing = { ...s.slicing }
  if (s.selection !== null) p.selection = structuredClone(s.selection)
  if (s.dp !== null) p.dp = { enabled: true, epsilon: s.dp.epsilon, delta: 1e-5, noiseMultiplier: s.dp.noise, clipNorm: s.dp.clip }
}

/** Each hospital's site, as a node makes it from the manifest, with its randomness from the run's seed. */
async function openSites (s: SimSetup, manifest: Manifest): Promise<Site[]> {
  const sites: Site[] = []
  for (let i = 0; i < s.n; i++) {
    sites.push(await Site.open(siteSpec(manifest), { ...hospitalData(s, i), test: null }, {
      epochs: s.training.epochs, batchSize: s.training.batchSize, learningRate: s.training.learningRate, classWeighting: s.training.classWeighting, priorCorrection: s.training.priorCorrection, ...recipeGuards(s.training), seed: s.seedBytes(100 + i), budget: s.dp === null ? null : new PrivacyBudget(s.dp.epsilon, 1e-5),
      // a simulation repeats: DP noise from the run's seed (real nodes draw it from the CSPRNG)
      noiseRandom: seededRandom(s.seedBytes(500 + i))
    }))
  }
  return sites
}

const spentEpsilon = (sites: Site[]): number[] => sites.map(x => x.options.budget?.spent.epsilon ?? 0)

/** Model round r (protocol round 2r - 1, judged by eval round 2r), with its faults: played to the end, and its record. */
function playRound (run: MemoryRun, r: number): { record: RoundRecord, ref: number } {
  const { s, net } = run
  // dropouts: this round's absentees miss the whole round and its eval round, then come back
  const plan = roundFaults(s, r)
  const target = 2 * r - 1
  const settled = (round: number) => (): boolean => net.honest().every((i: number) => net.peers[i].ledger.lastRound >= round || net.peers[i].round === null || net.peers[i].round!.number > round)
  if (plan.crash) { net.online[CRASH_VICTIM] = false; s.out(`round ${r}: hospital ${CRASH_VICTIM} crashes`) }
  if (plan.restart) {
    // it restarts: certificates and the certified state from another member, verified before use
    net.online[CRASH_VICTIM] = true
    net.serveLedger(0, CRASH_VICTIM)
    net.flush(CRASH_VICTIM)
    s.out(`round ${r}: hospital ${CRASH_VICTIM} restarts, verifies ${net.peers[0].ledger.entries.length} certificates and catches up`)
  }
  for (const i of plan.absent) net.online[i] = false
  const logStart = net.log.length
  net.run(settled(target), 600_000)
  // a peer that saw the certificate before finishing its own aggregate fetches the certified state: wait for it
  net.run(() => net.honest().every(i => holdsCertifiedState(net, i)), 60_000)
  net.run(settled(target + 1), 600_000)
  for (const i of plan.absent) net.online[i] = true
  const ref = Array.from({ length: s.n }, (_, i) => i).find(i => !plan.absent.has(i) && net.online[i])!
  const ledger = net.peers[ref].ledger
  const model = ledger.entries.find(e => e.header.round === target)
  const metrics = model !== undefined && model.header.kind === 'update' ? s.evaluate(net.peers[ref].state.weights, net.peers[ref].stats) : null
  run.traffic.count(net.log)
  const record = roundRecord(r, plan, {
    model, judged: ledger.entries.find(e => e.header.round === target + 1 && e.header.kind === 'eval'), participants: model === undefined ? [] : model.header.survivors, metrics,
    // ε spent through this round's training: the snapshot taken before the next model round's, if it began
    epsilon: run.epsilonBefore.get(target + 2) ?? spentEpsilon(run.sites),
    traffic: run.traffic.sums([target, target + 1], s.modelBytes), phaseMs: phaseDurations(net, ref, logStart), reference: ref
  })
  return { record, ref }
}

/** Peer i holds the state its last update certificate certified. */
function holdsCertifiedState (net: MemNet, i: number): boolean {
  const last = net.peers[i].ledger.lastOf('update')
  return last === undefined || hex(stateHash(net.peers[i].state)) === hex(last.header.stateHash)
}

/**
 * Bytes by round and kind, counted where they are sent (as a node's metrics count them): each
 * message to the n - 1 others, each blob to every peer that fetched it.
 */
class TrafficLog {
  readonly byRound = new Map<number, Record<TrafficKind, number>>()
  readonly bytesPerNode: number[]
  readonly #n: number
  readonly #publisher = new Map<string, { peer: number, size: number, what: TrafficKind, round: number }>()
  #counted = 0
  constructor (n: number) { this.#n = n; this.bytesPerNode = new Array<number>(n).fill(0) }

  /** count what the log holds beyond what was counted before */
  count (log: MemNet['log']): void {
    for (const l of log.slice(this.#counted)) {
      if (l.action.type === 'broadcast') this.#sent(l.peer, l.action.round, 'gossip', l.action.wire.length * (this.#n - 1))
      if (l.action.type === 'publish-blob' && !this.#publisher.has(l.action.hash)) this.#publisher.set(l.action.hash, { peer: l.peer, size: l.action.data.length, what: l.action.what, round: l.action.round })
      if (l.action.type === 'fetch-blob') {
        const p = this.#publisher.get(l.action.hash)
        if (p !== undefined) this.#sent(p.peer, p.round, p.what, p.size)
      }
    }
    this.#counted = log.length
  }

  sums (rounds: number[], modelBytes: number): Traffic { return sumTraffic([this.byRound], rounds, modelBytes) }

  #sent (peer: number, round: number, kind: TrafficKind, bytes: number): void {
    this.bytesPerNode[peer] += bytes
    if (!this.byRound.has(round)) this.byRound.set(round, emptyTraffic())
    this.byRound.get(round)![kind] += bytes
  }
}

/** This process's peak resident memory, sampled every 200 ms and when asked. */
function peakRssSampler (): { sample: () => void, stop: () => number } {
  let peak = process.memoryUsage().rss
  const sample = (): void => { peak = Math.max(peak, process.memoryUsage().rss) }
  const timer = setInterval(sample, 200)
  timer.unref()
  return { sample, stop: () => { clearInterval(timer); sample(); return peak } }
}

/** Simulated time `peer` spent in each phase since log position `from`. */
function phaseDurations (net: MemNet, peer: number, from: number): Record<string, number> {
  const out: Record<string, number> = {}
  let phase: string | null = null
  let since = 0
  for (const l of net.log.slice(from)) {
    if (l.peer !== peer || l.action.type !== 'phase') continue
    if (phase !== null && PHASES.includes(phase)) out[phase] = (out[phase] ?? 0) + (l.at - since)
    phase = l.action.phase
    since = l.at
  }
  return out
}

/** The last hospital misbehaves: garbage bytes to everyone, and two different masked-input commitments. */
function installMalicious (net: MemNet, evil: number): void {
  const ctx = { consortium: net.peers[0].ledger.consortium, memberKeys: net.peers[0].ledger.memberKeys }
  net.tamper = (from, type, wire, to) => {
    if (from !== evil) return [wire]
    const garbage = Uint8Array.from({ length: 64 }, () => Math.floor(net.rand() * 256))
    if (type !== 'maskedInput') return [wire, garbage]
    const { env } = openMessage(wire, ctx)
    const body = env.body as MaskedInputBody
    const h = Uint8Array.from(body.vectorHash); h[0] ^= 1
    const other = sealMessage(net.identities[evil], { ...env, body: { ...body, vectorHash: h } } as Envelope)
    return to % 2 === 1 ? [other, garbage] : [wire, other]
  }
}
