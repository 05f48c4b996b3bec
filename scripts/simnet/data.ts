/**
 * The simulation's data: the data set it loads, its split among the hospitals, and each hospital's
 * own validation part (and all of them pooled, for the centralised baseline).
 */
import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { UsageError } from '../../src/cli/main.ts'
import { loadMedMnist } from '../../src/training/data/npz.ts'
import { loadImageFolder } from '../../src/training/data/images.ts'
import { subset, type ImageDataset } from '../../src/training/data/dataset.ts'
import { holdOut, partitionDirichlet, partitionIid } from '../../src/training/data/partition.ts'
import { resizeDataset } from '../../src/training/data/resize.ts'

export interface SimData { train: ImageDataset, val: ImageDataset | null, test: ImageDataset }

/** What the data split needs of the run: the data, who trains on what, the run's seeded bytes. */
export interface SplitOf { data: SimData, parts: number[][], seedBytes: (k: number) => Uint8Array }

/**
 * The data set to split among the hospitals, and the test split to judge the model on: a MedMNIST
 * .npz (its official splits), or a folder of images by class — with train/ and test/ sub-folders,
 * or one folder of which a seeded 20% is held out for testing.
 */
export function loadSimData (path: string, seed: Uint8Array, o: { size?: number, channels?: number } = {}): SimData {
  if (!existsSync(path)) throw new UsageError(`no such data set: ${path}`)
  if (!statSync(path).isDirectory()) {
    const d = loadMedMnist(path)
    if (o.channels !== undefined && o.channels !== d.train.channels) throw new UsageError(`${path} holds ${d.train.channels}-channel images; --channels applies to image folders`)
    const fit = (x: ImageDataset): ImageDataset => o.size === undefined ? x : resizeDataset(x, o.size)
    return { train: fit(d.train), val: fit(d.val), test: fit(d.test) }
  }
  if (existsSync(join(path, 'train')) && existsSync(join(path, 'test'))) {
    const train = loadImageFolder(join(path, 'train'), o)
    return { train, val: null, test: loadImageFolder(join(path, 'test'), { size: train.height, channels: train.channels }) }
  }
  const all = loadImageFolder(path, o)
  const { kept, held } = holdOut(Array.from({ length: all.labels.length }, (_, i) => i), 0.2, seed)
  return { train: subset(all, kept), val: null, test: subset(all, held) }
}

/** Which of data.train's images each of n hospitals holds: an IID split, or a Dirichlet(α) one by class. */
export function partition (train: ImageDataset, n: number, how: 'iid' | 'dirichlet', alpha: number, seed: Uint8Array): number[][] {
  return how === 'iid' ? partitionIid(train.labels.length, n, seed) : partitionDirichlet(train.labels, n, alpha, seed)
}

/** Hospital i's data: its share of the training split, of which a seeded 10% is its own validation part. */
export function hospitalData (s: SplitOf, i: number): { train: ImageDataset, val: ImageDataset } {
  const { kept, held } = hospitalSplit(s, i)
  return { train: subset(s.data.train, kept), val: subset(s.data.train, held) }
}

/** Which of data.train's images hospital i trains on (kept) and validates on (held). */
export function hospitalSplit (s: Pick<SplitOf, 'parts' | 'seedBytes'>, i: number): { kept: number[], held: number[] } {
  return holdOut(s.parts[i], 0.1, s.seedBytes(400 + i))
}

/** All hospitals' data pooled: what one site holding all of it would train and validate on. */
export function pooledData (s: SplitOf): { train: ImageDataset, val: ImageDataset } {
  const splits = s.parts.map((_, i) => hospitalSplit(s, i))
  return { train: subset(s.data.train, splits.flatMap(x => x.kept)), val: subset(s.data.train, splits.flatMap(x => x.held)) }
}
