/**
 * Gradient kernels that the TF.js wasm backend lacks or runs slowly, written as forward
 * convolutions of rearranged tensors, so that they run on the backend's fast (XNNPACK) forward
 * Conv2D path.
 *
 * Conv2DBackpropFilter (dL/dW of y = conv2d(x, W), stride s, padding p; dilation is always 1 in
 * TF.js gradients):
 *   dW[kh,kw,ci,co] = Σ_{b,oh,ow} x_pad[b, oh·s+kh, ow·s+kw, ci] · dy[b,oh,ow,co]
 * which is a convolution of x viewed as [ci, H, W, b] (batch as channels) with dy viewed as a
 * filter [oh, ow, b, co], with dilation s (the original stride) and the original padding; its
 * output [ci, KH', KW', co] holds dW in its first KH×KW positions.
 *
 * MaxPoolGrad: a direct loop on the wasm heap (see below).
 *
 * BatchMatMul and _FusedMatMul with a transposed operand: the backend multiplies untransposed
 * operands on its fast (XNNPACK) path but transposed ones element by element, 10–25× slower
 * (measured: [64,3136]ᵀ·[64,64] 18.6 ms against 0.95 ms after a 0.6 ms transpose). Every dense
 * layer's backward pass multiplies by a transpose, so the operand is transposed first, once.
 *
 * Sum over leading axes (a bias gradient: Σ over batch and positions of [B,H,W,C]): the backend
 * transposes the reduced axes innermost and then sums (9.5 ms for [64,28,28,32]); one pass over the
 * input on the wasm heap, rows added in order, does it in a fraction. Other reductions keep the backend's kernel.
 *
 * Conv2DBackpropInput (dL/dx): a convolution of dy with the filter rotated by 180° and its
 * channel axes swapped, padded by (K-1-p) on each side; at strides above 1, one such convolution
 * per output phase with that phase's taps of the filter (backpropInputByPhases).
 *
 * Tile, Mean, the filter's rotation and Transpose of the last two axes: loops on the heap where
 * the backend's kernels were slow.
 *
 * Each kernel is verified against the pure-JS `cpu` backend on random shapes in
 * test/training/wasm-kernels.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core'
import type { Conv2DBackpropFilterAttrs, Conv2DBackpropInputAttrs, KernelConfig, MaxPoolGradAttrs, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core'
import { simdKernelsFor, type SimdKernels } from './wasm-simd.ts'

/**
 * A Tensor view of a kernel input. makeTensorFromTensorInfo does not take a reference on the
 * data, but disposing the view gives one up: take it first, or the input's data would be freed.
 */
function asTensor (info: TensorInfo): tf.Tensor {
  tf.engine().backend.incRef(info.dataId)
  return tf.engine().makeTensorFromTensorInfo(info)
}
const pair = (v: number | [number, number]): [number, number] => typeof v === 'number' ? [v, v] : v

function backpropFilter ({ inputs, attrs }: { inputs: NamedTensorInfoMap, attrs?: unknown }): TensorInfo {
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as Conv2DBackpropFilterAttrs
  if (dataFormat !== 'NHWC') throw new Error('medmesh wasm Conv2DBackpropFilter supports NHWC only')
  const [sh, sw] = pair(strides)
  const [kh0, kw0, ci0, co0] = filterShape
  if (kh0 * kw0 * ci0 <= co0) return backpropFilterByPatches(inputs, attrs as Conv2DBackpropFilterAttrs)
  return tf.tidy(() => {
    const x = asTensor(inputs.x!) as tf.Tensor4D
    const dy = asTensor(inputs.dy!) as tf.Tensor4D
    const info = tf.backend_util.computeConv2DInfo(x.shape, filterShape, [sh, sw], 1, pad, dimRoundingMode)
    const { top, bottom, left, right } = info.padInfo
    const [kh, kw] = filterShape
    const xT = tf.transpose(x, [3, 1, 2, 0]) // [ci, H, W, b]
    const dyT = tf.transpose(dy, [1, 2, 0, 3]) // [oh, ow, b, co]
    const full = tf.conv2d(xT, dyT, 1, [[0, 0], [top, bottom], [left, right], [0, 0]], 'NHWC', [sh, sw]) // [ci, KH', KW', co]
    const cropped = full.shape[1] === kh && full.shape[2] === kw ? full : tf.slice(full, [0, 0, 0, 0], [-1, kh, kw, -1])
    return tf.transpose(cropped, [1, 2, 0, 3]) // [kh, kw, ci, co]; tidy hands it to the enclosing scope
  })
}

