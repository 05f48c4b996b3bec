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
 * Conv2DBackpropInput (dL/dx), stride 1: a convolution of dy with the filter rotated by 180°
 * and its channel axes swapped, padded by (K-1-p) on each side. Strided cases keep the backend's
 * own kernel.
 *
 * Each kernel is verified against the pure-JS `cpu` backend on random shapes in
 * test/training/wasm-kernels.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core'
import type { Conv2DBackpropFilterAttrs, Conv2DBackpropInputAttrs, KernelConfig, MaxPoolGradAttrs, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core'

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

let originalBackpropInput: KernelConfig['kernelFunc'] | undefined

function backpropInput (args: { inputs: NamedTensorInfoMap, attrs?: unknown, backend: unknown }): TensorInfo | TensorInfo[] {
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = args.attrs as unknown as Conv2DBackpropInputAttrs
  const [sh, sw] = pair(strides)
  if (dataFormat !== 'NHWC' || sh !== 1 || sw !== 1) return originalBackpropInput!(args as never)
  const dyInfo = args.inputs.dy!
  const filterInfo = args.inputs.filter!
  const [kh, kw] = filterInfo.shape
  const info = tf.backend_util.computeConv2DInfo(inputShape, filterInfo.shape as [number, number, number, number], 1, 1, pad, dimRoundingMode)
  const padTop = kh - 1 - info.padInfo.top
  const padLeft = kw - 1 - info.padInfo.left
  const padBottom = inputShape[1] + kh - 1 - padTop - dyInfo.shape[1]
  const padRight = inputShape[2] + kw - 1 - padLeft - dyInfo.shape[2]
  // a padding this formulation cannot express: the backend's own kernel does it
  if (padTop < 0 || padLeft < 0 || padBottom < 0 || padRight < 0) return originalBackpropInput!(args as never)
  return tf.tidy(() => {
    const dy = asTensor(dyInfo) as tf.Tensor4D
    const filter = asTensor(filterInfo) as tf.Tensor4D
    const rotated = tf.transpose(tf.reverse(filter, [0, 1]), [0, 1, 3, 2]) // [kh, kw, co, ci]
    return tf.conv2d(dy, rotated, 1, [[0, 0], [padTop, padBottom], [padLeft, padRight], [0, 0]])
  })
}

interface WasmHeapBackend {
  typedArrayFromHeap (info: TensorInfo): Float32Array
  makeOutput (shape: number[], dtype: 'float32'): TensorInfo
}

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
  dx.fill(0)
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, strideHeight: sh, strideWidth: sw, filterHeight: fh, filterWidth: fw } = info
  const top = info.padInfo.top
  const left = info.padInfo.left
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

let registered = false

/** Register the kernels on the wasm backend (idempotent). */
export function registerWasmGradientKernels (): void {
  if (registered) return
  registered = true
  tf.registerKernel({ kernelName: tf.Conv2DBackpropFilter, backendName: 'wasm', kernelFunc: backpropFilter as never })
  const own = tf.getKernel(tf.Conv2DBackpropInput, 'wasm')
  if (own !== undefined) {
    originalBackpropInput = own.kernelFunc
    tf.unregisterKernel(tf.Conv2DBackpropInput, 'wasm')
    tf.registerKernel({ kernelName: tf.Conv2DBackpropInput, backendName: 'wasm', kernelFunc: backpropInput as never, setupFunc: own.setupFunc })
  }
  if (tf.getKernel(tf.MaxPoolGrad, 'wasm') !== undefined) tf.unregisterKernel(tf.MaxPoolGrad, 'wasm')
  tf.registerKernel({ kernelName: tf.MaxPoolGrad, backendName: 'wasm', kernelFunc: maxPoolGrad as never })
}
