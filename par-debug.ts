import { loadMedMnist, BUNDLED_PNEUMONIAMNIST } from './src/training/data/npz.ts'
import { subset } from './src/training/data/dataset.ts'
import { WorkerSite } from './src/training/worker-site.ts'
const data = loadMedMnist(BUNDLED_PNEUMONIAMNIST)
const train = subset(data.train, Array.from({ length: 200 }, (_, i) => i * 20))
const spec = { model: { id: 'medmesh/cnn-small' as const, seed: 3 }, input: { size: 28, channels: 1 }, classes: 2, dp: null }
const options = { epochs: 32 / 200, batchSize: 32, learningRate: 1e-3, seed: new Uint8Array(32).fill(5), budget: null, classWeighting: 'balanced' as const }
const two = await WorkerSite.open(spec, { train, val: null, test: null }, { ...options, workers: 2 })
await two.update(two.initialWeights(), 1).catch(e => console.log('ERR', e.message))
await two.close()
