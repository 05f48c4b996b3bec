/**
 * How a consortium sets itself up, as a small API of the node package: each member makes its
 * identity (init), one member writes the manifest (createManifest), every founder signs the same
 * file (signManifest), and each member joins with its own settings (join). The `medmesh` command
 * line and the simulator both use these; neither goes through the other.
 */
import { sizedCandidates, type SelectionParams } from '../protocol/selection.ts'
import { existsSync, readFileSync } from 'node:fs'
import type { NodeIdentity } from '../privacy/index.ts'
import { hex } from '../protocol/codec.ts'
import {
  AGGREGATION_RULES, DEFAULT_GUARDS, consortiumId, defaultParams, defaultSlicing, memberIndex, signManifest as signManifestHash, validateManifest, verifySignedManifest,
  type AggregationRule, type Manifest, type SignedManifest, type TrainingParams
} from '../protocol/manifest.ts'
import { recipeFor } from '../protocol/recipe.ts'
import { checkInitialWeights, describeInit, initialHashOf, readWeightsFile } from './initial-weights.ts'
import { bestModel } from '../protocol/validation.ts'
import { ConfigError, resolveConfig, type NodeConfig } from './config.ts'
import { DataDir } from './datadir.ts'
import { atomicWrite } from './fsutil.ts'
import { MODEL_IDS, defaultModelFor, type ModelId } from '../training/model-ids.ts'
import { checkDataset } from './dataset.ts'

export { AGGREGATION_RULES, MODEL_IDS }

/**
 * Create DIR and a new node identity in it. A DIR that already holds one keeps it (never
 * overwritten): its identity is returned with `existed`, so that `init` run again reprints the
 * peer id an operator needs for the manifest.
 */
export function init (dataDir: string): { identity: NodeIdentity, existed: boolean } {
  const dir = new DataDir(dataDir)
  if (dir.hasIdentity()) return { identity: dir.identity(), existed: true }
  return { identity: dir.init(), existed: false }
}

export interface ManifestOptions {
  name: string
  members: Array<{ peerId: string, name: string }>
  model?: ModelId
  /** seed of the initial weights */
  seed?: number
  /** the square side every site's images are resized to */
  imageSize?: number
  /** 1 (grayscale) or 3 (colour) */
  channels?: number
  classes?: number
  /** the classes' names, in label order (default: none in the manifest) */
  classNames?: string[]
  /** peers outside the consortium allowed to query its model by encrypted inference */
  inferenceClients?: Array<{ peerId: string, name: string }>
  threshold?: number
  quorum?: number
  minParticipants?: number
  phaseMs?: number
  roundMs?: number
  aggregation?: AggregationRule
  serverLr?: number
  /** FedAvgM momentum, FedAdam β1 */
  beta1?: number
  dp?: { epsilon: number, delta?: number, noise?: number, clip?: number }
  /** the learning rate over model rounds, and the rounds it is planned for */
  schedule?: 'constant' | 'cosine' | 'step'
  scheduleRounds?: number
  /** every site's local recipe: epochs per round, batch size, base learning rate, class weighting */
  epochs?: number
  batchSize?: number
  learningRate?: number
  classWeighting?: 'balanced' | 'none'
  priorCorrection?: 'none' | 'pooled'
  /** the recipe's guards (absent: DEFAULT_GUARDS) and augmentation (absent: xray for grayscale, photo for colour) */
  warmupSteps?: number
  clipGradientNorm?: number
  weightDecay?: number
  /** at least this many local steps a round (absent: the recipe's; 0: none) */
  minSteps?: number
  augmentation?: TrainingParams['augmentation']
  /** eval rounds without a better validation AUC that end training (0: never early) */
  patience?: number
  /** sliced aggregation (PROTOCOL.md §8): each slice fetched, summed and unmasked by its perSlice aggregators; null: all-to-all; absent: `defaultSlicing` for the consortium's size */
  slicing?: { slices: number, perSlice: number } | null
  /** federated recipe selection (protocol/selection.ts); absent: the one recipe */
  selection?: SelectionParams
  /** initial weights from a file (initial-weights.ts: a weights.bin or an export folder) instead of the seed */
  init?: string
}

