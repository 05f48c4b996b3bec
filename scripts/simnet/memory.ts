/**
 * The in-process transport: every hospital is a ProtocolPeer on the in-memory network
 * (src/protocol/memnet.ts) in simulated time, with real training (Site). Fast, reproducible from
 * the seed, and able to hold many peers (20 and more) in one process; it also offers the faults
 * that need control of the wire: latency, bandwidth, a malicious hospital.
 */
import { PrivacyBudget, seededRandom } from '../../src/privacy/index.ts'
import { MemNet } from '../../src/protocol/memnet.ts'
import { hex } from '../../src/protocol/codec.ts'
import { openMessage, sealMessage, type Envelope, type MaskedInputBody } from '../../src/protocol/messages.ts'
import { stateHash, initialState } from '../../src/protocol/model.ts'
import { Site } from '../../src/training/site.ts'
import { roundKind, modelRoundOf, validationCounts, decodeValidation, noLongerImproving } from '../../src/protocol/validation.ts'
import { CRASH_VICTIM, faultsOfRound } from './faults.ts'
import { PHASES, progressLine, emptyTraffic, hospitalData, chosenRound, type FederationResult, type RoundRecord, type SimSetup } from './federation.ts'
import type { TrafficKind } from '../../src/node/metrics.ts'

