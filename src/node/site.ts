/**
 * This node's training site, from the consortium's manifest: the model it pins (id and seed) and
 * DP-SGD's settings become a SiteSpec for src/training, which knows nothing of manifests; the
 * model built here must hash to the manifest's initial state, or this node would train another
 * model than its peers.
 */
import { availableParallelism } from 'node:os'
import { hex } from '../protocol/codec.ts'
import type { Manifest, TrainingParams } from '../protocol/manifest.ts'
import { initialState, stateHash } from '../protocol/model.ts'
import { candidateWidths } from '../protocol/selection.ts'
import { PrivacyBudget, deriveKey, seededRandom, systemRandom, type RandomSource } from '../privacy/index.ts'
import { describeBackend } from '../training/backend.ts'
import type { Logger } from './logger.ts'
import type { SiteOptions, SiteSpec } from '../training/site.ts'
import { WorkerSite, type TrainingSite } from '../training/worker-site.ts'
import { widthProblem, type ModelId } from '../training/model-ids.ts'
import { ConfigError, type NodeConfig } from './config.ts'
import { readSiteData } from './dataset.ts'

export function siteSpec (manifest: Manifest): SiteSpec {
  const { model, dp } = manifest.params
  const widths = candidateWidths(manifest.params.selection)
  return { model: { id: model.id as ModelId, seed: model.seed, ...(widths.length > 0 ? { widthFactors: widths } : {}) }, input: model.input, classes: model.classes, schedule: manifest.params.training.schedule === 'constant' ? { kind: 'constant' } : { kind: manifest.params.training.schedule, rounds: manifest.params.training.rounds }, dp: dp.enabled ? { noiseMultiplier: dp.noiseMultiplier, clipNorm: dp.clipNorm, plannedRounds: manifest.params.training.rounds } : null }
}

/**
 * The local training recipe is the consortium's (the manifest's params.training); a node's
 * configuration may override epochs, batch size or learning rate (a slow site, a test), and each
 * override is returned as a warning to log, since it changes what this hospital contributes.
 */
export function localRecipe (manifest: Manifest, config: Pick<NodeConfig, 'epochs' | 'batchSize' | 'learningRate'>): {
  recipe: LocalRecipe, overrides: string[]
} {
  const t = manifest.params.training
  const overrides: string[] = []
  const pick = (key: 'epochs' | 'batchSize' | 'learningRate'): number => {
    const own = config[key]
    if (own === null || own === t[key]) return t[key]
    overrides.push(`this node trains with ${key} ${own}, not the consortium's ${t[key]} (its configuration overrides the manifest)`)
    return own
  }
  const epochs = pick('epochs')
  // a node's own epochs say exactly how much it trains: the consortium's minimum steps give way
  const { minSteps, ...guards } = recipeGuards(t)
  const ownEpochs = config.epochs !== null && config.epochs !== t.epochs
  if (ownEpochs && minSteps !== undefined) overrides.push(`this node trains its own ${epochs} epoch(s) a round without the consortium's minimum of ${minSteps} steps`)
  return { recipe: { epochs, batchSize: pick('batchSize'), learningRate: pick('learningRate'), classWeighting: t.classWeighting, priorCorrection: t.priorCorrection ?? 'none', ...guards, ...(ownEpochs || minSteps === undefined ? {} : { minSteps }) }, overrides }
}

/** A site's recipe as the manifest gives it (SiteOptions' recipe fields). */
export type LocalRecipe = Pick<SiteOptions, 'epochs' | 'batchSize' | 'learningRate' | 'warmupSteps' | 'clipGradientNorm' | 'weightDecay' | 'augmentation' | 'minSteps'> & { classWeighting: 'balanced' | 'none', priorCorrection: 'none' | 'pooled' }

/** The manifest's guards and augmentation as a site's options (absent fields stay absent: off, or augmentation by channels). */
export function recipeGuards (t: TrainingParams): Pick<SiteOptions, 'warmupSteps' | 'clipGradientNorm' | 'weightDecay' | 'augmentation' | 'minSteps'> {
  return {
    ...(t.warmupSteps === undefined ? {} : { warmupSteps: t.warmupSteps }),
    ...(t.clipGradientNorm === undefined ? {} : { clipGradientNorm: t.clipGradientNorm }),
    ...(t.weightDecay === undefined ? {} : { weightDecay: t.weightDecay }),
    ...(t.minSteps === undefined ? {} : { minSteps: t.minSteps }),
    ...(t.augmentation === undefined ? {} : { augmentation: t.augmentation })
  }
}

