/**
 * The oneDNN convolutions (src/training/native-kernels.ts) against the pure-JS cpu backend.
 * Where the addon is not built (no libdnnl-dev), the same checks run on the WebAssembly kernels
 * it falls back to; MEDMESH_REQUIRE_NATIVE=1 (CI, which installs libdnnl-dev) makes its absence a
 * failure, so that the native path cannot go untested there unnoticed.
 */
import { test } from 'uvu'
import * as tf from '@tensorflow/tfjs-core'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { testUnless } from '../helpers/skip.ts'
import { selectBackend } from '../../src/training/backend.ts'
import { nativeAddon, nativeKernelCalls, nativeKernelStatus, perExampleFilterGradNorms, useNativeKernels } from '../../src/training/native-kernels.ts'
import { checkConvKernels, convAndGradients, KERNEL_CONV_CASES, scaledError, SCALED_ERROR_BOUND } from '../helpers/conv.ts'

const cases = KERNEL_CONV_CASES
const run = convAndGradients

// whatever a test leaves behind, the files after this one run on wasm with oneDNN (they chose it when imported)
test.after(async () => { useNativeKernels(true); await selectBackend('wasm') })

test('the oneDNN addon is built where CI requires it', async () => {
  await selectBackend('wasm')
  useNativeKernels(true)
  const status = nativeKernelStatus()
  if (process.env.MEDMESH_REQUIRE_NATIVE === '1') assert.ok(status.active, `the oneDNN addon is required here: ${status.reason}`)
  if (status.active) assert.match(status.version ?? '', /^\d+\.\d+\.\d+$/)
  else assert.match(status.reason ?? '', /not built|did not load/)
})

test('Conv2D and both of its gradients equal the cpu backend\'s on 40 shapes (oneDNN where built)', async () => {
  useNativeKernels(true)
  const before = nativeKernelCalls()
  const r = await checkConvKernels()
  for (const f of r.failures) assert.unreachable(f)
  assert.ok(r.checked >= 30, `${r.checked} shapes checked`)
  // every shape through oneDNN, three kernels each (none refused), where the addon is built
  if (nativeKernelStatus().active) assert.ok(nativeKernelCalls() - before >= 3 * r.checked, `${nativeKernelCalls() - before} oneDNN calls for ${r.checked} shapes`)
})

test('the scaled error flags a kernel that is off by a rounding-sized amount only at the output\'s scale', () => {
  const ref = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i))
  const rounded = ref.map((v, i) => i === 7 ? v + 3e-6 : v) // 3·10⁻⁶ on an output near zero: another summation order
  assert.ok(scaledError(rounded, ref) < SCALED_ERROR_BOUND)
  const wrong = ref.map((v, i) => i === 7 ? v + 1e-3 : v) // a dropped term
  assert.ok(scaledError(wrong, ref) > SCALED_ERROR_BOUND)
  assert.is(scaledError(ref.map(v => v * Number.NaN), ref), Infinity)
  assert.is(scaledError(ref.subarray(1), ref), Infinity)
})

/**
 * oneDNN picks its kernels (and so its summation order) by instruction set; hospitals' servers have
 * every kind. Each cap this CPU allows runs in its own process (oneDNN reads ONEDNN_MAX_CPU_ISA
 * once), so that a machine with AVX-512 also proves the SSE4.1, AVX and AVX2 paths.
 */
const ISA_CAPS: Array<{ cap: string, flags: string[] }> = [
  { cap: 'SSE41', flags: ['sse4_1'] },
  { cap: 'AVX', flags: ['avx'] },
  { cap: 'AVX2', flags: ['avx2'] },
  { cap: 'AVX512_CORE', flags: ['avx512f', 'avx512bw', 'avx512vl', 'avx512dq'] }
]
const cpuFlags = ((): Set<string> | null => {
  if (process.arch !== 'x64') return null
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find(l => l.startsWith('flags'))
    return line === undefined ? null : new Set(line.split(':')[1].trim().split(/\s+/))
  } catch { return null }
})()
const CHILD = fileURLToPath(new URL('../helpers/conv-check-child.ts', import.meta.url))

for (const { cap, flags } of ISA_CAPS) {
  const reason = nativeAddon() === null ? 'the oneDNN addon is not built here'
    : cpuFlags === null ? `instruction-set caps are x86-64's (this is ${process.arch}, or /proc/cpuinfo is unreadable)`
      : flags.every(f => cpuFlags.has(f)) ? null : `this CPU lacks ${flags.filter(f => !cpuFlags.has(f)).join(', ')}`
  testUnless(test, reason, `oneDNN capped at ${cap} (ONEDNN_MAX_CPU_ISA): Conv2D and both gradients equal the cpu backend's on 40 shapes`, () => {
    const r = spawnSync(process.execPath, [CHILD], { env: { ...process.env, ONEDNN_MAX_CPU_ISA: cap, MEDMESH_NATIVE_KERNELS: '1' }, encoding: 'utf8', timeout: 120_000 })
    assert.is(r.status, 0, `the check under ${cap} exited ${r.status}: ${r.stderr.slice(-500)}`)
    const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as { checked: number, failures: string[], isa: string, calls: number, worst: Record<string, number> }
    assert.is(got.isa, cap, 'oneDNN did not run at the instruction set it was capped to')
    for (const f of got.failures) assert.unreachable(`${cap}: ${f}`)
    assert.ok(got.checked >= 30 && got.calls >= 3 * got.checked, `${got.calls} oneDNN calls for ${got.checked} shapes`)
    process.stdout.write(`  oneDNN ${cap}: worst scaled error y ${got.worst.y.toExponential(1)}, dW ${got.worst.dw.toExponential(1)}, dx ${got.worst.dx.toExponential(1)}\n`)
  })
}

