/**
 * This node's training site, from the consortium's manifest: the model it pins (id and seed) and
 * DP-SGD's settings become a SiteSpec for src/training, which knows nothing of manifests; the
 * model built here must hash to the manifest's initial state, or this node would train another
 * model than its peers.
 */
import { hex } from '../protocol/codec.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { initialState, stateHash } from '../protocol/model.ts'
import { PrivacyBudget } from '../privacy/index.ts'
import { describeBackend } from '../training/backend.ts'
import type { Logger } from './logger.ts'
import { Site, loadSiteData, type SiteSpec } from '../training/site.ts'
import type { ModelId } from '../training/models.ts'
import { ConfigError, type NodeConfig } from './config.ts'

export function siteSpec (manifest: Manifest): SiteSpec {
  const { model, dp } = manifest.params
  return { model: { id: model.id as ModelId, seed: model.seed }, input: model.input, classes: model.classes, schedule: manifest.params.training.schedule === 'constant' ? { kind: 'constant' } : { kind: manifest.params.training.schedule, rounds: manifest.params.training.rounds }, dp: dp.enabled ? { noiseMultiplier: dp.noiseMultiplier, clipNorm: dp.clipNorm } : null }
}

/** The site, on the fastest backend that loads; with DP, spending the budget kept on disk (or a fresh one of the manifest's size). */
export async function openSite (manifest: Manifest, config: NodeConfig, seed: Uint8Array, savedBudget: PrivacyBudget | null, log: Logger): Promise<Site> {
  const dp = manifest.params.dp
  const budget = dp.enabled ? (savedBudget ?? new PrivacyBudget(dp.epsilon, dp.delta)) : null
  const site = await Site.open(siteSpec(manifest), loadSiteData(config.dataset, config.shard), {
    epochs: config.epochs, batchSize: config.batchSize, learningRate: config.learningRate, seed, budget
  })
  log.info(describeBackend(site.backend!))
  const m = manifest.params.model
  if (hex(stateHash(initialState(site.initialWeights()))) !== m.initialHash) {
    site.dispose()
    throw new ConfigError(`the model built here (${m.id}, seed ${m.seed}) does not match the manifest's initial hash: a different medmesh or TF.js version?`)
  }
  return site
}