/**
 * Where this node's randomness comes from: its key (training) and the CSPRNG (keys, masks,
 * rounding, DP noise), or, in a simulation, one public seed for all of it, said loudly in the log.
 */
export interface NodeRandomness { rng: RandomSource, trainingSeed: Uint8Array, noiseSeed?: Uint8Array }

export function nodeRandomness (config: Pick<NodeConfig, 'simulationSeed'>, keySeed: Uint8Array, log: Logger): NodeRandomness {
  if (config.simulationSeed === null) return { rng: systemRandom, trainingSeed: keySeed.slice(0, 32) }
  log.warn('simulationSeed is set: this node\'s keys, masks, training and DP noise follow from a public seed (simulations only, never real data)')
  const seed = Uint8Array.from(Buffer.from(config.simulationSeed, 'hex'))
  const part = (k: number): Uint8Array => deriveKey(seed, 'seeded-random', Uint8Array.of(k))
  return { rng: seededRandom(part(1)), trainingSeed: part(2), noiseSeed: part(3) }
}

/**
 * The site, training in a worker thread on the fastest backend that loads there; with DP,
 * spending the budget kept on disk (or a fresh one of the manifest's size).
 */
export async function openSite (manifest: Manifest, config: NodeConfig, randomness: Pick<NodeRandomness, 'trainingSeed' | 'noiseSeed'>, savedBudget: PrivacyBudget | null, log: Logger): Promise<TrainingSite> {
  // a manifest's candidate widths are checked against the model before any is built (validateManifest knows no models)
  for (const w of candidateWidths(manifest.params.selection)) {
    const problem = widthProblem(manifest.params.model.id, w)
    if (problem !== null) throw new ConfigError(`the manifest's recipe selection cannot run here: ${problem}`)
  }
  const dp = manifest.params.dp
  const budget = dp.enabled ? (savedBudget ?? new PrivacyBudget(dp.epsilon, dp.delta)) : null
  const { recipe, overrides } = localRecipe(manifest, config)
  for (const o of overrides) log.warn(o)
  const workers = config.trainingWorkers ?? availableParallelism()
  const site = await WorkerSite.open(siteSpec(manifest), readSiteData(config.dataset, config.shard), { ...recipe, seed: randomness.trainingSeed, budget, noiseSeed: randomness.noiseSeed, workers })
  log.info(`${describeBackend(site.backend!)}; training in ${workers} worker thread(s)${workers > 1 ? ', each batch split among them' : ''}`)
  if (dp.enabled) log.info(`DP-SGD: ε ${dp.epsilon}, δ ${dp.delta} for this hospital; noise multiplier ${site.noiseMultiplier!.toFixed(3)}${dp.noiseMultiplier === 0 ? ` (calibrated to spend the budget over ${manifest.params.training.rounds} model rounds)` : ''}, clipping norm ${dp.clipNorm}`)
  const m = manifest.params.model
  // weights given as a file (params.model.init) are checked where they are read (initial-weights.ts)
  if (m.init === undefined && hex(stateHash(initialState(site.initialWeights()))) !== m.initialHash) {
    await site.close()
    throw new ConfigError(`the model built here (${m.id}, seed ${m.seed}) does not match the manifest's initial hash: a different medmesh or TF.js version?`)
  }
  // each candidate of another width (recipe selection) pins its model's size and hash as params.model does
  for (const c of manifest.params.selection?.candidates ?? []) {
    if (c.width === undefined) continue
    const w = site.initialWeights(c.width)
    if (w.length !== c.size || hex(stateHash(initialState(w))) !== c.initialHash) {
      await site.close()
      throw new ConfigError(`the model built here at width ${c.width} (${m.id}, seed ${m.seed}: ${w.length} weights) does not match the manifest's candidate (${c.size} weights and its initial hash): a different medmesh or TF.js version?`)
    }
  }
  return site
}