/**
 * The same gradient as one matrix product dW = Pᵀ·dy over the patches P (im2col, [B·T, kh·kw·ci]),
 * for layers with few input channels (the first, on grayscale or colour images), where the
 * convolution above has only kh·kw output pixels per channel and runs at a tenth of the backend's
 * speed (measured at 28×28, batch 64: 18.7 ms against 3.1 ms). The patches come from a forward
 * convolution with a one-hot filter (each output channel copies one tap exactly), which costs no
 * more than the product itself when kh·kw·ci ≤ co.
 */
function backpropFilterByPatches (inputs: NamedTensorInfoMap, attrs: Conv2DBackpropFilterAttrs): TensorInfo {
  const { strides, pad, dimRoundingMode, filterShape } = attrs
  const [kh, kw, ci, co] = filterShape
  const K = kh * kw * ci
  return tf.tidy(() => {
    const x = asTensor(inputs.x!) as tf.Tensor4D
    const dy = asTensor(inputs.dy!) as tf.Tensor4D
    const ones = new Float32Array(K * K)
    for (let r = 0; r < K; r++) ones[r * K + r] = 1
    const eye = tf.tensor4d(ones, [kh, kw, ci, K])
    const P = tf.reshape(tf.conv2d(x, eye, pair(strides), pad as 'same' | 'valid' | number, 'NHWC', 1, dimRoundingMode), [-1, K]) as tf.Tensor2D
    return tf.reshape(tf.matMul(P, tf.reshape(dy, [-1, co]) as tf.Tensor2D, true, false), filterShape)
  })
}

let originalBackpropInput: KernelConfig['kernelFunc'] | undefined

function backpropInput (args: { inputs: NamedTensorInfoMap, attrs?: unknown, backend: unknown }): TensorInfo | TensorInfo[] {
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = args.attrs as unknown as Conv2DBackpropInputAttrs
  const [sh, sw] = pair(strides)
  if (dataFormat !== 'NHWC') return originalBackpropInput!(args as never)
  const dyInfo = args.inputs.dy!
  const filterInfo = args.inputs.filter!
  const [kh, kw] = filterInfo.shape
  const info = tf.backend_util.computeConv2DInfo(inputShape, filterInfo.shape as [number, number, number, number], [sh, sw], 1, pad, dimRoundingMode)
  // the backend's own strided kernel is about 10× slower than its stride-1 path
  if (sh > 1 || sw > 1) return backpropInputByPhases(dyInfo, filterInfo, inputShape, info.padInfo.top, info.padInfo.left, sh, sw, args.backend as WasmHeapBackend)
  const padTop = kh - 1 - info.padInfo.top
  const padLeft = kw - 1 - info.padInfo.left
  const padBottom = inputShape[1] + kh - 1 - padTop - dyInfo.shape[1]
  const padRight = inputShape[2] + kw - 1 - padLeft - dyInfo.shape[2]
  // a padding this formulation cannot express: the backend's own kernel does it
  if (padTop < 0 || padLeft < 0 || padBottom < 0 || padRight < 0) return originalBackpropInput!(args as never)
  return tf.tidy(() => tf.conv2d(asTensor(dyInfo) as tf.Tensor4D, rotatedFilter(filterInfo, args.backend), 1, [[0, 0], [padTop, padBottom], [padLeft, padRight], [0, 0]]))
}

