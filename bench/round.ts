/**
 * bench/round: one in-process round of n = 10 peers over a d = 1,000,000-parameter update,
 * secure (the real protocol engine: keys, Shamir shares, double masking, proposals, acks,
 * reveals, unmasking, certificate) against the same round with plain summation (each peer
 * quantises and commits to its update; every peer sums the n vectors, applies FedAvg, hashes
 * the new state and signs it), side by side in one process. Both count the work of all n peers.
 * The secure round runs in both aggregation modes: all-to-all (every peer fetches, sums and
 * unmasks every masked vector) and sliced (each of --slices slices summed and unmasked by its
 * --per-slice aggregators, PROTOCOL.md §8). Last line: one JSON object.
 *
 * Usage: npm run bench:round [-- --n 10 --d 1000000 --reps 3 --slices 64 --per-slice 2]
 */
import { parseArgs } from 'node:util'
import { hash as sha256 } from '../src/protocol/codec.ts'
import { NodeIdentity, seededRandom, encodeWeightedUpdate, sumVectors, decodeWeightedAverage } from '../src/privacy/index.ts'
import { MemNet } from '../src/protocol/memnet.ts'
import { strategyFor } from '../src/protocol/strategy/index.ts'
import { stateHash } from '../src/protocol/model.ts'
import { describeMaskKernel, installMaskKernel } from '../src/node/mask-kernel.ts'

const maskKernel = installMaskKernel() // as a node does: the masks' keystreams through the native kernel where it is built

const { values } = parseArgs({ options: { n: { type: 'string', default: '10' }, d: { type: 'string', default: '1000000' }, reps: { type: 'string', default: '3' }, slices: { type: 'string', default: '64' }, 'per-slice': { type: 'string', default: '2' } } })
const slicing = { slices: Number(values.slices), perSlice: Number(values['per-slice']) }
type Mode = 'all-to-all' | 'sliced'
const n = Number(values.n)
const d = Number(values.d)
const reps = Number(values.reps)

const inputs = Array.from({ length: n }, (_, i) => Float32Array.from({ length: d }, (_, j) => Math.sin(i * 31 + j) * 0.01))
const input = (i: number) => ({ values: inputs[i], count: 1000 + i })

/** CPU time of all peers' event handlers, by the phase the handling peer was in when the event came */
const phaseMs: Record<Mode, Map<string, number>> = { 'all-to-all': new Map(), sliced: new Map() }
const phaseRuns: Record<Mode, number> = { 'all-to-all': 0, sliced: 0 }

function timePhases (net: MemNet, phaseMs: Map<string, number>): void {
  for (const peer of net.peers) {
    const p = peer as unknown as Record<string, (...args: unknown[]) => unknown>
    for (const method of ['start', 'receive', 'receiveBlob', 'tick', 'setInput']) {
      const original = p[method].bind(peer)
      p[method] = (...args: unknown[]) => {
        const phase = peer.round?.phase ?? 'between rounds'
        const t = performance.now()
        try { return original(...args) } finally { phaseMs.set(phase, (phaseMs.get(phase) ?? 0) + performance.now() - t) }
      }
    }
  }
}

function secureRound (mode: Mode, seed: number, byPhase = false): number {
  const net = new MemNet({ n, seed, modelSize: d, lastRound: 0, input, params: p => { if (mode === 'sliced') p.slicing = { ...slicing } } })
  if (byPhase) { timePhases(net, phaseMs[mode]); phaseRuns[mode]++ }
  const t0 = performance.now()
  net.startAll()
  net.run(() => net.peers.every(p => p.ledger.entries.length === 1))
  const ms = performance.now() - t0
  if (!net.peers.every(p => p.ledger.entries.length === 1)) throw new Error(`secure round (${mode}) did not complete`)
  return ms
}

function plainRound (seed: number): number {
  const net = new MemNet({ n, seed, modelSize: d, lastRound: 0, input }) // same manifest and identities, not timed
  const q = net.manifest.params.quantization
  const rng = seededRandom(new Uint8Array(32).fill(seed))
  const ids: NodeIdentity[] = net.identities
  const t0 = performance.now()
  const vectors = inputs.map((x, i) => encodeWeightedUpdate(x, input(i).count, q, rng))
  const commitments = vectors.map(v => sha256(new Uint8Array(v.buffer)))
  for (let peer = 0; peer < n; peer++) {
    const sum = sumVectors(vectors)
    const { mean } = decodeWeightedAverage(sum, n, q)
    const state = strategyFor('fedavg').apply(net.initial, mean, net.manifest.params.aggregation)
    ids[peer].sign('round-certificate', sha256(new Uint8Array([...stateHash(state), ...commitments[peer]])))
  }
  return performance.now() - t0
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
plainRound(99); secureRound('all-to-all', 99); secureRound('sliced', 99) // warm-up
const plain: number[] = []
const secure: Record<Mode, number[]> = { 'all-to-all': [], sliced: [] }
for (let r = 0; r < reps; r++) {
  plain.push(plainRound(r + 1))
  for (const mode of ['all-to-all', 'sliced'] as const) secure[mode].push(secureRound(mode, r + 1, true))
}
const p = median(plain)
const s = { 'all-to-all': median(secure['all-to-all']), sliced: median(secure.sliced) }
console.log(`n=${n} peers, d=${d}, median of ${reps}, all peers' work in one process; ${describeMaskKernel(maskKernel)}`)
console.log(`plain summation round      ${p.toFixed(0)} ms (${(p / n).toFixed(1)} ms per peer)`)
// what each phase's handlers cost (all peers, mean over the runs): work is counted in the phase the
// peer was in when the event that caused it arrived, so masking shows under share-keys (the
// masking set arrives there) and unmasking under unmask (the last reveal)
const phases = (mode: Mode) => Object.fromEntries([...phaseMs[mode]].map(([k, v]) => [k, +(v / phaseRuns[mode]).toFixed(1)]))
for (const mode of ['all-to-all', 'sliced'] as const) {
  console.log(`secure round, ${mode.padEnd(10)}  ${s[mode].toFixed(0)} ms (${(s[mode] / n).toFixed(1)} ms per peer): ${(s[mode] / p).toFixed(2)}x plain (target <= 1.5x)`)
  console.log(`  by phase (ms, all peers): ` + Object.entries(phases(mode)).map(([k, v]) => `${k} ${v}`).join(', '))
}
console.log(JSON.stringify({
  bench: 'round', n, d, reps, slicing, masks: maskKernel.active ? 'native' : 'js', plain_ms: +p.toFixed(1),
  secure_ms: +s['all-to-all'].toFixed(1), ratio: +(s['all-to-all'] / p).toFixed(3), secure_phase_ms: phases('all-to-all'),
  sliced_ms: +s.sliced.toFixed(1), sliced_ratio: +(s.sliced / p).toFixed(3), sliced_phase_ms: phases('sliced')
}))
