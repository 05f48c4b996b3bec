/**
 * Two gradient loops in WebAssembly SIMD, run directly on the TF.js wasm backend's memory (the
 * module imports it), four float32 lanes an instruction and without branches: the 2×2 max-pool
 * gradient and the column sums behind bias gradients. In JavaScript both were a tenth of a
 * cnn-small training step (CPU profile, batch 32: 2.9 and 1.4 ms of 45 ms), the max-pool one
 * mostly in mispredicted branches on its comparisons.
 *
 * The module is written out below with the text it encodes (a few dozen instructions, as in
 * src/privacy/words.ts). Where WebAssembly SIMD is missing, or the backend's memory is shared (its
 * threaded build), `simdKernelsFor` gives null and the callers keep their plain loops; the results
 * are the same either way (test/training/wasm-kernels.test.ts checks both against the cpu backend).
 */

// opcodes used below (WebAssembly core and SIMD)
const I32 = 0x7f
const V128 = 0x7b
const BLOCK = [0x02, 0x40]
const LOOP = [0x03, 0x40]
const END = 0x0b
const BR = 0x0c
const BR_IF = 0x0d
const GET = 0x20
const SET = 0x21
const I32_CONST = 0x41
const I32_EQZ = 0x45
const I32_GE_U = 0x4f
const I32_ADD = 0x6a
const I32_SUB = 0x6b
const simd = (op: number): number[] => [0xfd, ...leb(op)]
const LOAD = [...simd(0x00), 0x00, 0x00] // v128.load align=1 offset=0
const STORE = [...simd(0x0b), 0x00, 0x00] // v128.store align=1 offset=0
const F32X4_GT = simd(0x44)
const F32X4_ADD = simd(0xe4)
const AND = simd(0x4e)
const ANDNOT = simd(0x4f) // a & ~b
const OR = simd(0x50)
const BITSELECT = simd(0x52) // (a & c) | (b & ~c)
const v128Const = (lanes: number[]): number[] => [...simd(0x0c), ...lanes.flatMap(w => [w & 0xff, (w >>> 8) & 0xff, (w >>> 16) & 0xff, w >>> 24])]
const NEG_INF = v128Const([0xff800000, 0xff800000, 0xff800000, 0xff800000])
const ZERO = v128Const([0, 0, 0, 0])

/** unsigned LEB128, as the binary format writes sizes and indices */
function leb (n: number): number[] {
  const out: number[] = []
  do { out.push((n & 0x7f) | (n >= 0x80 ? 0x80 : 0)); n >>>= 7 } while (n > 0)
  return out
}
/** signed LEB128 (i32.const) */
function sleb (n: number): number[] {
  const out: number[] = []
  for (;;) {
    const b = n & 0x7f
    n >>= 7
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) { out.push(b); return out }
    out.push(b | 0x80)
  }
}
const get = (l: number): number[] => [GET, l]
const set = (l: number): number[] => [SET, l]
const addTo = (l: number, by: number[]): number[] => [...get(l), ...by, I32_ADD, ...set(l)]

/*
 * (func $maxpool_grad_row (param $x0 $x1 $dy $d0 $d1 $windows $cb i32)
 *   ;; one row of 2×2 windows at stride 2: input rows $x0 and $x1, their gradient rows $d0 and
 *   ;; $d1, the output gradient row $dy; $cb = channels × 4 bytes (a multiple of 16)
 *   (local $i i32) (local $a $b $e $f $g $best $sa $sb $se $sf v128)
 *   (block (loop                                         ;; each window
 *     (br_if 1 (i32.eqz $windows))
 *     (local.set $i 0)
 *     (block (loop                                       ;; four channels at a time
 *       (br_if 1 (i32.ge_u $i $cb))
 *       a = load($x0+$i); b = load($x0+$i+$cb); e = load($x1+$i); f = load($x1+$i+$cb); g = load($dy+$i)
 *       ;; the first maximum in the order a, b, e, f by a strict >, from −∞ (NaN never wins):
 *       sa = a > −∞; best = sa ? a : −∞; sb = b > best; best = sb ? b : best; se = e > best; best = se ? e : best; sf = f > best
 *       store($d1+$i+$cb, g & sf); store($d1+$i, g & se & ~sf)
 *       se = se | sf; store($d0+$i+$cb, g & sb & ~se)
 *       sb = sb | se; store($d0+$i, g & sa & ~sb)
 *       $i += 16 (br 0)))
 *     $x0 += 2·$cb; $x1 += 2·$cb; $d0 += 2·$cb; $d1 += 2·$cb; $dy += $cb; $windows -= 1
 *     (br 0))))
 */