/** one output phase along one axis of a strided convolution's input gradient (see backpropInputByPhases) */
interface Phase {
  /** the first filter tap of this phase (taps r, r + s, r + 2s, …) */
  r: number
  /** how many taps it has (0: this phase's input positions get no gradient) */
  taps: number
  /** input positions of this phase: a, a + s, … below the input's size */
  positions: number
  /** the first output-gradient row this phase reads (may be negative: padding) */
  start: number
}

function phaseOf (a: number, s: number, pad: number, k: number, size: number): Phase {
  const r = (a + pad) % s
  const taps = r < k ? Math.ceil((k - r) / s) : 0
  const q = Math.floor((a + pad) / s)
  return { r, taps, positions: a < size ? Math.ceil((size - a) / s) : 0, start: q - taps + 1 }
}

/**
 * The input gradient of a convolution with stride s > 1, by output phase: the input positions
 * i ≡ a (mod s) receive gradient only through the taps kh ≡ a + pad (mod s), so each of the s×s
 * phases is a stride-1 convolution of dy with its sub-filter (rotated by 180°, channel axes
 * swapped), and the phases interleave into dx. The multiply-adds are exactly the gradient's own;
 * dilating dy by the stride instead (zeros between its rows and columns) costs s² times as many
 * (measured, ResNet-18 at 128×128, batch 16: 213 ms a step in its three strided 3×3 gradients).
 */
function backpropInputByPhases (dyInfo: TensorInfo, filterInfo: TensorInfo, inputShape: [number, number, number, number], top: number, left: number, sh: number, sw: number, heap: WasmHeapBackend): TensorInfo {
  const [B, H, W, CI] = inputShape
  const [OH, OW] = dyInfo.shape.slice(1, 3) as [number, number]
  const [KH, KW] = filterInfo.shape as [number, number, number, number]
  const rows = Array.from({ length: sh }, (_, a) => phaseOf(a, sh, top, KH, H))
  const cols = Array.from({ length: sw }, (_, c) => phaseOf(c, sw, left, KW, W))
  const pieces: Array<{ a: number, c: number, t: tf.Tensor4D }> = []
  try {
    for (const [a, pr] of rows.entries()) {
      for (const [c, pc] of cols.entries()) {
        if (pr.taps === 0 || pc.taps === 0 || pr.positions === 0 || pc.positions === 0) continue
        pieces.push({ a, c, t: tf.tidy(() => phaseGradient(asTensor(dyInfo) as tf.Tensor4D, subFilter(filterInfo, pr, pc, sh, sw, heap), pr, pc, OH, OW)) })
      }
    }
    // the output after the pieces (allocating may grow the wasm memory and detach earlier views)
    const out = heap.makeOutput([B, H, W, CI], 'float32')
    const dx = heap.typedArrayFromHeap(out)
    const whole = new Float32Array(dx.buffer)
    const base = dx.byteOffset / 4
    if (pieces.length < sh * sw) dx.fill(0) // some positions get no gradient at all
    for (const { a, c, t } of pieces) {
      const piece = heap.typedArrayFromHeap(t)
      const from = piece.byteOffset / 4
      const [, PH, PW] = t.shape
      for (let b = 0; b < B; b++) {
        for (let p = 0; p < PH; p++) {
          const src = from + (b * PH + p) * PW * CI
          const dstRow = base + ((b * H + a + p * sh) * W + c) * CI
          for (let q = 0; q < PW; q++) whole.copyWithin(dstRow + q * sw * CI, src + q * CI, src + (q + 1) * CI)
        }
      }
    }
    return out
  } finally {
    for (const { t } of pieces) t.dispose()
  }
}

