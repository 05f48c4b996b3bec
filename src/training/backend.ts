/**
 * Pick the fastest TF.js backend that loads here: native TensorFlow with a GPU, native
 * TensorFlow on the CPU, WebAssembly (with medmesh's gradient kernels), or pure JavaScript.
 * The native packages are optional dependencies: where libtensorflow could not be downloaded
 * (air-gapped hospitals, this CI) they are simply absent.
 */
import * as tf from '@tensorflow/tfjs-core'
// tfjs-layers' Node bundle registers every op's gradient with tfjs-core
import '@tensorflow/tfjs-layers'
import '@tensorflow/tfjs-backend-cpu'
import '@tensorflow/tfjs-backend-wasm'
import { registerWasmGradientKernels } from './wasm-kernels.ts'
import { nativeKernelStatus, registerNativeConvKernels } from './native-kernels.ts'

export const BACKENDS = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const
export type BackendName = typeof BACKENDS[number]

export interface BackendChoice {
  name: BackendName
  /** why the faster ones were not used */
  skipped: Array<{ name: BackendName, reason: string }>
}

async function tryNative (pkg: string): Promise<string | null> {
  try {
    await import(pkg)
    return (await tf.setBackend('tensorflow')) ? null : 'did not initialise'
  } catch (e) {
    return (e as Error).message.split('\n')[0].slice(0, 160)
  }
}

let current: BackendChoice | null = null

/**
 * Select a backend: `preferred` alone if given (throws if it does not load), else the first of
 * BACKENDS that loads. Safe to call again: returns the earlier choice unless `preferred` differs.
 */
export async function selectBackend (preferred?: BackendName | 'auto'): Promise<BackendChoice> {
  if (current !== null && (preferred === undefined || preferred === 'auto' || preferred === current.name)) return current
  const order = preferred === undefined || preferred === 'auto' ? BACKENDS : [preferred]
  const skipped: BackendChoice['skipped'] = []
  for (const name of order) {
    let reason: string | null
    if (name === 'tensorflow-gpu') reason = await tryNative('@tensorflow/tfjs-node-gpu')
    else if (name === 'tensorflow') reason = await tryNative('@tensorflow/tfjs-node')
    else if (name === 'wasm') {
      registerWasmGradientKernels()
      registerNativeConvKernels()
      reason = (await tf.setBackend('wasm').catch(() => false)) ? null : 'the wasm backend did not initialise'
    } else reason = (await tf.setBackend('cpu')) ? null : 'the cpu backend did not initialise'
    if (reason === null) {
      await tf.ready()
      current = { name, skipped }
      return current
    }
    skipped.push({ name, reason })
  }
  throw new Error(`no TF.js backend could be loaded: ${skipped.map(s => `${s.name}: ${s.reason}`).join('; ')}`)
}

/**
 * One line on the backend in use. The native TensorFlow packages are optional: that they are
 * not installed is information (said once, without the loader's message); any other reason a
 * faster backend did not load is shown as it came.
 */
export function describeBackend (choice: BackendChoice): string {
  const absent = choice.skipped.filter(s => /^Cannot find (package|module)/.test(s.reason))
  const failed = choice.skipped.filter(s => !absent.includes(s))
  const notes = [
    ...(absent.length > 0 ? [`the optional native backend${absent.length > 1 ? 's' : ''} (${absent.map(s => s.name).join(', ')}) ${absent.length > 1 ? 'are' : 'is'} not installed`] : []),
    ...failed.map(s => `${s.name} did not load: ${s.reason}`)
  ]
  if (choice.name === 'wasm') {
    const n = nativeKernelStatus()
    notes.push(n.active ? `convolutions through oneDNN ${n.version} (${n.isa})` : `convolutions in WebAssembly: the oneDNN addon is ${n.reason}`)
  }
  return `TF.js backend: ${choice.name}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`
}