test('turned off, the convolutions run in WebAssembly: oneDNN is not called', async () => {
  await selectBackend('wasm')
  useNativeKernels(false)
  try {
    const before = nativeKernelCalls()
    const got = run(cases[1], 1)
    assert.is(nativeKernelCalls(), before)
    await selectBackend('cpu')
    const ref = run(cases[1], 1)
    assert.ok(scaledError(got.dw, ref.dw) < SCALED_ERROR_BOUND)
  } finally {
    useNativeKernels(true)
    // the files after this one chose wasm when they were imported (uvu imports them all first)
    await selectBackend('wasm')
  }
})

test('the oneDNN kernels leak no tensors, the per-example norms included', async () => {
  await selectBackend('wasm')
  useNativeKernels(true)
  run(cases[3], 1)
  const before = tf.memory().numTensors
  for (let i = 0; i < 4; i++) run(cases[3], i)
  const x = tf.ones([3, 8, 8, 2]) as tf.Tensor4D; const dy = tf.ones([3, 8, 8, 4]) as tf.Tensor4D
  const norms = perExampleFilterGradNorms(x, dy, [1, 1], 'same', [3, 3, 2, 4])
  if (nativeKernelStatus().active) {
    assert.ok(norms !== null)
    assert.equal(norms.shape, [3])
    // all ones: each tap's gradient sums the positions it sees, the same for every example
    const v = norms.dataSync()
    assert.ok(v[0] > 0 && v[0] === v[1] && v[1] === v[2])
  } else assert.is(norms, null)
  tf.dispose([x, dy, ...(norms === null ? [] : [norms])])
  assert.is(tf.memory().numTensors, before)
})

test('the addon refuses a tensor outside the heap and a geometry that is not a convolution', () => {
  const addon = nativeAddon()
  if (addon === null) { assert.not.ok(nativeKernelStatus().active); return }
  const heap = new ArrayBuffer(4096)
  // [N,IH,IW,IC,OH,OW,OC,KH,KW,SH,SW,PT,PL,PB,PR]: a 3×3 'same' convolution of 1×8×8×2 to 4 channels
  const g = Int32Array.from([1, 8, 8, 2, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1])
  // x 512 B, w 288 B, y 1024 B: fits at 0, 512, 1024
  assert.type(addon.conv(0, heap, 0, 512, 1024, g), 'string')
  assert.throws(() => addon.conv(0, heap, 0, 512, 3584, g), /outside the heap/)
  assert.throws(() => addon.conv(0, heap, 0, 4000, 1024, g), /outside the heap/)
  assert.throws(() => addon.conv(0, heap, 2, 512, 1024, g), /multiples of 4/)
  assert.throws(() => addon.conv(0, heap, 0, 512, 1024, Int32Array.from([1, 8, 8, 2, 9, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1])), /output size/)
  assert.throws(() => addon.conv(0, heap, 0, 512, 1024, Int32Array.from([1, 8, 8, 2, 8, 8, 4, 3, 3, 0, 1, 1, 1, 1, 1])), /out of range/)
  assert.throws(() => addon.conv(4, heap, 0, 512, 1024, g), /kind/)
  // sizes whose products overflow 64 bits, and a window larger than the padded input
  assert.throws(() => addon.conv(0, heap, 0, 0, 0, Int32Array.from([65536, 1, 1, 32767, 1, 1, 32768, 1, 1, 1, 1, 0, 0, 0, 0].map((v, i) => i === 0 ? 2 ** 31 - 1 : v))), /outside the heap/)
  assert.throws(() => addon.conv(0, heap, 0, 0, 0, Int32Array.from([2 ** 30, 2 ** 30, 2 ** 30, 2 ** 30, 2 ** 30, 2 ** 30, 1, 1, 1, 1, 1, 0, 0, 0, 0])), /outside the heap/)
  assert.throws(() => addon.conv(0, heap, 0, 512, 1024, Int32Array.from([1, 2, 2, 1, 1, 1, 1, 3, 3, 2, 2, 0, 0, 0, 0])), /output size/)
  // kind 3, each example's squared filter-gradient norm: one float per example
  assert.throws(() => addon.conv(3, heap, 0, 512, 4096, g), /outside the heap/)
  assert.type(addon.conv(3, heap, 0, 512, 4092, g), 'string')
})

test.run()
