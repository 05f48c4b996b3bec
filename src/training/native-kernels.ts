/**
 * Convolutions through oneDNN on the wasm backend's heap: Conv2D, Conv2DBackpropInput and
 * Conv2DBackpropFilter, the kernels that set the pace of training (74% of a ResNet-18 step at
 * 128×128 on the WebAssembly kernels, bench:profile). oneDNN is the library PyTorch's own CPU
 * convolutions run on; Debian ships it (libdnnl-dev), and `npm install` builds the small addon
 * in native/ against it where it and a C++ compiler are present (scripts/build-native.mjs).
 *
 * Where the addon is absent, or fails on a shape, the WebAssembly kernels (wasm-kernels.ts) run
 * as before: the results are the same to float rounding (test/training/native-kernels.test.ts
 * checks both against the pure-JS cpu backend). MEDMESH_NATIVE_KERNELS=0 turns them off.
 *
 * The addon reads and writes the tensors where the backend keeps them (no copies): it gets the
 * heap's ArrayBuffer and byte offsets, and checks that every tensor lies inside it.
 */
import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs-core'
import type { Conv2DAttrs, Conv2DBackpropFilterAttrs, Conv2DBackpropInputAttrs, KernelConfig, TensorInfo } from '@tensorflow/tfjs-core'
import { pair, wrapWasmKernel, type KernelArgs, type KernelFunc, type WasmHeapBackend } from './wasm-heap.ts'

export interface Addon {
  conv: (kind: number, heap: ArrayBuffer, a: number, b: number, out: number, geometry: Int32Array) => string
  version: () => string
  /** the instruction set oneDNN's kernels use here (capped by ONEDNN_MAX_CPU_ISA where set) */
  isa: () => string
}

/** where `npm install` leaves the addon */
export const ADDON_PATH = fileURLToPath(new URL('../../native/build/medmesh-dnnl.node', import.meta.url))

export interface NativeKernelStatus {
  /** the convolutions run through oneDNN */
  active: boolean
  /** oneDNN's version, where the addon loaded */
  version?: string
  /** the instruction set its kernels use on this CPU (SSE41, AVX, AVX2, AVX512_CORE, …) */
  isa?: string
  /** why not, where they do not */
  reason?: string
}

let addon: Addon | null | undefined
let loadReason = ''
let enabled = process.env.MEDMESH_NATIVE_KERNELS !== '0'
/** shapes the addon refused (logged once each), left to the WebAssembly kernels */
const refused = new Set<string>()
/** the addon's kinds of call (native/dnnl-kernels.cc) */
const KIND = { forward: 0, backwardData: 1, backwardWeights: 2, perExampleNorms: 3 } as const
/** oneDNN calls in this thread, by kind */
const calls = [0, 0, 0, 0]

/** how many kernels oneDNN has run in this thread, of one kind or in all (tests: that the path was taken) */
export function nativeKernelCalls (kind?: keyof typeof KIND): number { return kind === undefined ? calls.reduce((a, b) => a + b, 0) : calls[KIND[kind]] }

/** For tests: the addon itself, where it loads. */
export function nativeAddon (): Addon | null { return load() }

function load (): Addon | null {
  if (addon !== undefined) return addon
  if (!existsSync(ADDON_PATH)) {
    loadReason = 'not built (npm install builds it where libdnnl-dev and a C++ compiler are installed: apt-get install libdnnl-dev g++)'
    addon = null
    return null
  }
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as Addon
  } catch (e) {
    loadReason = `did not load: ${(e as Error).message.split('\n')[0].slice(0, 160)}`
    addon = null
  }
  return addon
}

/** Whether the convolutions run through oneDNN, and if not, why. */
export function nativeKernelStatus (): NativeKernelStatus {
  if (!enabled) return { active: false, reason: 'turned off (MEDMESH_NATIVE_KERNELS=0 or a test)' }
  const a = load()
  return a === null ? { active: false, reason: loadReason } : { active: true, version: a.version(), isa: a.isa() }
}

/** For tests and benchmarks: run the convolutions through oneDNN where it loads (the default) or not. */
export function useNativeKernels (on: boolean): void { enabled = on }

/**
 * Run one convolution kernel through the addon, or give null (the caller's own kernel runs):
 * not loaded, turned off, a layout it does not take, or a shape it refused before.
 */
