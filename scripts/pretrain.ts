/**
 * scripts/pretrain.ts: initial weights for a consortium (`manifest create --init`), pretrained on
 * a public set's TRAINING split only (never its test or validation split), for a target model of
 * another input size and class count: the source's images are resized to the target's size, the
 * model trains on the source's classes, and every layer whose weights fit the target model is
 * copied into it; the rest (the classification head, when the class counts differ) keeps the
 * target's seeded initialisation. Writes weights.bin and PRETRAINED.md (what it was made from, how,
 * what was copied, its sha256, the source's licence as its README gives it).
 *
 * Usage: node scripts/pretrain.ts --source data/medmnist/pneumoniamnist.npz --size 128 --classes 3
 *        [--model medmesh/cnn-gn-stem] [--epochs 3] [--seed 1] --out DIR
 */
import { createHash } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { parseArgs } from 'node:util'
import { selectBackend } from '../src/training/backend.ts'
import { loadMedMnist } from '../src/training/data/npz.ts'
import { resizeDataset } from '../src/training/data/resize.ts'
import { normalisation, pixelStats, statsVector } from '../src/training/data/stats.ts'
import { buildModel, flattenWeights } from '../src/training/models.ts'
import { MODEL_IDS, defaultModelFor, type ModelId } from '../src/training/model-ids.ts'
import { LocalTrainer } from '../src/training/trainer.ts'
import { DEFAULT_GUARDS } from '../src/protocol/manifest.ts'

const { values } = parseArgs({
  options: {
    source: { type: 'string' }, size: { type: 'string' }, classes: { type: 'string' }, model: { type: 'string' },
    epochs: { type: 'string', default: '3' }, seed: { type: 'string', default: '1' }, out: { type: 'string' }
  }
})
if (values.source === undefined || values.size === undefined || values.classes === undefined || values.out === undefined) {
  console.error('usage: node scripts/pretrain.ts --source FILE.npz --size N --classes K [--model ID] [--epochs E] [--seed S] --out DIR')
  process.exit(64)
}
const size = Number(values.size); const classes = Number(values.classes); const epochs = Number(values.epochs); const seed = Number(values.seed)
const id = (values.model ?? defaultModelFor(size)) as ModelId
if (!MODEL_IDS.includes(id)) throw new Error(`--model must be one of ${MODEL_IDS.join(', ')}`)

const backend = await selectBackend('auto')
// the training split only: the source's validation and test splits are never seen
const source = loadMedMnist(values.source).train
const train = source.height === size ? source : resizeDataset(source, size)
const channels = train.channels
console.log(`${basename(values.source)}: ${train.labels.length} training images (${train.classes.join(', ')}) at ${size} px; ${id}; ${backend.name}`)

const learner = buildModel({ id, height: size, width: size, channels, classes: train.classes.length, seed })
const trainer = new LocalTrainer(learner)
const norm = normalisation(statsVector(pixelStats(train)), channels)
for (let e = 1; e <= epochs; e++) {
  const r = trainer.train(train, {
    epochs: 1, batchSize: 32, learningRate: 1e-3, seed: createHash('sha256').update(`pretrain ${seed} ${e}`).digest(), classWeighting: 'balanced',
    normalisation: norm, augment: true, modality: channels === 1 ? 'xray' : 'photo', ...DEFAULT_GUARDS
  })
  console.log(`epoch ${e}/${epochs}: loss ${r.meanLoss.toFixed(4)}, ${r.imagesPerSecond.toFixed(0)} images/s`)
}

// the target: the consortium's model, seeded; every layer whose weights have the learner's shapes is copied
const target = buildModel({ id, height: size, width: size, channels, classes, seed })
const copied: string[] = []; const fresh: string[] = []
target.layers.forEach((layer, i) => {
  const from = learner.layers[i].getWeights()
  const to = layer.getWeights()
  if (to.length === 0) return
  if (from.length === to.length && from.every((w, k) => w.shape.join() === to[k].shape.join())) { layer.setWeights(from); copied.push(layer.name) } else fresh.push(layer.name)
})
const weights = flattenWeights(target)
mkdirSync(values.out, { recursive: true })
const bytes = new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength)
writeFileSync(join(values.out, 'weights.bin'), bytes)
const sha = createHash('sha256').update(bytes).digest('hex')
writeFileSync(join(values.out, 'PRETRAINED.md'), `# Pretrained initial weights

- model: ${id}, ${size}×${size}×${channels}, ${classes} classes (${weights.length} weights, little-endian float32 in the model's order)
- pretrained on: ${basename(values.source)}, its training split only (${train.labels.length} images: ${train.classes.join(', ')}), resized to ${size} px; never its validation or test split
- recipe: ${epochs} epoch(s), batch 32, Adam 0.001, balanced class weights, augmentation for ${channels === 1 ? 'X-ray' : 'photographs'}, the default guards; seed ${seed}; backend ${backend.name}
- copied from the pretrained model: ${copied.length} layers (${copied.join(', ')})
- the target's own seeded initialisation: ${fresh.length === 0 ? 'none' : fresh.join(', ')} (the class counts differ)
- sha256 of weights.bin: ${sha}
- licence: that of the source set (see its README: MedMNIST v2 sets are CC BY 4.0)

Use: \`medmesh manifest create ... --model ${id} --image-size ${size} --channels ${channels} --classes ${classes} --init ${values.out}\`, and every member joins with \`--init ${values.out}\`.
`)
console.log(`wrote ${join(values.out, 'weights.bin')} (${copied.length} layers pretrained, ${fresh.length} fresh: ${fresh.join(', ') || 'none'}; sha256 ${sha.slice(0, 16)}…)`)
learner.dispose(); target.dispose(); trainer.dispose()
