/**
 * medmesh simnet: a whole consortium on one machine, on real medical images, through the same
 * protocol and training code as production: real secure aggregation, certificates and DP-SGD.
 *
 * This version drives the peers in one process over the in-memory network (src/protocol/memnet.ts,
 * simulated time); the training is real. Alongside the federation it trains the baselines of the
 * same run — centralised on the union of the data, and each hospital alone — and writes a report.
 */
import { parseArgs } from 'node:util'
import { join } from 'node:path'
import { PrivacyBudget } from '../../src/privacy/index.ts'
import { MemNet } from '../../src/protocol/memnet.ts'
import { hex } from '../../src/protocol/codec.ts'
import { openMessage, sealMessage, type Envelope, type MaskedInputBody } from '../../src/protocol/messages.ts'
import { stateHash, initialState } from '../../src/protocol/model.ts'
import { selectBackend, describeBackend } from '../../src/training/backend.ts'
import { loadMedMnist, BUNDLED_PNEUMONIAMNIST } from '../../src/training/data/npz.ts'
import { subset, classCounts } from '../../src/training/data/dataset.ts'
import { partitionDirichlet, partitionIid } from '../../src/training/data/partition.ts'
import { buildModel, flattenWeights, setFlatWeights, MODEL_IDS, type ModelId } from '../../src/training/models.ts'
import { Site } from '../../src/training/site.ts'
import { LocalTrainer } from '../../src/training/trainer.ts'
import { normalisation, pixelStats } from '../../src/training/data/stats.ts'
import { formatMetrics, type ClinicalMetrics } from '../../src/training/metrics.ts'
import { lineChart, barChart, writeReport } from './report.ts'

export const simnetHelp = `Usage: medmesh simnet [options]

Simulate a consortium on one machine: real training, real secure aggregation and certificates.

  --nodes N            hospitals (default 5)
  --rounds R           model rounds (default 10)
  --dataset PATH       a MedMNIST .npz (default: the bundled PneumoniaMNIST)
  --partition P        iid | dirichlet (default dirichlet)   --alpha A (default 1.0)
  --model ID           ${MODEL_IDS.join(' | ')} (default medmesh/cnn-small)
  --epochs E           local epochs per round (default 1)   --batch-size B (default 32)
  --dp-epsilon E       DP-SGD with this ε budget per hospital (default: off)   --dp-noise S (default 1.0)
  --dropout P          fraction of hospitals offline in each round (default 0)
  --kill-at K          hospital 1 crashes at the start of round K and comes back two rounds later,
                       catching up from another member's ledger (default: never)
  --malicious          the last hospital sends garbage and equivocates on its masked input
  --latency MS         network delay per message (default 0; plus up to 20 ms jitter)
  --bandwidth MBPS     link speed for masked vectors and states (default: unlimited)
  --seed N             the same seed gives the same figures (default 1)
  --no-baselines       skip the centralised and local-only baselines
  --out DIR            report folder (default reports/simnet-<seed>)`

interface RoundRecord {
  round: number
  participants: number[]
  metrics: ClinicalMetrics | null
  epsilon: number[]
  bytes: number
  /** simulated milliseconds spent in each phase, as seen by one peer */
  phaseMs: Record<string, number>
}

