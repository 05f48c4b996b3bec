/**
 * This node's dataset, read from disk and checked against the manifest: a path that does not
 * exist, does not load, or holds images of other channels or classes than the consortium's model
 * takes is a ConfigError naming it (exit 78 from the CLI), at \`join\` and at \`start\`, never a
 * raw ENOENT. Loads no TF.js backend.
 */
import { existsSync } from 'node:fs'
import type { Manifest } from '../protocol/manifest.ts'
import { checkFit, loadSiteData, SiteDataError, type SiteData } from '../training/site-data.ts'
import { ConfigError } from './config.ts'

export function readSiteData (dataset: string, shard: string | null): SiteData {
  if (!existsSync(dataset)) throw new ConfigError(`dataset ${dataset} does not exist: give a MedMNIST .npz or a folder of images by class (--dataset)`)
  try {
    return loadSiteData(dataset, shard)
  } catch (e) {
    throw new ConfigError(`dataset ${dataset} cannot be read: ${(e as Error).message}`)
  }
}

/** Load the dataset as \`start\` will and check its channels and classes against the manifest's model. */
export function checkDataset (manifest: Manifest, dataset: string, shard: string | null): { images: number, classes: string[], size: string } {
  const data = readSiteData(dataset, shard)
  try {
    checkFit(data, { input: manifest.params.model.input, classes: manifest.params.model.classes })
  } catch (e) {
    if (e instanceof SiteDataError) throw new ConfigError(`dataset ${dataset}: ${e.message}`)
    throw e
  }
  const t = data.train
  const named = manifest.params.model.classNames
  if (named !== undefined && named.join('\u0000') !== t.classes.join('\u0000')) throw new ConfigError(`dataset ${dataset} names its classes ${t.classes.join(', ')}; the consortium's model names them ${named.join(', ')} (in label order)`)
  return { images: t.labels.length + (data.val?.labels.length ?? 0) + (data.test?.labels.length ?? 0), classes: t.classes, size: `${t.height}×${t.width}×${t.channels}` }
}
