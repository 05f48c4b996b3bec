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
 * Conv2DBackpropInput (dL/dx): in wasm-input-grad.ts, on the same forward convolution.
 *
 * Tile, Mean and Transpose of the last two axes: loops on the heap where
 * the backend's kernels were slow.
 *
 * Each kernel is verified against the pure-JS `cpu` backend on random shapes in
 * test/training/wasm-kernels.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core'
import type { Conv2DBackpropFilterAttrs, MaxPoolGradAttrs, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core'
import { simdKernelsFor, type SimdKernels } from './wasm-simd.ts'
import { asTensor, pair, wrapWasmKernel, type KernelArgs, type KernelFunc, type WasmHeapBackend } from './wasm-heap.ts'
import { backpropInputWith } from './wasm-input-grad.ts'

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
function transposeLastTwo (own: KernelFunc) {
  return (args: KernelArgs): TensorInfo | TensorInfo[] => {
    const xInfo = args.inputs.x!
    const { perm } = args.attrs as { perm: number[] }
    const r = perm.length
    const swapsLastTwo = r >= 2 && perm.every((p, i) => i < r - 2 ? p === i : p === (i === r - 2 ? r - 1 : r - 2))
    if (!swapsLastTwo || xInfo.dtype !== 'float32') return own(args)
    const rows = xInfo.shape[r - 2]
    const cols = xInfo.shape[r - 1]
    // smaller ones are as fast or faster through the backend (in place in a training step: 0.1 ms for [25088, 9])
    if (rows * cols < 1 << 20) return own(args)
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
function untransposed (own: KernelFunc) {
  return (args: KernelArgs): TensorInfo | TensorInfo[] => {
    const attrs = args.attrs as { transposeA: boolean, transposeB: boolean }
    if (!attrs.transposeA && !attrs.transposeB) return own(args)
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
function reduceLeading (own: KernelFunc, mean: boolean) {
  return (args: KernelArgs): TensorInfo | TensorInfo[] => {
    const xInfo = args.inputs.x!
    const { axis, keepDims } = args.attrs as { axis: number | number[], keepDims: boolean }
    const rank = xInfo.shape.length
    const axes = [...new Set((Array.isArray(axis) ? axis : [axis]).map(a => a < 0 ? a + rank : a))].sort((a, b) => a - b)
    const leading = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i)
    if (!leading || xInfo.dtype !== 'float32') return own(args)
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
function tileBlocks (own: KernelFunc) {
  return (args: KernelArgs): TensorInfo | TensorInfo[] => {
    const xInfo = args.inputs.x!
    const { reps } = args.attrs as { reps: number[] }
    const k = reps.findIndex((_, i) => reps.slice(i).every(q => q === 1))
    const split = k === -1 ? reps.length : k
    if (xInfo.dtype !== 'float32' || !xInfo.shape.slice(0, split).every(d => d === 1)) return own(args)
    const heap = args.backend as WasmHeapBackend
    const out = heap.makeOutput(xInfo.shape.map((d, i) => d * reps[i]), 'float32')
    const x = heap.typedArrayFromHeap(xInfo)
    const y = heap.typedArrayFromHeap(out)
    for (let o = 0; o < y.length; o += x.length) y.set(x, o)
    return out
  }
}


let registered = false

/** Register the kernels on the wasm backend (idempotent). */
export function registerWasmGradientKernels (): void {
  if (registered) return
  registered = true
  tf.registerKernel({ kernelName: tf.Conv2DBackpropFilter, backendName: 'wasm', kernelFunc: backpropFilter as never })
  // each in front of the backend's own kernel, kept for the cases it hands back
  wrapWasmKernel(tf.Conv2DBackpropInput, backpropInputWith)
  wrapWasmKernel(tf.BatchMatMul, untransposed)
  wrapWasmKernel(tf._FusedMatMul, untransposed)
  wrapWasmKernel(tf.Sum, own => reduceLeading(own, false))
  wrapWasmKernel(tf.Mean, own => reduceLeading(own, true))
  wrapWasmKernel(tf.Tile, tileBlocks)
  wrapWasmKernel(tf.Transpose, transposeLastTwo)
  if (tf.getKernel(tf.MaxPoolGrad, 'wasm') !== undefined) tf.unregisterKernel(tf.MaxPoolGrad, 'wasm')
  tf.registerKernel({ kernelName: tf.MaxPoolGrad, backendName: 'wasm', kernelFunc: maxPoolGrad as never })
}
