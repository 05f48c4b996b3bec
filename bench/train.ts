/**
 * bench/train: the default CNN (medmesh/cnn-small) on PneumoniaMNIST, batch 64, Adam, side by
 * side in one run:
 *   - wasm (with medmesh's gradient kernels) versus pure JS (`cpu`)            target >= 30x
 *   - the wasm backend's convolutions through oneDNN (native/, where built) versus in WebAssembly
 *   - wasm versus PyTorch on the same architecture and batch size, where a
 *     python3 with torch is found (Debian's python3-torch)                      first target >= 0.3x
 *   - DP-SGD (per-example clipping and noise) versus plain training on wasm    overhead reported
 *   - training in 1 and in W worker threads (the node's way: each batch split among the workers),
 *     the scaling and W workers versus PyTorch with W threads                  target >= 0.5x
 *   - medmesh/resnet18 at 128×128 (batch 32), W workers versus PyTorch with W threads on the
 *     same architecture                                                        target >= 0.3x
 * Peak wasm memory per worker is reported. Last line: one JSON object.
 *
 * Usage: npm run bench:train [-- --steps 20 --cpu-steps 2 --threads 2 --resnet-steps 3 (0: skip)]
 */
import { parseArgs } from 'node:util'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describeBackend, selectBackend, type BackendName } from '../src/training/backend.ts'
import { nativeKernelStatus, useNativeKernels } from '../src/training/native-kernels.ts'
import { loadMedMnist, BUNDLED_PNEUMONIAMNIST } from '../src/training/data/npz.ts'
import { buildModel, type ModelId } from '../src/training/models.ts'
import type { ImageDataset } from '../src/training/data/dataset.ts'
import { LocalTrainer, type TrainOptions } from '../src/training/trainer.ts'
import { PrivacyBudget } from '../src/privacy/index.ts'
import { WorkerSite } from '../src/training/worker-site.ts'
import type { SiteSpec } from '../src/training/site.ts'

const { values } = parseArgs({ options: { steps: { type: 'string', default: '20' }, 'cpu-steps': { type: 'string', default: '2' }, threads: { type: 'string', default: '2' }, batch: { type: 'string', default: '64' }, 'resnet-steps': { type: 'string', default: '3' } } })
const resnetSteps = Number(values['resnet-steps'])
const RESNET = { size: 128, batch: 32 }
const steps = Number(values.steps)
const cpuSteps = Number(values['cpu-steps'])
const batch = Number(values.batch)
const threads = Number(values.threads)
const data = loadMedMnist(BUNDLED_PNEUMONIAMNIST).train

async function imagesPerSecond (backend: BackendName, n: number, dp: boolean): Promise<number> {
  await selectBackend(backend)
  const model = buildModel({ id: 'medmesh/cnn-small', height: 28, width: 28, channels: 1, classes: 2, seed: 1 })
  const trainer = new LocalTrainer(model)
  const opts = (s: number): TrainOptions => ({
    steps: s, batchSize: batch, learningRate: 1e-3, seed: new Uint8Array(32).fill(s),
    dp: dp ? { noiseMultiplier: 1.1, clipNorm: 1, budget: new PrivacyBudget(1e9, 1e-5) } : undefined
  })
  trainer.train(data, opts(2)) // warm-up
  const r = trainer.train(data, opts(n))
  trainer.dispose()
  model.dispose()
  return r.imagesPerSecond
}

/** images/s of a node's training: `workers` threads, each batch split among them; with the peak wasm memory of a worker */
async function workerImagesPerSecond (workers: number, dp: boolean, m: { id: ModelId, size: number, batch: number, steps: number, data: ImageDataset } = { id: 'medmesh/cnn-small', size: 28, batch, steps, data }): Promise<{ ips: number, wasmMB: number }> {
  const spec: SiteSpec = { model: { id: m.id, seed: 1 }, input: { size: m.size, channels: 1 }, classes: 2, dp: dp ? { noiseMultiplier: 1.1, clipNorm: 1 } : null }
  const examples = m.steps * m.batch
  const site = await WorkerSite.open(spec, { train: m.data, val: null, test: null }, {
    epochs: examples / m.data.labels.length, batchSize: m.batch, learningRate: 1e-3, seed: new Uint8Array(32).fill(3), budget: dp ? new PrivacyBudget(1e9, 1e-5) : null, workers
  })
  try {
    const w = site.initialWeights()
    await site.update(w, 1) // warm-up
    await site.update(w, 2)
    return { ips: site.lastTrain!.imagesPerSecond, wasmMB: Math.max(...site.lastMemory.map(m => m.wasmBytes)) / 1e6 }
  } finally {
    await site.close()
  }
}

/** random images: the kernels' cost does not depend on the pixels */
function randomImages (n: number, size: number): ImageDataset {
  const pixels = new Uint8Array(n * size * size)
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24
  return { pixels, labels: Int32Array.from({ length: n }, (_, i) => i % 2), height: size, width: size, channels: 1, classes: ['a', 'b'] }
}

function torchImagesPerSecond (arch: string[] = [], n = steps * 5, b = batch): { ips: number, python: string, torch: string } | { error: string } {
  const script = fileURLToPath(new URL('./torch_cnn.py', import.meta.url))
  for (const python of ['python3', '/usr/bin/python3']) {
    const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' })
    if (probe.status !== 0) continue
    const run = spawnSync(python, [script, BUNDLED_PNEUMONIAMNIST, String(n), String(b), String(threads), ...arch], { encoding: 'utf8', timeout: 600_000 })
    if (run.status !== 0) return { error: `${python} ${script} failed: ${run.stderr.slice(-300)}` }
    const j = JSON.parse(run.stdout.trim().split('\n').pop()!)
    return { ips: j.images_per_second, python, torch: j.torch }
  }
  return { error: 'no python3 with torch here (apt-get install python3-torch)' }
}

