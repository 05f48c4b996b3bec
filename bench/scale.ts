/**
 * bench/scale: what one secure round costs each peer as the consortium grows. One round of the
 * real protocol engine over the in-process network (MemNet) for n = 5, 10, 20, 50 (and one sliced
 * round of 100 peers, the most a manifest admits), every byte counted where it goes: each broadcast message n − 1 times (sent by
 * its author, received by every other member), each blob once per fetch (sent by its publisher,
 * received by the fetcher). Reported per peer and divided by the model's size as uint32 (4·d
 * bytes), mean and largest, with the round's wall time and the process's peak memory.
 *
 * The largest sender is the round's proposer: its proposal carries the members' signed messages,
 * share-keys among them, each with n encrypted shares, so it grows as n² and goes to n − 1 peers.
 *
 * Both modes side by side: all-to-all (every member fetches every masked vector: the figure grows
 * as n − 1) and sliced (docs/PROTOCOL.md §8: `--slices` slices, each fetched, summed and unmasked
 * by `--per-slice` members, and the sums fetched by everyone).
 * Last line: one JSON object.
 *
 * Usage: npm run bench:scale [-- --d 10000 --sizes 5,10,20,50 --big 100 --modes all-to-all,sliced --slices 64 --per-slice 2]
 */
import { parseArgs } from 'node:util'
import { MemNet } from '../src/protocol/memnet.ts'
import { installMaskKernel } from '../src/node/mask-kernel.ts'

installMaskKernel() // as a node does (it changes no byte sent, only the time a round takes)

const { values } = parseArgs({ options: { d: { type: 'string', default: '10000' }, sizes: { type: 'string', default: '5,10,20,50' }, big: { type: 'string', default: '100' }, modes: { type: 'string', default: 'all-to-all,sliced' }, slices: { type: 'string', default: '64' }, 'per-slice': { type: 'string', default: '2' } } })
type Mode = 'all-to-all' | 'sliced'
const modes = values.modes!.split(',') as Mode[]
if (modes.some(m => m !== 'all-to-all' && m !== 'sliced')) throw new Error('--modes lists all-to-all and/or sliced')
const slicing = { slices: Number(values.slices), perSlice: Number(values['per-slice']) }
const d = Number(values.d)
const sizes = values.sizes!.split(',').map(Number)
const big = Number(values.big)

interface ScaleRow { mode: Mode, n: number, d: number, ms: number, sent_per_model: { mean: number, max: number }, received_per_model: { mean: number, max: number }, received_blobs_per_model: number, rss_mb: number, gossip_received_kb_by_type: Record<string, number> }

