/**
 * The model `medmesh predict` runs, from one of two places: a member's data directory (the
 * chosen certified model, see chosen-model.ts) or a folder `medmesh export` wrote (model.json,
 * its weight files and preprocessing.json), so that someone who was given only the export, a
 * clinic for instance, can use it. An export is a file from elsewhere: its size is bounded, its
 * JSON checked field by field, and its weight files named only inside the folder.
 */
import { readFileSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import type { Normalisation } from '../training/data/stats.ts'
import { withWeights } from '../training/predict.ts'
import '../training/models.ts' // registers MedmeshGroupNorm, which -gn models name
import { chosenModel } from './chosen-model.ts'
import { ConfigError } from './config.ts'

export interface ModelSource {
  model: tfl.LayersModel
  size: number
  channels: number
  classes: string[]
  norm: Normalisation | undefined
  /** what the model is, for the output: the round and certificate when known */
  about: { source: 'data directory' | 'export', path: string, round: number | null, reason: string | null, certificate: string | null, model: string, validation: { auc: number, accuracy: number } | null, degenerate: string | null, conformal: Array<{ coverage: number, threshold: number }> }
}

/** The chosen (or the given round's) certified model of a member's data directory. */
export function fromDataDir (dataDir: string, o: { round?: number } = {}): ModelSource {
  const c = chosenModel(dataDir, o)
  return {
    model: withWeights(c.spec, c.weights), size: c.spec.height, channels: c.spec.channels, classes: c.classes, norm: c.norm,
    about: { source: 'data directory', path: dataDir, round: c.entry.header.round, reason: c.reason, certificate: Buffer.from(c.entry.hash).toString('hex'), model: c.spec.id, validation: c.validation, degenerate: c.degenerate, conformal: c.conformal }
  }
}

const MAX_JSON_BYTES = 16 * 1024 * 1024
const MAX_WEIGHTS_BYTES = 2 * 1024 * 1024 * 1024

/** A folder written by `medmesh export` (or its model.json). Throws ConfigError naming what is wrong. */
export async function fromExport (path: string): Promise<ModelSource> {
  let dir = path
  try { if (!statSync(path).isDirectory()) dir = dirname(path) } catch { throw new ConfigError(`--model ${path}: no such file or folder`) }
  const json = (name: string): any => {
    const file = join(dir, name)
    let size
    try { size = statSync(file).size } catch { throw new ConfigError(`--model ${dir}: no ${name} (a folder written by medmesh export)`) }
    if (size > MAX_JSON_BYTES) throw new ConfigError(`--model ${dir}: ${name} is larger than ${MAX_JSON_BYTES >> 20} MiB`)
    try { return JSON.parse(readFileSync(file, 'utf8')) } catch (e) { throw new ConfigError(`--model ${dir}: ${name} is not JSON (${(e as Error).message})`) }
  }
  const modelJson = json(path === dir ? 'model.json' : basename(path))
  const pre = json('preprocessing.json')
  const bad = (what: string): never => { throw new ConfigError(`--model ${dir}: ${what}`) }
  const input = pre?.input
  const size = input?.height
  const channels = input?.channels
  if (!Number.isInteger(size) || size < 4 || size > 1024 || input.width !== size) bad('preprocessing.json: input must be square, 4 to 1024 pixels')
  if (channels !== 1 && channels !== 3) bad('preprocessing.json: input.channels must be 1 or 3')
  const n = pre.normalisation
  const vec = (v: unknown): v is number[] => Array.isArray(v) && v.length === channels && v.every(x => typeof x === 'number' && Number.isFinite(x))
  if (!vec(n?.mean) || !vec(n?.std) || n.std.some((s: number) => !(s > 0))) bad(`preprocessing.json: normalisation must give ${channels} means and ${channels} positive stds`)
  const classes = pre.classes
  if (!Array.isArray(classes) || classes.length < 2 || classes.some((c: unknown) => typeof c !== 'string')) bad('preprocessing.json: classes must be a list of names')
  if (modelJson?.format !== 'layers-model' || typeof modelJson.modelTopology !== 'object' || !Array.isArray(modelJson.weightsManifest)) bad('model.json is not a TF.js Layers model')
  const specs: tf.io.WeightsManifestEntry[] = []
  const parts: Uint8Array[] = []
  let total = 0
  for (const group of modelJson.weightsManifest) {
    if (!Array.isArray(group?.paths) || !Array.isArray(group.weights)) bad('model.json: a weights group without paths and weights')
    for (const p of group.paths) {
      // weight files only beside model.json: a path elsewhere is not read
      if (typeof p !== 'string' || p !== basename(p) || p.startsWith('.')) bad(`model.json names the weight file '${String(p)}' outside its folder`)
      let bytes
      try { bytes = readFileSync(join(dir, p)) } catch { bad(`no weight file ${p}`) }
      total += bytes!.byteLength
      if (total > MAX_WEIGHTS_BYTES) bad('weight files larger than 2 GiB')
      parts.push(bytes!)
    }
    specs.push(...group.weights)
  }
  const weightData = new Uint8Array(total)
  let off = 0
  for (const p of parts) { weightData.set(p, off); off += p.byteLength }
  let model: tfl.LayersModel
  try {
    model = await tfl.loadLayersModel(tf.io.fromMemory({ modelTopology: modelJson.modelTopology, weightSpecs: specs, weightData: weightData.buffer }))
  } catch (e) { return bad(`model.json does not load: ${(e as Error).message}`) }
  const shape = model.inputs[0].shape
  const out = model.outputs[0].shape
  if (shape[1] !== size || shape[2] !== size || shape[3] !== channels || out[1] !== classes.length) {
    model.dispose()
    bad(`the model takes ${shape.slice(1).join('×')} and gives ${String(out[1])} classes; preprocessing.json says ${size}×${size}×${channels} and ${classes.length}`)
  }
  let card: any = null
  try { card = json('model-card.json') } catch { /* optional */ }
  const chosen = card?.chosen
  return {
    model, size, channels, classes, norm: { mean: n.mean, std: n.std },
    about: {
      source: 'export', path: dir, round: Number.isInteger(chosen?.round) ? chosen.round : null, reason: typeof chosen?.reason === 'string' ? chosen.reason : null,
      certificate: typeof chosen?.certificate === 'string' ? chosen.certificate : null, model: typeof card?.model?.id === 'string' ? card.model.id : String(modelJson.modelTopology?.config?.name ?? 'unknown'),
      validation: typeof chosen?.validation?.auc === 'number' ? { auc: chosen.validation.auc, accuracy: chosen.validation.accuracy } : null,
      // from the card, which verify-model does not check: printable text only, and said as the card's
      degenerate: typeof chosen?.degenerate === 'string' ? chosen.degenerate.replace(/[^\x20-\x7e\u00a0-\uffff]/g, '?').slice(0, 200) : null,
      conformal: Array.isArray(card?.predictionSets) ? card.predictionSets.filter((c: any) => typeof c?.coverage === 'number' && typeof c?.threshold === 'number' && c.threshold >= 0 && c.threshold <= 1).map((c: any) => ({ coverage: c.coverage, threshold: c.threshold })) : []
    }
  }
}