/** Build the model the manifest pins (its initial hash is what every member checks) and write the unsigned manifest to `file`. */
export async function createManifest (file: string, o: ManifestOptions): Promise<{ manifest: Manifest, parameters: number }> {
  const size = o.imageSize ?? 28
  const modelId = o.model ?? defaultModelFor(size)
  if (!MODEL_IDS.includes(modelId)) throw new ConfigError(`model must be one of ${MODEL_IDS.join(', ')}`)
  const seed = o.seed ?? 1
  const channels = o.channels ?? 1
  const classes = o.classes ?? o.classNames?.length ?? 2
  const { selectBackend } = await import('../training/backend.ts')
  const { buildModel, flattenWeights, widthProblem } = await import('../training/models.ts')
  await selectBackend('auto')
  const model = buildModel({ id: modelId, height: size, width: size, channels, classes, seed })
  const built = flattenWeights(model)
  model.dispose()
  const given = o.init === undefined ? null : readWeightsFile(o.init)
  if (given !== null && given.weights.length !== built.length) throw new ConfigError(`${given.file} holds ${given.weights.length} weights; ${modelId} at ${size} px, ${channels} channel(s), ${classes} classes has ${built.length}`)
  const weights = given?.weights ?? built
  const params = defaultParams(o.members.length, weights.length, initialHashOf(weights))
  params.model = {
    id: modelId, version: '1', seed, initialHash: params.model.initialHash, size: weights.length, input: { size, channels }, classes,
    ...(o.classNames === undefined ? {} : { classNames: o.classNames }), ...(given === null ? {} : { init: describeInit(given) })
  }
  params.threshold = o.threshold ?? params.threshold
  params.quorum = o.quorum ?? params.threshold
  params.minParticipants = o.minParticipants ?? Math.max(2, params.threshold)
  params.timeouts.phaseMs = o.phaseMs ?? params.timeouts.phaseMs
  params.timeouts.roundMs = o.roundMs ?? params.timeouts.roundMs
  // the measured recipe (recipe.ts) wherever the founders said nothing
  const recipe = recipeFor(o.dp !== undefined)
  params.aggregation.rule = o.aggregation ?? recipe.aggregation
  params.aggregation.serverLr = o.serverLr ?? params.aggregation.serverLr
  params.aggregation.beta1 = o.beta1 ?? recipe.momentum
  const t = params.training
  params.training = {
    schedule: o.schedule ?? t.schedule, rounds: o.scheduleRounds ?? t.rounds, epochs: o.epochs ?? recipe.epochs, batchSize: o.batchSize ?? recipe.batchSize,
    learningRate: o.learningRate ?? recipe.learningRate, classWeighting: o.classWeighting ?? t.classWeighting,
    ...((o.priorCorrection ?? recipe.priorCorrection) === 'none' ? {} : { priorCorrection: 'pooled' as const }),
    warmupSteps: o.warmupSteps ?? DEFAULT_GUARDS.warmupSteps, clipGradientNorm: o.clipGradientNorm ?? DEFAULT_GUARDS.clipGradientNorm, weightDecay: o.weightDecay ?? DEFAULT_GUARDS.weightDecay,
    ...((o.minSteps ?? recipe.minSteps) > 0 ? { minSteps: o.minSteps ?? recipe.minSteps } : {}),
    augmentation: o.augmentation ?? (channels === 3 ? 'photo' : 'xray')
  }
  params.validation.patience = o.patience ?? params.validation.patience
  const slicing = o.slicing === undefined ? defaultSlicing(o.members.length) : o.slicing
  if (slicing !== null) params.slicing = { slices: slicing.slices, perSlice: slicing.perSlice }
  for (const c of o.selection?.candidates ?? []) {
    const problem = c.width === undefined ? null : widthProblem(modelId, c.width)
    if (problem !== null) throw new ConfigError(`recipe selection: ${problem}`)
  }
  // a candidate of another width pins that model's size and initial weights as params.model does its own
  if (o.selection !== undefined) params.selection = sizedCandidates(o.selection, width => { const m = buildModel({ id: modelId, height: size, width: size, channels, classes, seed, widthFactor: width }); try { return flattenWeights(m) } finally { m.dispose() } })
  if (o.inferenceClients !== undefined && o.inferenceClients.length > 0) params.inference = { clients: o.inferenceClients }
  if (o.dp !== undefined) params.dp = { enabled: true, epsilon: o.dp.epsilon, delta: o.dp.delta ?? 1e-5, noiseMultiplier: o.dp.noise ?? 0, clipNorm: o.dp.clip ?? recipe.dpClip }
  const manifest = validateManifest({ version: 1, name: o.name, members: o.members, params })
  atomicWrite(file, JSON.stringify({ manifest, signatures: {} }, null, 2) + '\n', 0o644)
  return { manifest, parameters: weights.length }
}