function round (n: number, mode: Mode): ScaleRow {
  const input = (i: number) => ({ values: Float32Array.from({ length: d }, (_, j) => Math.sin(i * 31 + j) * 0.01), count: 100 + i })
  const net = new MemNet({ n, seed: 1, modelSize: d, lastRound: 0, input, params: p => { p.timeouts = { phaseMs: 2_000, roundMs: 60_000 }; if (mode === 'sliced') p.slicing = slicing } })
  const t0 = performance.now()
  net.startAll()
  net.run(() => net.peers.every(p => p.ledger.entries.length === 1), 120_000)
  const ms = performance.now() - t0
  if (!net.peers.every(p => p.ledger.entries.length === 1)) throw new Error(`the round of ${n} peers did not complete`)
  const sent = new Array<number>(n).fill(0)
  const received = new Array<number>(n).fill(0)
  let blobBytes = 0
  /** broadcast bytes a peer receives on average, by message type */
  const gossip: Record<string, number> = {}
  // a blob every member publishes (the new state) is served by its publishers in turn, as a
  // node's fetches spread over the peers that have it
  const publishers = new Map<string, number[]>()
  const served = new Map<string, number>()
  for (const { peer, action } of net.log) if (action.type === 'publish-blob') publishers.set(action.hash, [...(publishers.get(action.hash) ?? []), peer])
  for (const { peer, action } of net.log) {
    if (action.type === 'broadcast') {
      gossip[action.msgType] = (gossip[action.msgType] ?? 0) + action.wire.length * (n - 1) / n
      sent[peer] += action.wire.length * (n - 1)
      for (let j = 0; j < n; j++) if (j !== peer) received[j] += action.wire.length
    } else if (action.type === 'fetch-blob') {
      const size = net.blobs.get(action.hash)?.length ?? 0
      received[peer] += size
      blobBytes += size
      const from = publishers.get(action.hash)
      if (from !== undefined) {
        const k = served.get(action.hash) ?? 0
        served.set(action.hash, k + 1)
        sent[from[k % from.length]] += size
      }
    }
  }
  const model = 4 * d
  const stat = (xs: number[]) => ({ mean: +(xs.reduce((a, b) => a + b, 0) / xs.length / model).toFixed(2), max: +(Math.max(...xs) / model).toFixed(2) })
  return { mode, n, d, ms: +ms.toFixed(0), sent_per_model: stat(sent), received_per_model: stat(received), received_blobs_per_model: +(blobBytes / n / model).toFixed(2), rss_mb: +(process.memoryUsage().rss / 2 ** 20).toFixed(0), gossip_received_kb_by_type: Object.fromEntries(Object.entries(gossip).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, +(v / 1e3).toFixed(1)])) }
}

const rows: ScaleRow[] = []
console.log(`one secure round per size, d = ${d} (${(4 * d / 1e3).toFixed(0)} kB as uint32), bytes per peer ÷ the model's size`)
console.log('mode        n   sent (mean/max)   received (mean/max)   of which blobs   round ms   rss MB')
// the big round in sliced mode only (where it is asked for): all-to-all at 100 peers is what sliced replaces
const runs: Array<[number, Mode]> = [...sizes.flatMap(n => modes.map(m => [n, m] as [number, Mode])), ...(big > 0 ? [[big, modes.includes('sliced') ? 'sliced' : modes[0]] as [number, Mode]] : [])]
for (const [n, mode] of runs) {
  const r = round(n, mode)
  rows.push(r)
  console.log(`${r.mode.padEnd(10)}  ${String(n).padStart(3)}   ${r.sent_per_model.mean.toFixed(1).padStart(6)} / ${r.sent_per_model.max.toFixed(1).padStart(6)}   ${r.received_per_model.mean.toFixed(1).padStart(8)} / ${r.received_per_model.max.toFixed(1).padStart(6)}   ${r.received_blobs_per_model.toFixed(1).padStart(14)}   ${String(r.ms).padStart(8)}   ${String(r.rss_mb).padStart(6)}`)
}
const growth: Partial<Record<Mode, number>> = {}
for (const mode of modes) {
  const of = rows.filter(r => r.mode === mode)
  const first = of[0]; const last = of[of.length - 1]
  growth[mode] = +(last.received_per_model.mean / first.received_per_model.mean).toFixed(2)
  console.log(`${mode}: received per peer grows ${growth[mode]}x from n = ${first.n} to n = ${last.n}`)
}
const sliced = rows.filter(r => r.mode === 'sliced')
for (const r of rows.filter(r => r.n === Math.max(...rows.map(x => x.n)))) {
  console.log(`${r.mode}, n = ${r.n}: gossip received per peer, kB by message type: ` + Object.entries(r.gossip_received_kb_by_type).map(([k, v]) => `${k} ${v}`).join(', '))
}
if (sliced.length > 0) console.log(`sliced, largest (sent + received) / 2 per peer: ${Math.max(...sliced.map(r => (r.sent_per_model.mean + r.received_per_model.mean) / 2)).toFixed(2)} model sizes (target <= 2.5 at every n)`)
console.log(JSON.stringify({ bench: 'scale', d, slicing, rows, received_growth: growth }))