/** the stride-1 convolution that gives one phase of the input gradient: dy, cropped or padded to the rows and columns the phase reads */
function phaseGradient (dy: tf.Tensor4D, filter: tf.Tensor4D, pr: Phase, pc: Phase, OH: number, OW: number): tf.Tensor4D {
  const span = (p: Phase, size: number): { from: number, to: number, before: number, after: number } => {
    const end = p.start + p.positions + p.taps - 1
    return { from: Math.max(0, p.start), to: Math.min(size, end), before: Math.max(0, -p.start), after: Math.max(0, end - size) }
  }
  const h = span(pr, OH)
  const w = span(pc, OW)
  const cropped = h.from === 0 && h.to === OH && w.from === 0 && w.to === OW ? dy : tf.slice(dy, [0, h.from, w.from, 0], [-1, h.to - h.from, w.to - w.from, -1])
  return tf.conv2d(cropped, filter, 1, [[0, 0], [h.before, h.after], [w.before, w.after], [0, 0]])
}

/** a phase's taps of the filter [KH, KW, ci, co], rotated by 180° with the channel axes swapped: [taps_h, taps_w, co, ci], one pass on the heap */
function subFilter (filterInfo: TensorInfo, pr: Phase, pc: Phase, sh: number, sw: number, heap: WasmHeapBackend): tf.Tensor4D {
  const [, KW, ci, co] = filterInfo.shape
  const out = heap.makeOutput([pr.taps, pc.taps, co, ci], 'float32')
  const w = heap.typedArrayFromHeap(filterInfo)
  const r = heap.typedArrayFromHeap(out)
  for (let m = 0; m < pr.taps; m++) {
    for (let n = 0; n < pc.taps; n++) {
      const src = ((sh * (pr.taps - 1 - m) + pr.r) * KW + sw * (pc.taps - 1 - n) + pc.r) * ci * co
      const dst = (m * pc.taps + n) * co * ci
      for (let c = 0; c < ci; c++) for (let o = 0; o < co; o++) r[dst + o * ci + c] = w[src + c * co + o]
    }
  }
  return tf.engine().makeTensorFromTensorInfo(out) as tf.Tensor4D
}

interface WasmHeapBackend {
  typedArrayFromHeap (info: TensorInfo): Float32Array
  makeOutput (shape: number[], dtype: 'float32'): TensorInfo
  wasm?: { asm?: { memory?: { buffer: ArrayBuffer } } }
}

/** the SIMD loops of wasm-simd.ts on this backend's memory, or null */
const simdOf = (backend: WasmHeapBackend): SimdKernels | null => simdKernelsFor(backend.wasm?.asm?.memory)

/**
 * MaxPoolGrad: each output's gradient goes to the first maximum of its window (row-major scan),
 * as in the cpu backend. Computed in JavaScript directly on the wasm heap: one pass over the
 * input, channels innermost, which beats the backend's own kernel for the small images here.
 */
function maxPoolGrad ({ inputs, attrs, backend }: { inputs: NamedTensorInfoMap, attrs?: unknown, backend: unknown }): TensorInfo {
  const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as MaxPoolGradAttrs
  const heap = backend as WasmHeapBackend
  const xInfo = inputs.input!
  const info = tf.backend_util.computePool2DInfo(xInfo.shape as [number, number, number, number], filterSize, strides, 1, pad, dimRoundingMode)
  // the output first: allocating it may grow the wasm memory, which detaches every view of the
  // heap taken before (the inputs would then read as empty and the gradient as zeros)
  const out = heap.makeOutput(xInfo.shape, 'float32')
  const x = heap.typedArrayFromHeap(xInfo)
  const dy = heap.typedArrayFromHeap(inputs.dy!)
  const dx = heap.typedArrayFromHeap(out)
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, strideHeight: sh, strideWidth: sw, filterHeight: fh, filterWidth: fw } = info
  const top = info.padInfo.top
  const left = info.padInfo.left
  if (fh === 2 && fw === 2 && sh === 2 && sw === 2 && top === 0 && left === 0 && OH * 2 <= H && OW * 2 <= W) {
    const simd = C % 4 === 0 ? simdOf(heap) : null
    if (simd === null) {
      maxPoolGrad2x2(x, dy, dx, B, H, W, C, OH, OW)
      return out
    }
    // every window's four gradients are written, zeros included: only an odd last row or column is left to the fill
    if (OH * 2 !== H || OW * 2 !== W) dx.fill(0)
    const row = W * C * 4
    for (let b = 0; b < B; b++) {
      for (let oh = 0; oh < OH; oh++) {
        const at = (b * H + 2 * oh) * row
        simd.maxPoolGradRow(x.byteOffset + at, x.byteOffset + at + row, dy.byteOffset + (b * OH + oh) * OW * C * 4, dx.byteOffset + at, dx.byteOffset + at + row, OW, C * 4)
      }
    }
    return out
  }
  dx.fill(0)
  const best = new Float32Array(C)
  const where = new Int32Array(C)
  for (let b = 0; b < B; b++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        best.fill(-Infinity)
        where.fill(-1)
        for (let wr = 0; wr < fh; wr++) {
          const xr = oh * sh - top + wr
          if (xr < 0 || xr >= H) continue
          for (let wc = 0; wc < fw; wc++) {
            const xc = ow * sw - left + wc
            if (xc < 0 || xc >= W) continue
            const base = ((b * H + xr) * W + xc) * C
            for (let c = 0; c < C; c++) {
              const v = x[base + c]
              if (v > best[c]) { best[c] = v; where[c] = base + c }
            }
          }
        }
        const dyBase = ((b * OH + oh) * OW + ow) * C
        for (let c = 0; c < C; c++) if (where[c] >= 0) dx[where[c]] += dy[dyBase + c]
      }
    }
  }
  return out
}

