/**
 * A site's data, loaded and checked against what the consortium's model takes. Free of TF.js, so
 * that \`medmesh join\` can check a dataset without loading a backend.
 */
import { statSync } from 'node:fs'
import { subset, type ImageDataset } from './data/dataset.ts'
import { loadImageFolder } from './data/images.ts'
import { loadMedMnist } from './data/npz.ts'
import { holdOut, partitionIid } from './data/partition.ts'
import { resizeDataset } from './data/resize.ts'

/** what the model takes: square side and channels, and the classes it tells apart */
export interface DataSpec { input: { size: number, channels: number }, classes: number }

export interface SiteData { train: ImageDataset, val: ImageDataset | null, test: ImageDataset | null }

/** A .npz (MedMNIST) or a folder of images by class; `shard` "i/n" takes an IID share of the training split. */
export function loadSiteData (path: string, shard: string | null, seed = 7): SiteData {
  let data: SiteData
  if (statSync(path).isDirectory()) {
    const all = loadImageFolder(path)
    // hold out 10% for validation, seeded
    const { kept, held } = holdOut(Array.from({ length: all.labels.length }, (_, i) => i), 0.1, new Uint8Array(32).fill(seed))
    data = { train: subset(all, kept), val: subset(all, held), test: null }
  } else {
    const s = loadMedMnist(path)
    data = { train: s.train, val: s.val, test: s.test }
  }
  if (shard !== null) {
    const [i, n] = shard.split('/').map(Number)
    const parts = partitionIid(data.train.labels.length, n, new Uint8Array(32).fill(seed))
    data = { ...data, train: subset(data.train, parts[i]) }
  }
  return data
}

export class SiteDataError extends Error {
  constructor (message: string) { super(message); this.name = 'SiteDataError' }
}

/** Throws a SiteDataError when the data's channels or classes are not the spec's (any resolution fits: it is resized). */
export function checkFit (data: SiteData, spec: DataSpec): void {
  const { train } = data
  if (train.channels !== spec.input.channels) {
    throw new SiteDataError(`this hospital's images have ${train.channels} channel(s) (${train.channels === 3 ? 'colour' : 'grayscale'}); the consortium's model takes ${spec.input.channels}: export them as ${spec.input.channels === 3 ? 'colour' : 'grayscale'}`)
  }
  if (train.classes.length !== spec.classes) throw new SiteDataError(`this hospital's data has ${train.classes.length} classes (${train.classes.join(', ')}); the consortium's model tells ${spec.classes} apart`)
}

/** The site's data at the spec's resolution; refused when its channels or classes are not the spec's. */
export function fitData (data: SiteData, spec: DataSpec): SiteData {
  checkFit(data, spec)
  const fit = (d: ImageDataset | null): ImageDataset | null => d === null ? null : resizeDataset(d, spec.input.size)
  return { train: fit(data.train)!, val: fit(data.val), test: fit(data.test) }
}