function maxPoolGradRow (): number[] {
  const [x0, x1, dy, d0, d1, windows, cb, i, a, b, e, f, g, best, sa, sb, se, sf] = Array.from({ length: 18 }, (_, k) => k)
  const at = (base: number, plusCb: boolean): number[] => [...get(base), ...get(i), I32_ADD, ...(plusCb ? [...get(cb), I32_ADD] : [])]
  const code = [
    ...BLOCK, ...LOOP,
    ...get(windows), I32_EQZ, BR_IF, 1,
    I32_CONST, 0, ...set(i),
    ...BLOCK, ...LOOP,
    ...get(i), ...get(cb), I32_GE_U, BR_IF, 1,
    ...at(x0, false), ...LOAD, ...set(a),
    ...at(x0, true), ...LOAD, ...set(b),
    ...at(x1, false), ...LOAD, ...set(e),
    ...at(x1, true), ...LOAD, ...set(f),
    ...at(dy, false), ...LOAD, ...set(g),
    ...get(a), ...NEG_INF, ...F32X4_GT, ...set(sa),
    ...get(a), ...NEG_INF, ...get(sa), ...BITSELECT, ...set(best),
    ...get(b), ...get(best), ...F32X4_GT, ...set(sb),
    ...get(b), ...get(best), ...get(sb), ...BITSELECT, ...set(best),
    ...get(e), ...get(best), ...F32X4_GT, ...set(se),
    ...get(e), ...get(best), ...get(se), ...BITSELECT, ...set(best),
    ...get(f), ...get(best), ...F32X4_GT, ...set(sf),
    ...at(d1, true), ...get(g), ...get(sf), ...AND, ...STORE,
    ...at(d1, false), ...get(g), ...get(se), ...get(sf), ...ANDNOT, ...AND, ...STORE,
    ...get(se), ...get(sf), ...OR, ...set(se),
    ...at(d0, true), ...get(g), ...get(sb), ...get(se), ...ANDNOT, ...AND, ...STORE,
    ...get(sb), ...get(se), ...OR, ...set(sb),
    ...at(d0, false), ...get(g), ...get(sa), ...get(sb), ...ANDNOT, ...AND, ...STORE,
    ...addTo(i, [I32_CONST, 16]),
    BR, 0, END, END,
    ...addTo(x0, [...get(cb), ...get(cb), I32_ADD]),
    ...addTo(x1, [...get(cb), ...get(cb), I32_ADD]),
    ...addTo(d0, [...get(cb), ...get(cb), I32_ADD]),
    ...addTo(d1, [...get(cb), ...get(cb), I32_ADD]),
    ...addTo(dy, get(cb)),
    ...get(windows), I32_CONST, 1, I32_SUB, ...set(windows),
    BR, 0, END, END,
    END
  ]
  const locals = [0x02, 0x01, I32, 0x0a, V128]
  return [...leb(locals.length + code.length), ...locals, ...code]
}

/*
 * (func $column_sums (param $src $dst $rows $ib i32)
 *   ;; dst[j] = Σ_r src[r·n + j] in float32, for the n = $ib / 4 columns ($ib a multiple of 16)
 *   (local $j $p $r i32) (local $acc v128)
 *   (block (loop
 *     (br_if 1 (i32.ge_u $j $ib))
 *     acc = 0; $p = $src + $j; $r = $rows
 *     (block (loop (br_if 1 (i32.eqz $r)) acc += load($p); $p += $ib; $r -= 1 (br 0)))
 *     store($dst + $j, acc); $j += 16
 *     (br 0))))
 */
