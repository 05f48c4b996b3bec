/**
 * Conv2DBackpropInput (dL/dx) on the wasm backend's fast forward convolution: a convolution of dy
 * with the filter rotated by 180° and its channel axes swapped, padded by (K-1-p) on each side; at
 * strides above 1, one such convolution per output phase with that phase's taps of the filter
 * (backpropInputByPhases). Checked against the cpu backend in test/training/wasm-kernels.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core'
import type { Conv2DBackpropInputAttrs, TensorInfo } from '@tensorflow/tfjs-core'
import { asTensor, pair, type KernelArgs, type KernelFunc, type WasmHeapBackend } from './wasm-heap.ts'

/** the kernel, handing what it cannot express to `own` (the backend's) */
export function backpropInputWith (own: KernelFunc): KernelFunc {
  return args => backpropInput(args, own)
}

function backpropInput (args: KernelArgs, own: KernelFunc): TensorInfo | TensorInfo[] {
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = args.attrs as unknown as Conv2DBackpropInputAttrs
  const [sh, sw] = pair(strides)
  if (dataFormat !== 'NHWC') return own(args)
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
  if (padTop < 0 || padLeft < 0 || padBottom < 0 || padRight < 0) return own(args)
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
