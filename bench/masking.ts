/**
 * bench/masking: the cost of double masking one ResNet-18-sized update (d = 11,200,000) for a
 * round of 10 peers, against the raw cipher it is built on, side by side in one process.
 *
 *   baseline: node:crypto createCipheriv('aes-128-ctr') over the same number of bytes, fed
 *             64 KiB chunks of zeros, output discarded (the cipher's ceiling here);
 *   expand:   expandMask(seed, d, out) into a preallocated Uint32Array (key derivation included);
 *   mask:     maskInPlace(x, b_u, 9 pairwise masks), as a round masks its freshly quantised update:
 *             self mask + 9 pairwise masks added mod 2^32 into x, plus the 9 X25519 agreements
 *             that derive the pairwise seeds.
 * expand and mask run both ways: in JavaScript (node:crypto's cipher, additions in WebAssembly)
 * and through the native kernel (native/mask-kernels.cc: the same OpenSSL cipher, called from
 * C++ into a reused buffer and added there), where it is built; the ratios named without "js"
 * are the path a node uses. Runs interleave and the median of each is reported. Last line: one
 * JSON object.
 *
 * Usage: npm run bench:masking [-- --d 11200000 --peers 10 --reps 5]
 */
import { createCipheriv } from 'node:crypto'
import { maskAddon } from '../src/node/mask-kernel.ts'
import { parseArgs } from 'node:util'
import {
  expandMask, maskInPlace, pairwiseMaskSeed, pairwiseSign, generateX25519KeyPair, seededRandom, randomBytes, setKeystreamKernel, type PairwiseMask
} from '../src/privacy/index.ts'

const { values } = parseArgs({ options: { d: { type: 'string', default: '11200000' }, peers: { type: 'string', default: '10' }, reps: { type: 'string', default: '5' } } })
const d = Number(values.d)
const peers = Number(values.peers)
const reps = Number(values.reps)
const bytesPerMask = 4 * d
const rng = seededRandom(new Uint8Array(32).fill(7))

const CHUNK = new Uint8Array(64 * 1024)
function rawCipher (totalBytes: number): void {
  const c = createCipheriv('aes-128-ctr', randomBytes(rng, 16), new Uint8Array(16))
  let sink = 0
  for (let off = 0; off < totalBytes; off += CHUNK.length) {
    const n = Math.min(CHUNK.length, totalBytes - off)
    sink ^= c.update(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))[0]
  }
  if (sink === 256) console.log('unreachable')
}

const out = new Uint32Array(d)
const input = new Uint32Array(d)
rng.fill(new Uint8Array(input.buffer))
const me = { id: 'peer-00', keys: generateX25519KeyPair(rng) }
const others = Array.from({ length: peers - 1 }, (_, i) => ({ id: `peer-${String(i + 1).padStart(2, '0')}`, keys: generateX25519KeyPair(rng) }))
const context = new TextEncoder().encode('bench/round-1')
const selfSeed = randomBytes(rng, 32)

function time (fn: () => void): number {
  const t0 = process.hrtime.bigint()
  fn()
  return Number(process.hrtime.bigint() - t0) / 1e6
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const addon = maskAddon()
const paths = addon === null ? ['js'] as const : ['js', 'native'] as const
const use = (path: 'js' | 'native'): void => { setKeystreamKernel(path === 'native' ? addon : null) }
const raw: number[] = []
const rawPeers: number[] = []
const expand = { js: [] as number[], native: [] as number[] }
const mask = { js: [] as number[], native: [] as number[] }
const maskOnce = (): void => {
  const pairwise: PairwiseMask[] = others.map(o => ({ seed: pairwiseMaskSeed(me.keys.secretKey, o.keys.publicKey, context), sign: pairwiseSign(me.id, o.id) }))
  maskInPlace(input, selfSeed, pairwise) // x changes from run to run; the work does not
}
// warm-up
rawCipher(bytesPerMask)
for (const path of paths) { use(path); expandMask(selfSeed, d, out); maskOnce() }
for (let r = 0; r < reps; r++) {
  raw.push(time(() => rawCipher(bytesPerMask)))
  rawPeers.push(time(() => rawCipher(peers * bytesPerMask)))
  for (const path of paths) {
    use(path)
    expand[path].push(time(() => expandMask(randomBytes(rng, 32), d, out)))
    mask[path].push(time(maskOnce))
  }
}
use(addon === null ? 'js' : 'native')

const node = addon === null ? 'js' : 'native'
const rawMs = median(raw)
const rawPeersMs = median(rawPeers)
const expandMs = { js: median(expand.js), native: addon === null ? NaN : median(expand.native) }
const maskMs = { js: median(mask.js), native: addon === null ? NaN : median(mask.native) }
const gbps = (bytes: number, ms: number): number => bytes / ms / 1e6
const result = {
  bench: 'masking',
  d,
  peers,
  reps,
  masks: node,
  openssl: addon?.opensslVersion() ?? null,
  raw_cipher_gbps: +gbps(bytesPerMask, rawMs).toFixed(3),
  mask_expansion_gbps: +gbps(bytesPerMask, expandMs[node]).toFixed(3),
  expansion_vs_raw: +(rawMs / expandMs[node]).toFixed(3),
  expansion_js_vs_raw: +(rawMs / expandMs.js).toFixed(3),
  mask_one_update_ms: +maskMs[node].toFixed(1),
  mask_one_update_js_ms: +maskMs.js.toFixed(1),
  raw_cipher_same_bytes_ms: +rawPeersMs.toFixed(1),
  mask_vs_raw: +(rawPeersMs / maskMs[node]).toFixed(3),
  mask_js_vs_raw: +(rawPeersMs / maskMs.js).toFixed(3)
}
console.log(`d=${d}, ${peers} peers, median of ${reps}; native kernel: ${addon === null ? 'not built' : addon.opensslVersion()}`)
console.log(`raw aes-128-ctr               ${rawMs.toFixed(1)} ms per ${(bytesPerMask / 1e6).toFixed(1)} MB  (${result.raw_cipher_gbps} GB/s)`)
for (const path of paths) {
  console.log(`mask expansion, ${path.padEnd(6)}       ${expandMs[path].toFixed(1)} ms per ${(bytesPerMask / 1e6).toFixed(1)} MB  (${gbps(bytesPerMask, expandMs[path]).toFixed(3)} GB/s)  ${(rawMs / expandMs[path]).toFixed(3)}x the raw cipher (target >= 0.9x)`)
}
for (const path of paths) {
  console.log(`mask one update, ${path.padEnd(6)}      ${maskMs[path].toFixed(1)} ms  (${peers} PRG streams added mod 2^32; raw cipher over the same ${(peers * bytesPerMask / 1e6).toFixed(0)} MB: ${rawPeersMs.toFixed(1)} ms, ${(rawPeersMs / maskMs[path]).toFixed(3)}x)`)
}
console.log(JSON.stringify(result))