const wasm = await imagesPerSecond('wasm', steps, false)
const native = nativeKernelStatus()
useNativeKernels(false)
const wasmOnly = native.active ? await imagesPerSecond('wasm', steps, false) : null
useNativeKernels(true)
const cpu = await imagesPerSecond('cpu', cpuSteps, false)
const wasmDp = await imagesPerSecond('wasm', Math.max(2, Math.floor(steps / 2)), true)
const torch = torchImagesPerSecond()
const w1 = await workerImagesPerSecond(1, false)
const wN = await workerImagesPerSecond(threads, false)
const dpN = await workerImagesPerSecond(threads, true)
const resnet = resnetSteps > 0 ? { size: RESNET.size, batch: RESNET.batch, steps: resnetSteps, id: 'medmesh/resnet18' as ModelId, data: randomImages(4 * RESNET.batch, RESNET.size) } : null
const rN = resnet === null ? null : await workerImagesPerSecond(threads, false, resnet)
const rTorch = resnet === null ? null : torchImagesPerSecond(['resnet18', String(RESNET.size)], Math.max(3, resnetSteps), RESNET.batch)

console.log(`medmesh/cnn-small, PneumoniaMNIST 28x28, batch ${batch}, Adam`)
console.log(describeBackend(await selectBackend('wasm')))
console.log(`wasm           ${wasm.toFixed(0)} images/s`)
if (wasmOnly !== null) console.log(`wasm, convolutions in WebAssembly (not oneDNN)  ${wasmOnly.toFixed(0)} images/s   oneDNN / WebAssembly = ${(wasm / wasmOnly).toFixed(2)}x`)
console.log(`pure JS (cpu)  ${cpu.toFixed(1)} images/s      wasm / cpu = ${(wasm / cpu).toFixed(1)}x (target >= 30x)`)
if ('ips' in torch) console.log(`PyTorch ${torch.torch} (${threads} threads, ${torch.python})  ${torch.ips.toFixed(0)} images/s   wasm / PyTorch = ${(wasm / torch.ips).toFixed(2)}x (target >= 0.3x)`)
else console.log(`PyTorch: not measured (${torch.error})`)
console.log(`DP-SGD on wasm ${wasmDp.toFixed(0)} images/s      overhead ${(wasm / wasmDp).toFixed(1)}x slower than plain`)
console.log(`node training, 1 worker       ${w1.ips.toFixed(0)} images/s   (wasm memory ${w1.wasmMB.toFixed(0)} MB per worker)`)
console.log(`node training, ${threads} workers      ${wN.ips.toFixed(0)} images/s   scaling ${(wN.ips / w1.ips).toFixed(2)}x   (wasm memory ${wN.wasmMB.toFixed(0)} MB per worker)` +
  ('ips' in torch ? `   ${threads} workers / PyTorch ${threads} threads = ${(wN.ips / torch.ips).toFixed(2)}x (target >= 0.5x)` : ''))
console.log(`DP-SGD, ${threads} workers     ${dpN.ips.toFixed(0)} images/s   overhead ${(wN.ips / dpN.ips).toFixed(1)}x slower than plain ${threads} workers`)
if (rN !== null) {
  console.log(`medmesh/resnet18 ${RESNET.size}x${RESNET.size}, batch ${RESNET.batch}, ${threads} workers  ${rN.ips.toFixed(1)} images/s   (wasm memory ${rN.wasmMB.toFixed(0)} MB per worker)` +
    (rTorch !== null && 'ips' in rTorch ? `   PyTorch ${threads} threads ${rTorch.ips.toFixed(1)} images/s   ratio ${(rN.ips / rTorch.ips).toFixed(2)}x (target >= 0.3x)` : `   PyTorch: not measured (${rTorch !== null && 'error' in rTorch ? rTorch.error : 'skipped'})`))
}
console.log(JSON.stringify({
  bench: 'train', model: 'medmesh/cnn-small', batch,
  onednn: native.active ? native.version : null, onednn_isa: native.active ? native.isa : null, wasm_ips: +wasm.toFixed(1), wasm_without_onednn_ips: wasmOnly === null ? null : +wasmOnly.toFixed(1), cpu_ips: +cpu.toFixed(2), wasm_vs_cpu: +(wasm / cpu).toFixed(1),
  torch_ips: 'ips' in torch ? +torch.ips.toFixed(1) : null, wasm_vs_torch: 'ips' in torch ? +(wasm / torch.ips).toFixed(3) : null,
  dp_ips: +wasmDp.toFixed(1), dp_overhead: +(wasm / wasmDp).toFixed(2),
  workers: threads, worker1_ips: +w1.ips.toFixed(1), workers_ips: +wN.ips.toFixed(1), worker_scaling: +(wN.ips / w1.ips).toFixed(2),
  workers_vs_torch: 'ips' in torch ? +(wN.ips / torch.ips).toFixed(3) : null, workers_dp_ips: +dpN.ips.toFixed(1), workers_dp_overhead: +(wN.ips / dpN.ips).toFixed(2),
  wasm_mb_per_worker: +wN.wasmMB.toFixed(0),
  resnet18_128_workers_ips: rN === null ? null : +rN.ips.toFixed(2), resnet18_128_torch_ips: rTorch !== null && 'ips' in rTorch ? +rTorch.ips.toFixed(2) : null,
  resnet18_128_vs_torch: rN !== null && rTorch !== null && 'ips' in rTorch ? +(rN.ips / rTorch.ips).toFixed(3) : null, resnet18_128_wasm_mb_per_worker: rN === null ? null : +rN.wasmMB.toFixed(0)
}))