/**
 * The usual case, 2×2 windows at stride 2 without padding: the windows do not overlap, so each
 * output's gradient is written (not added) to the first maximum of its four inputs, compared in
 * the same order and by the same test as the general loop (a NaN is never the maximum).
 */
function maxPoolGrad2x2 (x: Float32Array, dy: Float32Array, dx: Float32Array, B: number, H: number, W: number, C: number, OH: number, OW: number): void {
  dx.fill(0)
  const row = W * C
  for (let b = 0; b < B; b++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        const p0 = ((b * H + 2 * oh) * W + 2 * ow) * C
        const p1 = p0 + C
        const p2 = p0 + row
        const p3 = p2 + C
        const g = ((b * OH + oh) * OW + ow) * C
        for (let c = 0; c < C; c++) {
          let best = -Infinity
          let at = -1
          let v = x[p0 + c]
          if (v > best) { best = v; at = p0 + c }
          v = x[p1 + c]
          if (v > best) { best = v; at = p1 + c }
          v = x[p2 + c]
          if (v > best) { best = v; at = p2 + c }
          v = x[p3 + c]
          if (v > best) { at = p3 + c }
          if (at >= 0) dx[at] = dy[g + c]
        }
      }
    }
  }
}

/** the same tensor with its last two axes swapped (a copy) */
function swapLastTwo (info: TensorInfo): tf.Tensor {
  const r = info.shape.length
  const perm = Array.from({ length: r }, (_, i) => i < r - 2 ? i : (i === r - 2 ? r - 1 : r - 2))
  return tf.tidy(() => tf.transpose(asTensor(info), perm))
}

/**
 * Transpose that swaps the last two axes (a matrix, or a batch of them), in 32×32 tiles on the
 * heap: the backend's kernel walks the output with the input's stride and took 27.7 ms for the
 * [65536, 49] patches of ResNet-18's stem (a cache miss an element); other permutations keep it.
 */