export async function runSimnet (args: string[], out: (s: string) => void = s => process.stdout.write(s + '\n')): Promise<number> {
  const { values } = parseArgs({
    args, strict: true,
    options: {
      nodes: { type: 'string', default: '5' }, rounds: { type: 'string', default: '10' }, dataset: { type: 'string' }, partition: { type: 'string', default: 'dirichlet' },
      alpha: { type: 'string', default: '1.0' }, model: { type: 'string', default: 'medmesh/cnn-small' }, epochs: { type: 'string', default: '1' }, 'batch-size': { type: 'string', default: '32' },
      'dp-epsilon': { type: 'string' }, 'dp-noise': { type: 'string', default: '1.0' }, dropout: { type: 'string', default: '0' }, seed: { type: 'string', default: '1' },
      'no-baselines': { type: 'boolean', default: false }, out: { type: 'string' }, 'kill-at': { type: 'string' }, malicious: { type: 'boolean', default: false },
      latency: { type: 'string', default: '0' }, bandwidth: { type: 'string' }
    }
  })
  const n = Number(values.nodes); const rounds = Number(values.rounds); const epochs = Number(values.epochs); const batchSize = Number(values['batch-size'])
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
  const seedBytes = (k: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (seed * 131 + k * 17 + i) & 0xff)

  const backend = await selectBackend('auto')
  out(describeBackend(backend))
  const data = loadMedMnist(values.dataset ?? BUNDLED_PNEUMONIAMNIST)
  const parts = values.partition === 'iid' ? partitionIid(data.train.labels.length, n, seedBytes(1)) : partitionDirichlet(data.train.labels, n, alpha, seedBytes(1))
  out(`${n} hospitals, ${values.partition === 'iid' ? 'IID' : `Dirichlet(α=${alpha})`} split of ${data.train.labels.length} training images: ${parts.map(p => `${p.length} (${classCounts(subset(data.train, p)).join('/')})`).join(', ')}`)

  const spec = { id: modelId, height: data.train.height, width: data.train.width, classes: data.train.classes.length, seed }
  const init = flattenWeights(buildModel(spec))
  const net: MemNet = new MemNet({
    n, seed, initialWeights: init, lastRound: rounds, latencyMs: latency, bandwidthBytesPerMs: bandwidth,
    kindOf: r => r === 0 ? 'stats' : 'update',
    params: p => {
      p.model = { id: modelId, version: '1', seed, initialHash: hex(stateHash(initialState(init))), size: init.length }
      p.quantization.maxSampleCount = Math.max(...parts.map(x => x.length))
      p.timeouts = { phaseMs: 5_000, roundMs: 120_000 }
      if (dpEpsilon !== null) p.dp = { enabled: true, epsilon: dpEpsilon, delta: 1e-5, noiseMultiplier: Number(values['dp-noise']), clipNorm: 1 }
    },
    input: (member, round, kind): { values: ArrayLike<number>, count: number } => {
      const site = sites[member]
      if (kind === 'stats') return site.statsInput()
      if (site.norm === undefined && net.peers[member].stats !== null) site.useStatistics(net.peers[member].stats!)
      // the next round's training starts as soon as a round is certified: note ε before it
      if (!epsilonBefore.has(round)) epsilonBefore.set(round, sites.map(x => x.options.budget?.spent.epsilon ?? 0))
      return site.update(net.peers[member].state, round)
    }
  })
  // member i of the manifest (canonical order) is hospital i
  const sites: Site[] = []
  const epsilonBefore = new Map<number, number[]>()
  for (let i = 0; i < n; i++) {
    sites.push(await Site.open(net.manifest, { train: subset(data.train, parts[i]), val: null, test: null }, {
      epochs, batchSize, learningRate: 1e-3, seed: seedBytes(100 + i), budget: dpEpsilon === null ? null : new PrivacyBudget(dpEpsilon, 1e-5)
    }))
  }
  if (values.malicious === true) installMalicious(net, n - 1)
  const evaluator = sites[0]
  const victim = 1
  const records: RoundRecord[] = []
  let bytesSoFar = 0
  const bytesPerNode = new Array<number>(n).fill(0)
  const publisher = new Map<string, { peer: number, size: number }>()
  const started = Date.now()
  let peakRss = process.memoryUsage().rss
  const rssTimer = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage().rss) }, 200)
  rssTimer.unref()
  net.startAll()
  for (let r = 1; r <= rounds; r++) {
    // dropouts: this round's absentees miss the whole round, then come back
    const absent = new Set<number>()
    const k = Math.floor(dropout * n)
    for (let j = 0; absent.size < k && j < 10 * n; j++) absent.add(Math.floor(net.rand() * n))
    const target = r
    const done = (): boolean => net.honest().every((i: number) => net.peers[i].ledger.lastRound >= target || net.peers[i].current === null || net.peers[i].current!.round > target)
    if (killAt !== null && r === killAt) { absent.delete(victim); net.online[victim] = false; out(`round ${r}: hospital ${victim} crashes`) }
    if (killAt !== null && r === killAt + 2) {
      // it restarts: certificates and the certified state from another member, verified before use
      const donor = net.peers[0]
      const last = [...donor.ledger.entries].reverse().find(e => e.header.k === 'update')
      net.online[victim] = true
      net.peers[victim].catchUp(donor.ledger.entries.map(e => e.certificate), last === undefined ? null : net.blobs.get(hex(last.header.mh)) ?? null, net.now)
      net.flush(victim)
      out(`round ${r}: hospital ${victim} restarts, verifies ${donor.ledger.entries.length} certificates and catches up`)
    }
    for (const i of absent) net.online[i] = false
    const logStart = net.log.length
    net.run(done, 600_000)
    // a peer that saw the certificate before finishing its own aggregate fetches the certified state: wait for it
    const current = (i: number): boolean => {
      const last = [...net.peers[i].ledger.entries].reverse().find(e => e.header.k === 'update')
      return last === undefined || hex(stateHash(net.peers[i].state)) === hex(last.header.mh)
    }
    net.run(() => net.honest().every(current), 60_000)
    for (const i of absent) net.online[i] = true
    const ref = Array.from({ length: n }, (_, i) => i).find(i => !absent.has(i) && net.online[i])!
    const entries = net.peers[ref].ledger.entries.filter(e => e.header.r === target)
    const phaseMs = phaseDurations(net, ref, logStart)
    const certified = entries.length > 0
    let metrics: ClinicalMetrics | null = null
    if (certified && entries[0].header.k === 'update') {
      if (evaluator.norm === undefined && net.peers[ref].stats !== null) evaluator.useStatistics(net.peers[ref].stats!)
      setFlatWeights(evaluator.model, net.peers[ref].state.weights)
      metrics = evaluator.trainer.evaluate(data.test, evaluator.norm)
    }
    for (const l of net.log.slice(logStart)) {
      // what each hospital sent: every message to the n - 1 others, and each blob to every peer that fetched it
      if (l.action.type === 'broadcast') bytesPerNode[l.peer] += l.action.wire.length * (n - 1)
      if (l.action.type === 'publish-blob' && !publisher.has(l.action.hash)) publisher.set(l.action.hash, { peer: l.peer, size: l.action.data.length })
      if (l.action.type === 'fetch-blob') {
        const p = publisher.get(l.action.hash)
        if (p !== undefined) bytesPerNode[p.peer] += p.size
      }
    }
    const bytes = bytesPerNode.reduce((a, b) => a + b, 0) - bytesSoFar
    bytesSoFar += bytes
    // ε spent through this round's training: the snapshot taken before the next round's, if it began
    const eps = epsilonBefore.get(target + 1) ?? sites.map(s => s.options.budget?.spent.epsilon ?? 0)
    const participants = certified ? entries[0].header.u : []
    peakRss = Math.max(peakRss, process.memoryUsage().rss)
    records.push({ round: target, participants, metrics, epsilon: eps, bytes, phaseMs })
    out(`round ${target}: ${certified ? `certified, ${participants.length}/${n} hospitals` : 'aborted'}${absent.size > 0 ? ` (${absent.size} offline)` : ''}` +
      `${metrics !== null ? ` — test ${formatMetrics(metrics)}` : ''}${dpEpsilon !== null ? ` — ε ${eps.map(e => e.toFixed(2)).join('/')}` : ''} — ${(bytes / 1e6).toFixed(1)} MB sent` +
      ` — phases ${Object.entries(phaseMs).map(([p, ms]) => `${p} ${ms} ms`).join(', ')}`)
  }
  const federatedSeconds = (Date.now() - started) / 1000
  peakRss = Math.max(peakRss, process.memoryUsage().rss)
  // safety: no two peers hold different certificates for the same round (a peer that missed the
  // last rounds holds a prefix of the others' ledger)
  const byRound = new Map<number, Set<string>>()
  for (const p of net.peers) for (const e of p.ledger.entries) { if (!byRound.has(e.header.r)) byRound.set(e.header.r, new Set()); byRound.get(e.header.r)!.add(hex(e.hash)) }
  const consistent = [...byRound.values()].every(s => s.size === 1)
  const longest = Math.max(...net.peers.map(p => p.ledger.entries.length))
  const atHead = net.peers.filter(p => p.ledger.entries.length === longest).length
  const heads = { size: consistent ? 1 : 2 }
  out(`federation: ${longest} certificates; ${consistent ? 'no conflicting certificates on any peer' : 'CONFLICTING CERTIFICATES'}; ${atHead} of ${n} peers at the head; ${federatedSeconds.toFixed(0)} s`)

  // baselines of the same run
  const central: Array<ClinicalMetrics | null> = []
  const local: Array<Array<ClinicalMetrics | null>> = []
  if (values['no-baselines'] !== true) {
    const st = pixelStats(data.train)
    const norm = normalisation([st.mean, st.meanSquare])
    const cm = buildModel(spec); const ct = new LocalTrainer(cm)
    for (let r = 1; r <= rounds; r++) {
      ct.train(data.train, { epochs, batchSize, learningRate: 1e-3, seed: seedBytes(200 + r), augment: true, classWeighting: 'balanced', normalisation: norm })
      central.push(ct.evaluate(data.test, norm))
    }
    out(`centralised baseline after ${rounds} epoch(s): ${formatMetrics(central[central.length - 1]!)}`)
    for (let i = 0; i < n; i++) {
      const lm = buildModel(spec); const lt = new LocalTrainer(lm)
      const part = subset(data.train, parts[i])
      const s = pixelStats(part); const ln = normalisation([s.mean, s.meanSquare])
      const series: Array<ClinicalMetrics | null> = []
      for (let r = 1; r <= rounds; r++) {
        lt.train(part, { epochs, batchSize, learningRate: 1e-3, seed: seedBytes(300 + 10 * i + r), augment: true, classWeighting: 'balanced', normalisation: ln })
        series.push(lt.evaluate(data.test, ln))
      }
      local.push(series)
      lt.dispose(); lm.dispose()
      out(`hospital ${i} alone: ${formatMetrics(series[series.length - 1]!)}`)
    }
    ct.dispose(); cm.dispose()
  }

  const fed = records.map(r => r.metrics)
  const finalFed = [...fed].reverse().find(m => m !== null) ?? null
  const series = (pick: (m: ClinicalMetrics) => number) => [
    { name: 'federated (medmesh)', values: fed.map(m => m === null ? null : pick(m)) },
    ...(central.length > 0 ? [{ name: 'centralised', values: central.map(m => m === null ? null : pick(m)) }] : []),
    ...local.map((s, i) => ({ name: `hospital ${i} alone`, values: s.map(m => m === null ? null : pick(m)) }))
  ]
  const charts = [
    lineChart('Test ROC-AUC per round', series(m => m.auc), 0.5, 1, 'AUC'),
    lineChart('Test accuracy per round', series(m => m.accuracy), 0.3, 1, 'accuracy'),
    barChart('Simulated time per phase (all rounds)', PHASES, PHASES.map(p => records.reduce((a, r) => a + (r.phaseMs[p] ?? 0), 0) / 1000), 's'),
    barChart('Bytes sent per hospital (whole run)', bytesPerNode.map((_, i) => `hospital ${i}`), bytesPerNode.map(b => b / 1e6), 'MB'),
    ...(dpEpsilon !== null ? [barChart('ε spent per hospital', sites.map((_, i) => `hospital ${i}`), sites.map(s => s.options.budget?.spent.epsilon ?? 0), '')] : [])
  ]
  const summary = [
    `${n} hospitals, ${rounds} rounds, model ${modelId}, ${values.partition} partition${values.partition === 'iid' ? '' : ` (α=${alpha})`}, dropout ${dropout}, seed ${seed}, backend ${backend.name}`,
    finalFed !== null ? `federated final test: ${formatMetrics(finalFed)}` : 'no certified model round',
    ...(central.length > 0 ? [`centralised final test: ${formatMetrics(central[central.length - 1]!)}`] : []),
    `rounds certified: ${records.filter(r => r.participants.length > 0).length} of ${rounds}; no conflicting certificates: ${consistent}; ${atHead} of ${n} peers at the head`,
    `peak memory ${Math.round(peakRss / 1e6)} MB for the whole process (${Math.round(peakRss / 1e6 / n)} MB per simulated hospital); ${net.log.filter(l => l.action.type === 'reject').length} rejected inputs logged`,
    ...(dpEpsilon !== null ? [`DP-SGD: ε budget ${dpEpsilon} per hospital, spent ${sites.map(s => (s.options.budget?.spent.epsilon ?? 0).toFixed(2)).join(', ')}`] : [])
  ]
  const paths = writeReport(outDir, {
    config: { nodes: n, rounds, model: modelId, partition: values.partition, alpha, epochs, batchSize, dpEpsilon, dropout, seed, backend: backend.name },
    partition: parts.map(p => ({ size: p.length, classes: classCounts(subset(data.train, p)) })),
    rounds: records, centralised: central, local, bytesPerNode, federatedSeconds, agree: heads.size === 1,
    peakRssMB: Math.round(peakRss / 1e6), peakRssPerNodeMB: Math.round(peakRss / 1e6 / n), rejections: net.log.filter(l => l.action.type === 'reject').length
  }, charts, summary)
  out(`report: ${paths.html} and ${paths.json}`)
  return heads.size === 1 ? 0 : 1
}

const PHASES = ['advertise', 'share-keys', 'masked-input', 'survivor-set', 'unmask', 'commit']

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
    const body = env.b as MaskedInputBody
    const h = Uint8Array.from(body.h); h[0] ^= 1
    const other = sealMessage(net.identities[evil], { ...env, b: { ...body, h } } as Envelope)
    return to % 2 === 1 ? [other, garbage] : [wire, other]
  }
}
