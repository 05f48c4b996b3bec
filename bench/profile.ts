/**
 * bench/profile: where one training step's time goes, kernel by kernel, on the backend in use.
 * Every kernel registered for the backend is wrapped with a timer (exclusive time: a kernel
 * written in terms of other kernels, such as medmesh's gradient kernels, is charged only for
 * what its inner kernels do not account for); the rest of the step is TF.js's own bookkeeping
 * (tape, gradient functions, tensor creation) and medmesh's (batch assembly, augmentation).
 *
 * Usage: npm run bench:profile [-- --model medmesh/cnn-small --size 28 --batch 64 --steps 10 --dp --by-shape]
 * (--by-shape: each kernel apart for each set of input shapes)
 * Last line: one JSON object.
 */
import { parseArgs } from 'node:util'
import * as tf from '@tensorflow/tfjs-core'
import { selectBackend, type BackendName } from '../src/training/backend.ts'
import { buildModel, type ModelId } from '../src/training/models.ts'
import { LocalTrainer } from '../src/training/trainer.ts'
import { PrivacyBudget } from '../src/privacy/index.ts'
import type { ImageDataset } from '../src/training/data/dataset.ts'

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'medmesh/cnn-small' }, size: { type: 'string', default: '28' }, channels: { type: 'string', default: '1' },
    batch: { type: 'string', default: '64' }, steps: { type: 'string', default: '10' }, backend: { type: 'string', default: 'wasm' }, dp: { type: 'boolean', default: false },
    'by-shape': { type: 'boolean', default: false }
  }
})
const size = Number(values.size); const channels = Number(values.channels); const batch = Number(values.batch); const steps = Number(values.steps)
const backend = await selectBackend(values.backend as BackendName)

/** random images: the kernels' cost does not depend on the pixels */
const n = Math.max(4 * batch, 256)
const pixels = new Uint8Array(n * size * size * channels)
for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24
const data: ImageDataset = { pixels, labels: Int32Array.from({ length: n }, (_, i) => i % 2), height: size, width: size, channels, classes: ['a', 'b'] }

const totals = new Map<string, { ms: number, calls: number }>()
const stack: number[] = [] // inner-kernel time accumulated for each kernel under way
for (const k of tf.getKernelsForBackend(backend.name)) {
  const inner = k.kernelFunc
  tf.unregisterKernel(k.kernelName, k.backendName)
  tf.registerKernel({
    ...k,
    kernelFunc: (args: Parameters<typeof inner>[0]) => {
      stack.push(0)
      const t0 = performance.now()
      try { return inner(args) } finally {
        const ms = performance.now() - t0
        const nested = stack.pop()!
        if (stack.length > 0) stack[stack.length - 1] += ms
        const key = values['by-shape'] ? `${k.kernelName} ${Object.values(args.inputs).map(t => `[${t?.shape.join(',')}]`).join('')}` : k.kernelName
        const e = totals.get(key) ?? { ms: 0, calls: 0 }
        e.ms += ms - nested; e.calls++
        totals.set(key, e)
      }
    }
  })
}

const model = buildModel({ id: values.model as ModelId, height: size, width: size, channels, classes: 2, seed: 1 })
const trainer = new LocalTrainer(model)
const opts = (s: number): Parameters<LocalTrainer['train']>[1] => ({
  steps: s, batchSize: batch, learningRate: 1e-3, seed: new Uint8Array(32).fill(7), augment: true,
  dp: values.dp ? { noiseMultiplier: 1.1, clipNorm: 1, budget: new PrivacyBudget(1e9, 1e-5) } : undefined
})
trainer.train(data, opts(2)) // warm-up: kernels set up, memory grown
totals.clear()
const r = trainer.train(data, opts(steps))
const stepMs = r.seconds * 1000 / r.steps
const kernelMs = [...totals.values()].reduce((a, e) => a + e.ms, 0) / r.steps
const rows = [...totals.entries()].map(([name, e]) => ({ name, ms: e.ms / r.steps, calls: e.calls / r.steps })).sort((a, b) => b.ms - a.ms)
console.log(`${values.model} ${size}×${size}×${channels}, batch ${batch}${values.dp ? ', DP-SGD' : ''}, ${backend.name}: ${stepMs.toFixed(1)} ms per step (${r.imagesPerSecond.toFixed(0)} images/s)`)
for (const row of rows.slice(0, 16)) console.log(`  ${row.name.padEnd(values['by-shape'] ? 56 : 24)} ${row.ms.toFixed(2).padStart(8)} ms  ${(100 * row.ms / stepMs).toFixed(1).padStart(5)} %  ${row.calls.toFixed(0).padStart(5)} calls`)
console.log(`  ${'(outside kernels)'.padEnd(values['by-shape'] ? 56 : 24)} ${(stepMs - kernelMs).toFixed(2).padStart(8)} ms  ${(100 * (stepMs - kernelMs) / stepMs).toFixed(1).padStart(5)} %`)
trainer.dispose(); model.dispose()
console.log(JSON.stringify({
  bench: 'profile', model: values.model, size, channels, batch, dp: values.dp, backend: backend.name, step_ms: +stepMs.toFixed(2), images_per_second: +r.imagesPerSecond.toFixed(1),
  outside_kernels_ms: +(stepMs - kernelMs).toFixed(2), kernels: rows.map(x => ({ name: x.name, ms: +x.ms.toFixed(3), calls: x.calls }))
}))
