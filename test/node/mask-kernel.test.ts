/**
 * The native mask kernel (native/mask-kernels.cc through src/node/mask-kernel.ts) against the
 * JavaScript path of src/privacy/prg.ts: the same words for every length, offset and sign, the
 * pinned vector of prg.test.ts, and its own argument checks, also with OpenSSL's AES-NI and vector
 * paths turned off (OPENSSL_ia32cap), as on CPUs without them. Where the addon is not built the tests
 * that need it print why they are skipped (test/helpers/skip.ts); MEDMESH_REQUIRE_NATIVE=1 (CI, which installs libssl-dev)
 * makes its absence a failure.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { addMasks, expandMask, setKeystreamKernel, maskInput, sumVectors, unmaskSum, type MaskTerm } from '../../src/privacy/index.ts'
import { installMaskKernel, maskAddon } from '../../src/node/mask-kernel.ts'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { testSeed } from '../helpers/bytes.ts'
import { testUnless } from '../helpers/skip.ts'

const SEED = Uint8Array.from({ length: 32 }, (_, i) => i)
const status = installMaskKernel()
const addon = maskAddon()
setKeystreamKernel(null) // each test chooses its path
const NO_ADDON = addon === null ? 'the mask addon is not built here' : null

/** fn's result through JavaScript and through the addon (null where the addon is not built) */
function bothWays<T> (fn: () => T): [T, T | null] {
  setKeystreamKernel(null)
  const js = fn()
  if (addon === null) return [js, null]
  setKeystreamKernel(addon)
  try { return [js, fn()] } finally { setKeystreamKernel(null) }
}

test('the addon loads where it is required', () => {
  if (process.env.MEDMESH_REQUIRE_NATIVE === '1') assert.ok(status.active, `the mask addon is required here: ${status.reason}`)
  if (status.active) assert.match(status.version ?? '', /OpenSSL 3\./)
  else assert.type(status.reason, 'string')
})

test('expandMask: the pinned vector and the JavaScript path, word for word', () => {
  const [, native] = bothWays(() => expandMask(SEED, 8))
  if (native !== null) assert.is(Array.from(native, w => w.toString(16).padStart(8, '0')).join(' '), 'c83aa5b9 49408f9d c3306794 4bd20bba b689e845 4a836672 14b97765 23f4265d')
  for (const n of [0, 1, 3, 16_383, 16_384, 16_385, 100_003]) {
    const [js, nat] = bothWays(() => expandMask(testSeed(n & 0xff), n))
    if (nat !== null) assert.equal(nat, js, `n=${n}`)
  }
})

test('addMasks: any offset, length, signs and number of terms gives the JavaScript path\'s words', () => {
  const terms: MaskTerm[] = [1, -1, 1, 1, -1].map((sign, i) => ({ seed: testSeed(40 + i), sign: sign as 1 | -1 }))
  const base = Uint32Array.from({ length: 300_000 }, (_, i) => (i * 2654435761) >>> 0)
  for (const [from, length, m] of [[0, 1, 1], [0, 300_000, 5], [1, 7, 2], [2, 16_384, 3], [3, 16_385, 5], [16_383, 3, 1], [262_145, 37_855, 4], [1025, 70_000, 5], [5, 0, 2], [9, 100, 0]]) {
    const [js, nat] = bothWays(() => { const acc = base.slice(from, from + length); addMasks(acc, terms.slice(0, m), from); return acc })
    if (nat !== null) assert.equal(nat, js, `from ${from}, ${length} words, ${m} terms`)
  }
})

testUnless(test, NO_ADDON, 'masking and unmasking through the addon recover the sum exactly', () => {
  setKeystreamKernel(addon)
  try {
    const x = [Uint32Array.from({ length: 50_000 }, (_, i) => i), Uint32Array.from({ length: 50_000 }, (_, i) => 7 * i)]
    const pair = testSeed(77)
    const y0 = maskInput(x[0], testSeed(1), [{ seed: pair, sign: 1 }])
    const y1 = maskInput(x[1], testSeed(2), [{ seed: pair, sign: -1 }])
    assert.not.equal(y0, x[0])
    const sum = unmaskSum(sumVectors([y0, y1]), [testSeed(1), testSeed(2)], [])
    assert.equal(sum, Uint32Array.from({ length: 50_000 }, (_, i) => 8 * i))
  } finally { setKeystreamKernel(null) }
})

testUnless(test, NO_ADDON, 'the addon refuses malformed arguments with an error, touching nothing', () => {
  if (addon === null) return // (registered only where it is built)
  const acc = new Uint32Array(8)
  const key = new Uint8Array(16)
  const iv = new Uint8Array(16)
  const refuses = (fn: () => void, what: RegExp): void => {
    try { fn() } catch (e) { assert.match((e as Error).message, what); return }
    assert.unreachable('no error')
  }
  refuses(() => addon.addKeystreams(acc, key, iv, 0, Int8Array.of(2)), /signs must be 1 or -1/)
  refuses(() => addon.addKeystreams(acc, key, iv, 0, Int8Array.of(1, 1)), /16 bytes per sign/)
  refuses(() => addon.addKeystreams(acc, key, iv.subarray(1), 0, Int8Array.of(1)), /iv must be 16 bytes/)
  refuses(() => addon.addKeystreams(acc, key, iv, 16, Int8Array.of(1)), /skip out of range/)
  refuses(() => addon.addKeystreams(new Int32Array(8) as never, key, iv, 0, Int8Array.of(1)), /acc has the wrong element type/)
  refuses(() => addon.expandKeystream(acc, key.subarray(1), iv, 0), /16 bytes/)
  refuses(() => (addon.expandKeystream as (...a: unknown[]) => void)(acc, key, iv), /expected 4 arguments/)
  assert.equal(acc, new Uint32Array(8))
})

/**
 * OpenSSL picks its AES code by CPU feature; OPENSSL_ia32cap masks features off (read once, at
 * start: a process each). The first word is CPUID(1) EDX | ECX << 32 (AES-NI bit 57, PCLMULQDQ 33,
 * SSSE3 41, AVX 60), the second CPUID(7)'s (AVX2, AVX-512, VAES): 0 turns them all off.
 */
const OPENSSL_CAPS = [
  { what: 'AES-NI and PCLMULQDQ off', cap: '~0x200000200000000' },
  { what: 'AES-NI, SSSE3, AVX and every CPUID(7) feature off (table-based AES)', cap: '~0x1200020200000000:0' }
]
const CHILD = fileURLToPath(new URL('../helpers/mask-check-child.ts', import.meta.url))
for (const { what, cap } of OPENSSL_CAPS) {
  const reason = NO_ADDON ?? (process.arch === 'x64' ? null : `OPENSSL_ia32cap is x86-64's; this is ${process.arch}`)
  testUnless(test, reason, `with ${what} (OPENSSL_ia32cap=${cap}) the addon gives the pinned vector and the JavaScript path's words`, () => {
    const r = spawnSync(process.execPath, [CHILD], { env: { ...process.env, OPENSSL_ia32cap: cap }, encoding: 'utf8', timeout: 60_000 })
    assert.is(r.status, 0, `the check exited ${r.status}: ${r.stderr.slice(-500)}`)
    const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as { failures: string[], mbps: number }
    for (const f of got.failures) assert.unreachable(`${what}: ${f}`)
    process.stdout.write(`  mask kernel, ${what}: ${got.mbps} MB/s\n`)
  })
}

test.run()