export async function runMemoryFederation (s: SimSetup): Promise<FederationResult> {
  const { n, rounds } = s
  const init = s.initialWeights
  const net: MemNet = new MemNet({
    n, seed: s.seed, initialWeights: init, lastRound: 2 * rounds, latencyMs: s.latencyMs, bandwidthBytesPerMs: s.bandwidthBytesPerMs,
    kindOf: roundKind,
    params: p => {
      p.model = { id: s.modelId, version: '1', seed: s.seed, initialHash: hex(stateHash(initialState(init))), size: init.length, input: { size: s.data.train.height, channels: s.data.train.channels }, classes: s.data.train.classes.length }
      p.quantization.maxSampleCount = Math.max(...s.parts.map(x => x.length))
      p.timeouts = { phaseMs: 5_000, roundMs: 120_000 }
      p.training = { ...s.training }
      p.aggregation = { ...p.aggregation, ...s.aggregation }
      p.validation.patience = s.patience
      if (s.slicing !== null) p.slicing = { ...s.slicing }
      if (s.dp !== null) p.dp = { enabled: true, epsilon: s.dp.epsilon, delta: 1e-5, noiseMultiplier: s.dp.noise, clipNorm: s.dp.clip }
    },
    input: (member, round, kind): { values: ArrayLike<number>, count: number } => {
      const site = sites[member]
      if (kind === 'stats') return site.statsInput()
      if (site.norm === undefined && net.peers[member].stats !== null) site.useStatistics(net.peers[member].stats!)
      if (kind === 'eval') {
        const p = site.predictions(net.peers[member].state.weights, 'val')!
        return { values: validationCounts(p.probs, p.labels, layout), count: p.labels.length }
      }
      // the next round's training starts as soon as a round is certified: note ε before it
      if (!epsilonBefore.has(round)) epsilonBefore.set(round, sites.map(x => x.options.budget?.spent.epsilon ?? 0))
      return site.update(net.peers[member].state.weights, round, modelRoundOf(round))
    }
  })
  // member i of the manifest (canonical order) is hospital i
  const sites: Site[] = []
  const epsilonBefore = new Map<number, number[]>()
  const layout = { classes: s.data.train.classes.length, bins: 1000 }
  for (let i = 0; i < n; i++) {
    const spec = {
      model: { id: s.modelId, seed: s.seed }, input: { size: s.data.train.height, channels: s.data.train.channels }, classes: s.data.train.classes.length,
      schedule: s.training.schedule === 'constant' ? { kind: 'constant' as const } : { kind: s.training.schedule, rounds: s.training.rounds },
      dp: s.dp === null ? null : { noiseMultiplier: s.dp.noise, clipNorm: s.dp.clip, plannedRounds: rounds }
    }
    sites.push(await Site.open(spec, { ...hospitalData(s, i), test: null }, {
      epochs: s.training.epochs, batchSize: s.training.batchSize, learningRate: s.training.learningRate, classWeighting: s.training.classWeighting, priorCorrection: s.training.priorCorrection, seed: s.seedBytes(100 + i), budget: s.dp === null ? null : new PrivacyBudget(s.dp.epsilon, 1e-5),
      // a simulation repeats: DP noise from the run's seed (real nodes draw it from the CSPRNG)
      noiseRandom: seededRandom(s.seedBytes(500 + i))
    }))
  }
  if (s.malicious) installMalicious(net, n - 1)
  const victim = CRASH_VICTIM
  const records: RoundRecord[] = []
  let chosen: FederationResult['chosen'] = null
  // bytes by round and kind, counted where they are sent: each message to the n - 1 others, each
  // blob to every peer that fetched it (as a node's metrics count them)
  const trafficByRound = new Map<number, Record<TrafficKind, number>>()
  const bytesPerNode = new Array<number>(n).fill(0)
  const publisher = new Map<string, { peer: number, size: number, what: TrafficKind, round: number }>()
  const sent = (peer: number, round: number, kind: TrafficKind, bytes: number): void => {
    bytesPerNode[peer] += bytes
    if (!trafficByRound.has(round)) trafficByRound.set(round, emptyTraffic())
    trafficByRound.get(round)![kind] += bytes
  }
  let counted = 0
  const count = (): void => {
    for (const l of net.log.slice(counted)) {
      if (l.action.type === 'broadcast') sent(l.peer, l.action.round, 'gossip', l.action.wire.length * (n - 1))
      if (l.action.type === 'publish-blob' && !publisher.has(l.action.hash)) publisher.set(l.action.hash, { peer: l.peer, size: l.action.data.length, what: l.action.what, round: l.action.round })
      if (l.action.type === 'fetch-blob') {
        const p = publisher.get(l.action.hash)
        if (p !== undefined) sent(p.peer, p.round, p.what, p.size)
      }
    }
    counted = net.log.length
  }
  const traffic = (rounds: number[]): Pick<RoundRecord, 'bytes' | 'bytesByKind' | 'modelSizes'> => {
    const byKind = emptyTraffic()
    for (const r of rounds) { const x = trafficByRound.get(r); if (x !== undefined) for (const k of Object.keys(byKind) as TrafficKind[]) byKind[k] += x[k] }
    const bytes = Object.values(byKind).reduce((a, b) => a + b, 0)
    return { bytes, bytesByKind: { ...byKind }, modelSizes: bytes / s.modelBytes }
  }
  const started = Date.now()
  let peakRss = process.memoryUsage().rss
  const rssTimer = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage().rss) }, 200)
  rssTimer.unref()
  net.startAll()
  // model round r is protocol round 2r - 1; the eval round that judges it is 2r
  for (let r = 1; r <= rounds; r++) {
    // dropouts: this round's absentees miss the whole round and its eval round, then come back
    const faults = faultsOfRound(s, r)
    const absent = new Set(faults.filter(f => f.fault === 'offline').map(f => f.hospital))
    const target = 2 * r - 1
    const settled = (round: number) => (): boolean => net.honest().every((i: number) => net.peers[i].ledger.lastRound >= round || net.peers[i].round === null || net.peers[i].round!.number > round)
    if (faults.some(f => f.fault === 'crash')) { net.online[victim] = false; s.out(`round ${r}: hospital ${victim} crashes`) }
    if (faults.some(f => f.fault === 'restart')) {
      // it restarts: certificates and the certified state from another member, verified before use
      net.online[victim] = true
      net.serveLedger(0, victim)
      net.flush(victim)
      s.out(`round ${r}: hospital ${victim} restarts, verifies ${net.peers[0].ledger.entries.length} certificates and catches up`)
    }
    for (const i of absent) net.online[i] = false
    const logStart = net.log.length
    net.run(settled(target), 600_000)
    // a peer that saw the certificate before finishing its own aggregate fetches the certified state: wait for it
    const current = (i: number): boolean => {
      const last = net.peers[i].ledger.lastOf('update')
      return last === undefined || hex(stateHash(net.peers[i].state)) === hex(last.header.stateHash)
    }
    net.run(() => net.honest().every(current), 60_000)
    net.run(settled(target + 1), 600_000)
    for (const i of absent) net.online[i] = true
    const ref = Array.from({ length: n }, (_, i) => i).find(i => !absent.has(i) && net.online[i])!
    const entries = net.peers[ref].ledger.entries.filter(e => e.header.round === target)
    const certified = entries.length > 0
    const metrics = certified && entries[0].header.kind === 'update' ? s.evaluate(net.peers[ref].state.weights, net.peers[ref].stats) : null
    const judged = net.peers[ref].ledger.entries.find(e => e.header.round === target + 1 && e.header.kind === 'eval')
    count()
    // ε spent through this round's training: the snapshot taken before the next model round's, if it began
    const eps = epsilonBefore.get(target + 2) ?? sites.map(x => x.options.budget?.spent.epsilon ?? 0)
    peakRss = Math.max(peakRss, process.memoryUsage().rss)
    const record: RoundRecord = {
      round: r, protocolRounds: [target, target + 1], participants: certified ? entries[0].header.survivors : [], metrics,
      validation: judged === undefined ? null : decodeValidation(judged.header.extra), epsilon: eps, ...traffic([target, target + 1]),
      phaseMs: phaseDurations(net, ref, logStart), offline: [...absent].sort((a, b) => a - b), faults, reference: ref,
      stateHash: certified && entries[0].header.kind === 'update' ? hex(entries[0].header.stateHash) : null
    }
    records.push(record)
    // keep the consortium's model as the rounds go: the best by pooled validation so far
    if (metrics !== null && chosenRound(records) === records.length - 1) chosen = { weights: Float32Array.from(net.peers[ref].state.weights), stats: net.peers[ref].stats }
    s.out(progressLine(record, n, s.dp !== null))
    if (noLongerImproving(net.peers[ref].ledger, s.patience)) { s.out(`validation AUC has not improved for ${s.patience} round(s): the consortium stops early`); break }
  }
  clearInterval(rssTimer)
  count()
  for (const r of records) Object.assign(r, traffic(r.protocolRounds))
  peakRss = Math.max(peakRss, process.memoryUsage().rss)
  // safety: no two peers hold different certificates for the same round (a peer that missed the
  // last rounds holds a prefix of the others' ledger)
  const byRound = new Map<number, Set<string>>()
  for (const p of net.peers) for (const e of p.ledger.entries) { if (!byRound.has(e.header.round)) byRound.set(e.header.round, new Set()); byRound.get(e.header.round)!.add(hex(e.hash)) }
  const longest = Math.max(...net.peers.map(p => p.ledger.entries.length))
  return {
    records, bytesPerNode, seconds: (Date.now() - started) / 1000,
    consistent: [...byRound.values()].every(x => x.size === 1),
    longest, atHead: net.peers.filter(p => p.ledger.entries.length === longest).length,
    peakRssMB: Math.round(peakRss / 1e6), peakRssPerNodeMB: Math.round(peakRss / 1e6 / n),
    rejections: net.log.filter(l => l.action.type === 'reject').length,
    epsilon: sites.map(x => x.options.budget?.spent.epsilon ?? 0),
    transport: 'in-process (in-memory network, simulated time)',
    chosen
  }
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