function transposeLastTwo (own: KernelConfig['kernelFunc']) {
  return (args: { inputs: NamedTensorInfoMap, attrs?: unknown, backend: unknown }): TensorInfo | TensorInfo[] => {
    const xInfo = args.inputs.x!
    const { perm } = args.attrs as { perm: number[] }
    const r = perm.length
    const swapsLastTwo = r >= 2 && perm.every((p, i) => i < r - 2 ? p === i : p === (i === r - 2 ? r - 1 : r - 2))
    if (!swapsLastTwo || xInfo.dtype !== 'float32') return own(args as never)
    const rows = xInfo.shape[r - 2]
    const cols = xInfo.shape[r - 1]
    // smaller ones are as fast or faster through the backend (in place in a training step: 0.1 ms for [25088, 9])
    if (rows * cols < 1 << 20) return own(args as never)
    const heap = args.backend as WasmHeapBackend
    // the output first (see maxPoolGrad: allocating may detach earlier views of the heap)
    const out = heap.makeOutput([...xInfo.shape.slice(0, r - 2), cols, rows], 'float32')
    const x = heap.typedArrayFromHeap(xInfo)
    const y = heap.typedArrayFromHeap(out)
    const T = 32
    for (let m = 0; m < x.length; m += rows * cols) {
      for (let i0 = 0; i0 < rows; i0 += T) {
        const i1 = Math.min(rows, i0 + T)
        for (let j0 = 0; j0 < cols; j0 += T) {
          const j1 = Math.min(cols, j0 + T)
          for (let j = j0; j < j1; j++) {
            const dst = m + j * rows
            for (let i = i0; i < i1; i++) y[dst + i] = x[m + i * cols + j]
          }
        }
      }
    }
    return out
  }
}

/** a matrix-product kernel that hands the backend untransposed operands */
function untransposed (own: KernelConfig['kernelFunc']) {
  return (args: { inputs: NamedTensorInfoMap, attrs?: unknown, backend: unknown }): TensorInfo | TensorInfo[] => {
    const attrs = args.attrs as { transposeA: boolean, transposeB: boolean }
    if (!attrs.transposeA && !attrs.transposeB) return own(args as never)
    const a = attrs.transposeA ? swapLastTwo(args.inputs.a!) : null
    const b = attrs.transposeB ? swapLastTwo(args.inputs.b!) : null
    try {
      return own({ ...args, inputs: { ...args.inputs, a: a ?? args.inputs.a, b: b ?? args.inputs.b }, attrs: { ...attrs, transposeA: false, transposeB: false } } as never)
    } finally {
      a?.dispose(); b?.dispose()
    }
  }
}

/** rows a float32 partial sum runs over before it is folded into the float64 total */
const SUM_BLOCK_ROWS = 32

/** Sum (or Mean) over leading axes, one pass over the input on the wasm heap; other reductions keep the backend's kernel */
function reduceLeading (own: KernelConfig['kernelFunc'], mean: boolean) {
  return (args: { inputs: NamedTensorInfoMap, attrs?: unknown, backend: unknown }): TensorInfo | TensorInfo[] => {
    const xInfo = args.inputs.x!
    const { axis, keepDims } = args.attrs as { axis: number | number[], keepDims: boolean }
    const rank = xInfo.shape.length
    const axes = [...new Set((Array.isArray(axis) ? axis : [axis]).map(a => a < 0 ? a + rank : a))].sort((a, b) => a - b)
    const leading = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i)
    if (!leading || xInfo.dtype !== 'float32') return own(args as never)
    const heap = args.backend as WasmHeapBackend
    const innerShape = xInfo.shape.slice(axes.length)
    const inner = innerShape.reduce((a, b) => a * b, 1)
    // the output first (see maxPoolGrad: allocating may detach earlier views of the heap)
    const out = heap.makeOutput(keepDims ? [...axes.map(() => 1), ...innerShape] : innerShape, 'float32')
    const x = heap.typedArrayFromHeap(xInfo)
    const acc = new Float64Array(inner)
    const simd = inner % 4 === 0 ? simdOf(heap) : null
    if (simd === null) {
      for (let o = 0; o < x.length; o += inner) for (let i = 0; i < inner; i++) acc[i] += x[o + i]
    } else {
      // blocks of rows summed in float32 by SIMD into the output (its scratch until the end), folded here in float64
      const block = heap.typedArrayFromHeap(out)
      const rows = x.length / inner
      for (let r = 0; r < rows; r += SUM_BLOCK_ROWS) {
        simd.columnSums(x.byteOffset + r * inner * 4, block.byteOffset, Math.min(SUM_BLOCK_ROWS, rows - r), inner * 4)
        for (let i = 0; i < inner; i++) acc[i] += block[i]
      }
    }
    if (mean) { const rows = x.length / inner; for (let i = 0; i < inner; i++) acc[i] /= rows }
    heap.typedArrayFromHeap(out).set(acc)
    return out
  }
}

