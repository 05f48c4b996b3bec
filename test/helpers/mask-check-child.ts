/**
 * Run as a child process by test/node/mask-kernel.test.ts with OPENSSL_ia32cap set: OpenSSL reads
 * that cap once, at start, so each set of CPU features needs a process of its own. Checks the
 * native mask kernel against the pinned vector and the JavaScript path, and prints one JSON line
 * (with the kernel's throughput, which shows that the cap took effect: without AES-NI it is several
 * times slower).
 */
import { addMasks, expandMask, setKeystreamKernel, type MaskTerm } from '../../src/privacy/index.ts'
import { maskAddon } from '../../src/node/mask-kernel.ts'
import { testSeed } from './bytes.ts'

export const PINNED = 'c83aa5b9 49408f9d c3306794 4bd20bba b689e845 4a836672 14b97765 23f4265d'

const addon = maskAddon()
const failures: string[] = []
if (addon === null) failures.push('the mask addon did not load')
else {
  const both = <T>(fn: () => T): [T, T] => {
    setKeystreamKernel(null)
    const js = fn()
    setKeystreamKernel(addon)
    try { return [js, fn()] } finally { setKeystreamKernel(null) }
  }
  const [, pinned] = both(() => expandMask(Uint8Array.from({ length: 32 }, (_, i) => i), 8))
  const words = Array.from(pinned, w => w.toString(16).padStart(8, '0')).join(' ')
  if (words !== PINNED) failures.push(`the pinned vector differs: ${words}`)
  const terms: MaskTerm[] = [1, -1, 1].map((sign, i) => ({ seed: testSeed(60 + i), sign: sign as 1 | -1 }))
  for (const [from, length] of [[0, 100_003], [3, 16_385], [16_383, 7]]) {
    const [js, nat] = both(() => { const acc = Uint32Array.from({ length }, (_, i) => i * 7); addMasks(acc, terms, from); return acc })
    if (js.length !== nat.length || js.some((w, i) => w !== nat[i])) failures.push(`addMasks from ${from}, ${length} words differs from the JavaScript path`)
  }
}
let mbps = 0
if (addon !== null) {
  setKeystreamKernel(addon)
  const acc = new Uint32Array(4 << 20)
  for (let pass = 0; pass < 3; pass++) {
    const start = process.hrtime.bigint()
    addMasks(acc, [{ seed: testSeed(9), sign: 1 }], 0)
    mbps = Math.max(mbps, acc.byteLength / 1e6 / (Number(process.hrtime.bigint() - start) / 1e9))
  }
  setKeystreamKernel(null)
}
process.stdout.write(JSON.stringify({ failures, mbps: Math.round(mbps) }) + '\n')
