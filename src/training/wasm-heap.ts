/**
 * What medmesh's kernels for the TF.js wasm backend share: a view of a kernel's input as a Tensor,
 * the backend's heap as they use it, and putting a kernel of one's own in front of the backend's.
 */
import * as tf from '@tensorflow/tfjs-core'
import type { KernelConfig, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core'

/**
 * A Tensor view of a kernel input. makeTensorFromTensorInfo does not take a reference on the
 * data, but disposing the view gives one up: take it first, or the input's data would be freed.
 */
export function asTensor (info: TensorInfo): tf.Tensor {
  tf.engine().backend.incRef(info.dataId)
  return tf.engine().makeTensorFromTensorInfo(info)
}

export const pair = (v: number | [number, number]): [number, number] => typeof v === 'number' ? [v, v] : v

/**
 * The wasm backend as these kernels use it. Allocating an output may grow the wasm memory, which
 * detaches every view of the heap taken before: allocate outputs first, then take views.
 */
export interface WasmHeapBackend {
  typedArrayFromHeap (info: TensorInfo): Float32Array
  makeOutput (shape: number[], dtype: 'float32'): TensorInfo
  disposeData (dataId: object): boolean
  wasm?: { asm?: { memory?: { buffer: ArrayBuffer } } }
}

export type KernelArgs = { inputs: NamedTensorInfoMap, attrs?: unknown, backend: unknown }
export type KernelFunc = (args: KernelArgs) => TensorInfo | TensorInfo[]

/** Register `make(own)` for a wasm kernel in place of `own`, the kernel registered now (kept for what the new one hands back); nothing where there is none. */
export function wrapWasmKernel (name: string, make: (own: KernelFunc) => KernelFunc): void {
  const k = tf.getKernel(name, 'wasm')
  if (k === undefined) return
  tf.unregisterKernel(name, 'wasm')
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: make(k.kernelFunc as KernelFunc) as KernelConfig['kernelFunc'], setupFunc: k.setupFunc })
}