/**
 * Tile of a tensor that is 1 along the repeated leading axes (a per-channel vector broadcast to a
 * whole activation, as BatchNorm's gradient does): the same block copied end to end on the heap,
 * where the backend's general kernel took 0.76 s a step for ResNet-18 at 128×128.
 */
function tileBlocks (own: KernelConfig['kernelFunc']) {
  return (args: { inputs: NamedTensorInfoMap, attrs?: unknown, backend: unknown }): TensorInfo | TensorInfo[] => {
    const xInfo = args.inputs.x!
    const { reps } = args.attrs as { reps: number[] }
    const k = reps.findIndex((_, i) => reps.slice(i).every(q => q === 1))
    const split = k === -1 ? reps.length : k
    if (xInfo.dtype !== 'float32' || !xInfo.shape.slice(0, split).every(d => d === 1)) return own(args as never)
    const heap = args.backend as WasmHeapBackend
    const out = heap.makeOutput(xInfo.shape.map((d, i) => d * reps[i]), 'float32')
    const x = heap.typedArrayFromHeap(xInfo)
    const y = heap.typedArrayFromHeap(out)
    for (let o = 0; o < y.length; o += x.length) y.set(x, o)
    return out
  }
}

/** a filter [kh, kw, ci, co] rotated by 180° with its channel axes swapped: [kh, kw, co, ci], one pass on the heap (the backend's Reverse took 62 ms for 3×3×512×512) */
function rotatedFilter (filterInfo: TensorInfo, backend: unknown): tf.Tensor4D {
  const heap = backend as WasmHeapBackend
  const [kh, kw, ci, co] = filterInfo.shape
  const out = heap.makeOutput([kh, kw, co, ci], 'float32')
  const w = heap.typedArrayFromHeap(filterInfo)
  const r = heap.typedArrayFromHeap(out)
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const src = (i * kw + j) * ci * co
      const dst = ((kh - 1 - i) * kw + (kw - 1 - j)) * co * ci
      for (let c = 0; c < ci; c++) for (let o = 0; o < co; o++) r[dst + o * ci + c] = w[src + c * co + o]
    }
  }
  return tf.engine().makeTensorFromTensorInfo(out) as tf.Tensor4D
}

let registered = false

/** Register the kernels on the wasm backend (idempotent). */
export function registerWasmGradientKernels (): void {
  if (registered) return
  registered = true
  tf.registerKernel({ kernelName: tf.Conv2DBackpropFilter, backendName: 'wasm', kernelFunc: backpropFilter as never })
  // the backend's own kernel, kept for the cases the replacement hands back to it
  const wrap = (name: string, make: (own: KernelConfig['kernelFunc']) => unknown): void => {
    const k = tf.getKernel(name, 'wasm')
    if (k === undefined) return
    tf.unregisterKernel(name, 'wasm')
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: make(k.kernelFunc) as never, setupFunc: k.setupFunc })
  }
  wrap(tf.Conv2DBackpropInput, own => { originalBackpropInput = own; return backpropInput })
  wrap(tf.BatchMatMul, untransposed)
  wrap(tf._FusedMatMul, untransposed)
  wrap(tf.Sum, own => reduceLeading(own, false))
  wrap(tf.Mean, own => reduceLeading(own, true))
  wrap(tf.Tile, tileBlocks)
  wrap(tf.Transpose, transposeLastTwo)
  if (tf.getKernel(tf.MaxPoolGrad, 'wasm') !== undefined) tf.unregisterKernel(tf.MaxPoolGrad, 'wasm')
  tf.registerKernel({ kernelName: tf.MaxPoolGrad, backendName: 'wasm', kernelFunc: maxPoolGrad as never })
}