function viaAddon (kind: number, a: TensorInfo, b: TensorInfo, xShape: number[], filterShape: number[], strides: number | [number, number], pad: Conv2DAttrs['pad'], dimRoundingMode: Conv2DAttrs['dimRoundingMode'], heap: WasmHeapBackend): TensorInfo | null {
  if (!enabled || a.dtype !== 'float32' || b.dtype !== 'float32') return null
  const native = load()
  if (native === null) return null
  const info = tf.backend_util.computeConv2DInfo(xShape as [number, number, number, number], filterShape as [number, number, number, number], pair(strides), 1, pad, dimRoundingMode)
  const p = info.padInfo
  const geometry = Int32Array.from([info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth, info.outChannels, info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth, p.top, p.left, p.bottom, p.right])
  if (geometry.some((v, i) => i < 11 ? v < 1 : v < 0)) return null
  // each operand must have exactly the shape the geometry gives it (TF.js checks ranks and
  // channels only: a smaller dy would otherwise be read past its end, into other tensors)
  const shapes = {
    x: [info.batchSize, info.inHeight, info.inWidth, info.inChannels],
    y: [info.batchSize, info.outHeight, info.outWidth, info.outChannels],
    w: [info.filterHeight, info.filterWidth, info.inChannels, info.outChannels]
  }
  const [wantA, wantB, outShape] = kind === KIND.forward ? [shapes.x, shapes.w, shapes.y] : kind === KIND.backwardData ? [shapes.y, shapes.w, shapes.x]
    : kind === KIND.backwardWeights ? [shapes.x, shapes.y, shapes.w] : [shapes.x, shapes.y, [info.batchSize]]
  const same = (s: number[], t: number[]): boolean => s.length === t.length && s.every((d, i) => d === t[i])
  if (!same(a.shape, wantA) || !same(b.shape, wantB)) return null
  const key = `${kind}:${geometry.join(',')}`
  if (refused.has(key)) return null
  // the output first: allocating may grow the wasm memory, which detaches earlier views of it
  const out = heap.makeOutput(outShape, 'float32')
  const o = heap.typedArrayFromHeap(out)
  try {
    native.conv(kind, o.buffer as ArrayBuffer, heap.typedArrayFromHeap(a).byteOffset, heap.typedArrayFromHeap(b).byteOffset, o.byteOffset, geometry)
    calls[kind]++
    return out
  } catch (e) {
    heap.disposeData(out.dataId)
    refused.add(key)
    console.warn(`medmesh: oneDNN refused a convolution (${['forward', 'input gradient', 'filter gradient', 'per-example filter gradient norms'][kind]}, [N,IH,IW,IC,OH,OW,OC,KH,KW,SH,SW,PT,PL,PB,PR] = [${geometry.join(',')}]): ${(e as Error).message}; the WebAssembly kernel runs it`)
    return null
  }
}

function forward (own: KernelFunc): KernelFunc {
  return args => {
    const { strides, pad, dataFormat, dilations, dimRoundingMode } = args.attrs as unknown as Conv2DAttrs
    const x = args.inputs.x!
    const filter = args.inputs.filter!
    if (dataFormat !== 'NHWC' || pair(dilations).some(d => d !== 1)) return own(args)
    return viaAddon(KIND.forward, x, filter, x.shape, filter.shape, strides, pad, dimRoundingMode, args.backend as WasmHeapBackend) ?? own(args)
  }
}

function backwardData (own: KernelFunc): KernelFunc {
  return args => {
    const { strides, pad, dataFormat, dimRoundingMode, inputShape } = args.attrs as unknown as Conv2DBackpropInputAttrs
    if (dataFormat !== 'NHWC') return own(args)
    const filter = args.inputs.filter!
    return viaAddon(KIND.backwardData, args.inputs.dy!, filter, inputShape, filter.shape, strides, pad, dimRoundingMode, args.backend as WasmHeapBackend) ?? own(args)
  }
}

function backwardWeights (own: KernelFunc): KernelFunc {
  return args => {
    const { strides, pad, dataFormat, dimRoundingMode, filterShape } = args.attrs as unknown as Conv2DBackpropFilterAttrs
    if (dataFormat !== 'NHWC') return own(args)
    const x = args.inputs.x!
    return viaAddon(KIND.backwardWeights, x, args.inputs.dy!, x.shape, filterShape, strides, pad, dimRoundingMode, args.backend as WasmHeapBackend) ?? own(args)
  }
}

/** the kernel behind perExampleFilterGradNorms (registered on the wasm backend only) */
const PER_EXAMPLE_NORMS = 'MedmeshPerExampleFilterGradNorms'
interface PerExampleNormsAttrs { strides: [number, number], pad: 'same' | 'valid', filterShape: [number, number, number, number] }

function perExampleNormsKernel (args: KernelArgs): TensorInfo {
  const { strides, pad, filterShape } = args.attrs as unknown as PerExampleNormsAttrs
  const x = args.inputs.x!
  const out = viaAddon(KIND.perExampleNorms, x, args.inputs.dy!, x.shape, filterShape, strides, pad, undefined, args.backend as WasmHeapBackend)
  if (out === null) throw new Error(PER_EXAMPLE_NORMS + ' not available for this shape')
  return out
}

/**
 * Each example's squared norm of a convolution's filter gradient, ‖Σ_{positions} x_b ⊗ dy_b‖²,
 * for DP-SGD's clipping: through oneDNN, one batch-of-one filter gradient after another (about
 * seven times faster than the depthwise formulation per-example.ts falls back to, on cnn-small).
 * Null where oneDNN does not run (another backend, the addon absent or turned off, a shape it
 * refused): the caller computes them its own way.
 */
export function perExampleFilterGradNorms (x: tf.Tensor4D, dy: tf.Tensor4D, strides: [number, number], pad: 'same' | 'valid', filterShape: [number, number, number, number]): tf.Tensor1D | null {
  if (!enabled || tf.getBackend() !== 'wasm' || tf.getKernel(PER_EXAMPLE_NORMS, 'wasm') === undefined || load() === null) return null
  try {
    return tf.engine().runKernel(PER_EXAMPLE_NORMS, { x, dy }, { strides, pad, filterShape } as never) as tf.Tensor1D
  } catch {
    return null
  }
}

let registered = false

/**
 * Put the oneDNN convolutions in front of the wasm backend's (call after
 * registerWasmGradientKernels: the kernels registered then are what a refused shape falls back to).
 */
export function registerNativeConvKernels (): void {
  if (registered) return
  registered = true
  wrapWasmKernel(tf.Conv2D, forward)
  wrapWasmKernel(tf.Conv2DBackpropInput, backwardData)
  wrapWasmKernel(tf.Conv2DBackpropFilter, backwardWeights)
  tf.registerKernel({ kernelName: PER_EXAMPLE_NORMS, backendName: 'wasm', kernelFunc: perExampleNormsKernel as KernelConfig['kernelFunc'] })
}