export function readSignedManifest (file: string): SignedManifest {
  if (!existsSync(file)) throw new ConfigError(`no such file: ${file}`)
  let parsed: unknown
  try { parsed = JSON.parse(readFileSync(file, 'utf8')) } catch { throw new ConfigError(`${file} is not valid JSON`) }
  const o = parsed as SignedManifest
  if (o === null || typeof o !== 'object' || typeof o.signatures !== 'object' || o.signatures === null) throw new ConfigError(`${file} is not a medmesh manifest file ({ manifest, signatures })`)
  return o
}

/** Add this node's signature to the manifest file; returns how many of the members have signed. */
export function signManifest (dataDir: string, file: string): { peerId: string, signed: number, members: number } {
  const signed = readSignedManifest(file)
  const identity = new DataDir(dataDir).identity()
  const m = validateManifest(signed.manifest)
  if (memberIndex(m, identity.peerId) < 0) throw new ConfigError(`${identity.peerId} is not a member listed in ${file}`)
  signed.signatures[identity.peerId] = signManifestHash(m, identity)
  atomicWrite(file, JSON.stringify(signed, null, 2) + '\n', 0o644)
  return { peerId: identity.peerId, signed: Object.keys(signed.signatures).length, members: m.members.length }
}

/** Check every founder's signature; the consortium's id. */
export function verifyManifest (file: string): { manifest: Manifest, id: string } {
  const manifest = verifySignedManifest(readSignedManifest(file))
  return { manifest, id: hex(consortiumId(manifest)) }
}

/**
 * What a node's data directory says of it, without the node running: its peer id, the
 * consortium it joined, and the head of its verified ledger (the model it would go on from).
 */
export function offlineStatus (dataDir: string): Record<string, unknown> {
  const dir = new DataDir(dataDir)
  const peerId = dir.identity().peerId
  if (!existsSync(dir.path('manifest.json'))) return { running: false, peerId, consortium: null, ledger: null }
  const manifest = dir.manifest()
  const ledger = dir.ledger(manifest)
  const last = ledger.entries.at(-1)
  const model = ledger.lastOf('update')
  const best = bestModel(ledger, manifest.params.model.classes)
  return {
    running: false,
    peerId,
    consortium: { name: manifest.name, id: hex(consortiumId(manifest)), members: manifest.members.map(m => m.name), model: manifest.params.model.id },
    ledger: {
      certified: ledger.entries.length,
      head: last === undefined ? null : { round: last.header.round, kind: last.header.kind, certificate: hex(last.hash) },
      lastModel: model === undefined ? null : { round: model.header.round, state: hex(model.header.stateHash) },
      bestValidated: best === undefined ? null : { round: best.model.header.round, auc: best.figures.auc, smoothedAuc: best.smoothedAuc, degenerate: best.degenerate }
    },
    lastRound: dir.lastRound()
  }
}

/** Join: check the signed manifest and this node's membership, then store the manifest and the settings (config.json) for start. */
/** `init`: the initial weights' file, which a manifest with params.model.init needs (and any other refuses). */
export function join (dataDir: string, manifestFile: string, settings: Partial<Record<keyof NodeConfig, unknown>>, init?: string): { manifest: Manifest, peerId: string, dataset: ReturnType<typeof checkDataset> } {
  const dir = new DataDir(dataDir)
  const signed = readSignedManifest(manifestFile)
  const manifest = verifySignedManifest(signed)
  const identity = dir.identity()
  if (memberIndex(manifest, identity.peerId) < 0) throw new ConfigError(`this node (${identity.peerId}) is not a member of '${manifest.name}'`)
  const layer = Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined))
  const config = resolveConfig(dir.root, layer, {}) // validate before writing anything
  const dataset = checkDataset(manifest, config.dataset, config.shard)
  const initial = initialWeightsToKeep(manifest, init)
  if (initial !== null) dir.saveInitialWeights(initial)
  dir.saveManifest(signed)
  atomicWrite(dir.path('config.json'), JSON.stringify(layer, null, 2) + '\n', 0o644)
  return { manifest, peerId: identity.peerId, dataset }
}

/** The weights `join --init` must keep: checked against the manifest; null where it builds them from its seed. */
function initialWeightsToKeep (manifest: Manifest, init: string | undefined): Float32Array | null {
  const said = manifest.params.model.init
  if (said === undefined) {
    if (init !== undefined) throw new ConfigError(`consortium '${manifest.name}' builds its initial weights from its seed: --init is not for it`)
    return null
  }
  if (init === undefined) throw new ConfigError(`consortium '${manifest.name}' starts from ${said}: give that file with --init`)
  const { weights, file } = readWeightsFile(init)
  checkInitialWeights(weights, manifest, `the weights in ${file}`)
  return weights
}