function columnSums (): number[] {
  const [src, dst, rows, ib, j, p, r, acc] = Array.from({ length: 8 }, (_, k) => k)
  const code = [
    ...BLOCK, ...LOOP,
    ...get(j), ...get(ib), I32_GE_U, BR_IF, 1,
    ...ZERO, ...set(acc),
    ...get(src), ...get(j), I32_ADD, ...set(p),
    ...get(rows), ...set(r),
    ...BLOCK, ...LOOP,
    ...get(r), I32_EQZ, BR_IF, 1,
    ...get(acc), ...get(p), ...LOAD, ...F32X4_ADD, ...set(acc),
    ...addTo(p, get(ib)),
    ...get(r), I32_CONST, 1, I32_SUB, ...set(r),
    BR, 0, END, END,
    ...get(dst), ...get(j), I32_ADD, ...get(acc), ...STORE,
    ...addTo(j, [I32_CONST, ...sleb(16)]),
    BR, 0, END, END,
    END
  ]
  const locals = [0x02, 0x03, I32, 0x01, V128]
  return [...leb(locals.length + code.length), ...locals, ...code]
}

const section = (id: number, content: number[]): number[] => [id, ...leb(content.length), ...content]
const name = (s: string): number[] => [s.length, ...Array.from(s, c => c.charCodeAt(0))]
const MODULE = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, [0x02, 0x60, 0x07, ...Array(7).fill(I32), 0x00, 0x60, 0x04, ...Array(4).fill(I32), 0x00]), // types: (7 × i32) → (), (4 × i32) → ()
  ...section(2, [0x01, ...name('env'), ...name('memory'), 0x02, 0x00, 0x00]), // the backend's memory (unshared, no minimum)
  ...section(3, [0x02, 0x00, 0x01]),
  ...section(7, [0x02, ...name('maxpool_grad_row'), 0x00, 0x00, ...name('column_sums'), 0x00, 0x01]),
  ...section(10, [0x02, ...maxPoolGradRow(), ...columnSums()])
])

// the global WebAssembly API, as far as it is used here (the project's lib settings leave it untyped)
declare const WebAssembly: {
  validate: (bytes: Uint8Array) => boolean
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> }
  Memory: new (d: { initial: number }) => WasmMemory
}
interface WasmMemory { buffer: ArrayBuffer | SharedArrayBuffer }

export interface SimdKernels {
  /** one row of 2×2 stride-2 windows; addresses in bytes on the backend's memory, cb = channels × 4 (a multiple of 16) */
  maxPoolGradRow: (x0: number, x1: number, dy: number, d0: number, d1: number, windows: number, cb: number) => void
  /** dst[j] = Σ_{r < rows} src[r·n + j] in float32 for the n = ib / 4 columns (ib a multiple of 16) */
  columnSums: (src: number, dst: number, rows: number, ib: number) => void
}

let compiled: object | null | undefined
const instances = new WeakMap<object, SimdKernels>()
let disabled = false

/** For tests: use the SIMD kernels (the default where they load) or the plain loops. */
export function useSimdKernels (on: boolean): void { disabled = !on }

/** The kernels on this memory (a TF.js wasm backend's), or null where they cannot run. */
export function simdKernelsFor (memory: WasmMemory | undefined): SimdKernels | null {
  if (disabled || memory === undefined || typeof WebAssembly !== 'object') return null
  if (typeof SharedArrayBuffer === 'function' && memory.buffer instanceof SharedArrayBuffer) return null
  if (compiled === undefined) compiled = WebAssembly.validate(MODULE) ? new WebAssembly.Module(MODULE) : null
  if (compiled === null) return null
  let k = instances.get(memory)
  if (k === undefined) {
    const exports = new WebAssembly.Instance(compiled, { env: { memory } }).exports as unknown as { maxpool_grad_row: SimdKernels['maxPoolGradRow'], column_sums: SimdKernels['columnSums'] }
    k = { maxPoolGradRow: exports.maxpool_grad_row, columnSums: exports.column_sums }
    instances.set(memory, k)
  }
  return k
}
