/**
 * The sum of one vector per worker thread, through shared memory: each worker writes its vector
 * into its own slot, waits at a barrier for the others, and sums the slots in worker order, so
 * every worker gets the same total whatever the timing. Slots alternate between two banks by
 * step: a worker that races ahead to the next step writes to the other bank while a slower one
 * still reads this one, and cannot come round to this bank again before that one has arrived at
 * the next barrier.
 */
import type { DataParallel } from './trainer.ts'

export interface SharedReduceBuffers {
  /** 2 banks × count slots × length float32 */
  slots: SharedArrayBuffer
  /** [arrived, generation] */
  barrier: SharedArrayBuffer
  length: number
}

export function allocateReduceBuffers (count: number, length: number): SharedReduceBuffers {
  return { slots: new SharedArrayBuffer(2 * count * length * 4), barrier: new SharedArrayBuffer(8), length }
}

export class ReduceTimeoutError extends Error {
  constructor (message: string) { super(message); this.name = 'ReduceTimeoutError' }
}

/** Worker `index` of `count`'s side of the sum; a worker that waits longer than `timeoutMs` for the others throws (one of them failed). */
export function sharedAllReduce (b: SharedReduceBuffers, index: number, count: number, timeoutMs = 120_000): DataParallel {
  const slots = new Float32Array(b.slots)
  const sync = new Int32Array(b.barrier)
  let step = 0
  const arrive = (): void => {
    const generation = Atomics.load(sync, 1)
    if (Atomics.add(sync, 0, 1) === count - 1) {
      Atomics.store(sync, 0, 0)
      Atomics.add(sync, 1, 1)
      Atomics.notify(sync, 1)
      return
    }
    while (Atomics.load(sync, 1) === generation) {
      if (Atomics.wait(sync, 1, generation, timeoutMs) === 'timed-out') throw new ReduceTimeoutError(`training worker ${index} waited ${timeoutMs / 1000} s for the others at step ${step}: one of them failed`)
    }
  }
  return {
    index,
    count,
    allReduce (values: Float32Array): Float32Array {
      if (values.length > b.length) throw new RangeError(`a vector of ${values.length} does not fit the shared slots of ${b.length}`)
      const bank = (step++ & 1) * count * b.length
      slots.set(values, bank + index * b.length)
      arrive()
      const total = new Float32Array(values.length)
      for (let w = 0; w < count; w++) {
        const slot = slots.subarray(bank + w * b.length, bank + w * b.length + values.length)
        for (let i = 0; i < values.length; i++) total[i] += slot[i]
      }
      return total
    }
  }
}
