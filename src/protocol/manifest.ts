/**
 * The consortium manifest: who the members are and the protocol's parameters. Its hash (SHA-256
 * of its canonical CBOR encoding) is the consortium id that every message and certificate names.
 * A founding manifest is valid only with every founding member's signature over that hash; later
 * manifests take effect through a membership certificate signed by a quorum of the previous
 * members (see ledger.ts).
 */
import { NodeIdentity, ed25519PublicKeyFromPeerId, verifySignature, assertNoWrap, type QuantizationParams } from '../privacy/index.ts'
import { encodeCanonical, hash, hex } from './codec.ts'
import { selectionProblem, type SelectionParams } from './selection.ts'

/** the most members a consortium has: a masking-set proposal (every member's advertisement and share keys, n boxes each) must fit one message (MAX_MESSAGE_BYTES) */
export const MAX_MEMBERS = 100
export const AGGREGATION_RULES = ['fedavg', 'fedavgm', 'fedadam'] as const
export type AggregationRule = typeof AGGREGATION_RULES[number]

export interface Member {
  peerId: string
  name: string
}

export interface AggregationParams {
  rule: AggregationRule
  /** server learning rate (1 for plain FedAvg) */
  serverLr: number
  /** FedAvgM momentum; FedAdam β1 */
  beta1: number
  /** FedAdam β2 */
  beta2: number
  /** FedAdam τ (adaptivity) */
  tau: number
}

export const CLASS_WEIGHTINGS = ['balanced', 'none'] as const
export const LR_SCHEDULES = ['constant', 'cosine', 'step'] as const
export const PRIOR_CORRECTIONS = ['none', 'pooled'] as const
/** augmentation by modality: X-ray (no flips), ultrasound (flips, gain and contrast), photograph (flips, colour), or none */
export const AUGMENTATIONS = ['xray', 'ultrasound', 'photo', 'none'] as const

/**
 * The guards a new consortium's recipe gets (manifest create, simnet): a linear warm-up of the
 * learning rate over each site's first steps (within its first round, however few steps that
 * round has), a bound on each step's gradient norm, decoupled weight decay. Absent from a
 * manifest (one made before them): off, as it was trained then.
 */
export const DEFAULT_GUARDS = { warmupSteps: 50, clipGradientNorm: 5, weightDecay: 0.01 } as const

export interface TrainingParams {
  schedule: typeof LR_SCHEDULES[number]
  rounds: number
  epochs: number
  batchSize: number
  learningRate: number
  classWeighting: typeof CLASS_WEIGHTINGS[number]
  /** label-shift correction of the local loss towards the pooled class mix (absent: 'none') */
  priorCorrection?: typeof PRIOR_CORRECTIONS[number]
  /** the learning rate grows linearly over each site's first steps (absent: none) */
  warmupSteps?: number
  /** each step's gradient scaled down to this global L2 norm (absent: none; DP-SGD clips per example anyway) */
  clipGradientNorm?: number
  /** decoupled weight decay on kernels (absent: none) */
  weightDecay?: number
  /** at least this many local steps a round, a small hospital's epochs repeated (absent: the epochs' steps) */
  minSteps?: number
  /** augmentation for the modality, its shifts in proportion to the image (absent: by channels, X-ray for grayscale, photograph for colour, shifts in pixels at any size, as consortia founded before modalities trained) */
  augmentation?: typeof AUGMENTATIONS[number]
}

export interface ProtocolParams {
  /**
   * the model: its identifier and version, the seed of its initial weights, their hash and count,
   * the images it takes (square side and channels: every site's data is resized to it, and a site
   * whose images have other channels is refused) and the classes it tells apart, with their
   * names when the founder gave them (a site whose data names them otherwise is refused).
   * `init`: the initial weights are not built from the seed but given as a file (a model
   * `medmesh export` wrote, or a pretrained one) that every member holds and checks against
   * initialHash; the text says what they are, for people.
   */
  model: { id: string, version: string, seed: number, initialHash: string, size: number, input: { size: number, channels: number }, classes: number, classNames?: string[], init?: string }
  quantization: QuantizationParams & { maxSampleCount: number }
  /** the fewest peers whose inputs may be aggregated; nobody learns a sum of fewer */
  minParticipants: number
  /** Shamir threshold t: shares needed to reconstruct a secret */
  threshold: number
  /** matching signatures that certify a round */
  quorum: number
  timeouts: { phaseMs: number, roundMs: number }
  dp: { enabled: boolean, epsilon: number, delta: number, noiseMultiplier: number, clipNorm: number }
  aggregation: AggregationParams
  /**
   * federated validation after each model round: histogram bins of the validation counts, and
   * how many eval rounds without a better validation AUC end training (0: run all rounds)
   */
  validation: { bins: number, patience: number }
  /**
   * every site's local training recipe: the learning rate over model rounds (constant, or cosine /
   * step decay over `rounds` model rounds), local epochs per round, batch size, the base learning
   * rate, and class weighting ('balanced' weighs each class by 1 / (classes · f) for the
   * consortium's pooled frequency f of the class, from the statistics round)
   */
  training: TrainingParams
  /**
   * encrypted inference: peers outside the consortium allowed to query its model (members always
   * may), by peer id and name; they reach a holder's inference listener only
   */
  inference?: { clients: Member[] }
  /**
   * sliced aggregation (docs/PROTOCOL.md §8): each masked vector in `slices` slices, each summed
   * and unmasked by `perSlice` members (at least 2, so that they check each other) instead of
   * every member fetching every vector; absent: all-to-all
   */
  slicing?: SlicingParams
  /**
   * federated recipe selection (selection.ts, docs/PROTOCOL.md §9): candidate recipes trained
   * side by side and halved by pooled validation every `rungRounds` model rounds; absent: the one
   * recipe of `training`
   */
  selection?: SelectionParams
}

export interface SlicingParams { slices: number, perSlice: number }
export const MAX_SLICES = 256

/**
 * The aggregation mode a new consortium of `members` gets unless its founders choose: sliced (64
 * slices, 2 aggregators each) from 5 members, all-to-all below. Measured with bench/scale at
 * d = 100,000: at n = 5 each peer receives 2.3 model sizes sliced against 4.2 all-to-all, at
 * n = 10 2.9 against 9.2; with 3 or 4 members a slice's two aggregators are most of the consortium
 * and all-to-all lets every member check the whole sum for little more traffic.
 */
/** aggregators per slice where the flags do not say */
export const DEFAULT_PER_SLICE = 2

/**
 * The slicing that `--slices S [--per-slice K]` ask for (manifest create, the simulator): undefined
 * when neither is given (the consortium's default, defaultSlicing), null for S = 0 (all-to-all);
 * K without S is an error. The ranges are validateManifest's.
 */
export function slicingFromFlags (slices: number | undefined, perSlice: number | undefined): { slicing: SlicingParams | null | undefined } | { error: string } {
  if (slices === undefined && perSlice !== undefined) return { error: '--per-slice goes with --slices (sliced aggregation)' }
  if (slices === undefined) return { slicing: undefined }
  return { slicing: slices === 0 ? null : { slices, perSlice: perSlice ?? DEFAULT_PER_SLICE } }
}

export function defaultSlicing (members: number): SlicingParams | null {
  return members >= 5 ? { slices: 64, perSlice: 2 } : null
}

export interface Manifest {
  version: 1
  name: string
  members: Member[]
  params: ProtocolParams
}

export interface SignedManifest {
  manifest: Manifest
  /** founding members' signatures over the consortium id, hex, by peer id */
  signatures: Record<string, string>
}

export class ManifestError extends Error {
  constructor (message: string) { super(message); this.name = 'ManifestError' }
}

const fail = (m: string): never => { throw new ManifestError(m) }
const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)
const num = (v: unknown, what: string, min: number, max: number, integer = false): number => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) fail(`${what} must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}]`)
  return v as number
}
const text = (v: unknown, what: string, max = 200): string => {
  if (typeof v !== 'string' || v.length === 0 || v.length > max) fail(`${what} must be a non-empty string of at most ${max} characters`)
  return v as string
}

/** The members' entries, each a named Ed25519 peer id listed once; returns the peer ids. */
function validateMembers (members: unknown[]): Set<string> {
  const seen = new Set<string>()
  for (const [i, mem] of members.entries()) {
    if (!isObj(mem)) fail(`members[${i}] must be an object`)
    const peerId = text((mem as Member).peerId, `members[${i}].peerId`, 100)
    text((mem as Member).name, `members[${i}].name`, 100)
    try { ed25519PublicKeyFromPeerId(peerId) } catch { fail(`members[${i}].peerId is not an Ed25519 libp2p peer id`) }
    if (seen.has(peerId)) fail(`member ${peerId} is listed twice`)
    seen.add(peerId)
  }
  return seen
}

/** params.model: what the model is, its initial weights, its input and its classes. */
function validateModelParams (model: ProtocolParams['model']): void {
  if (!isObj(model)) fail('params.model must be an object')
  text(model.id, 'params.model.id'); text(model.version, 'params.model.version')
  if (typeof model.initialHash !== 'string' || !/^[0-9a-f]{64}$/.test(model.initialHash)) fail('params.model.initialHash must be 64 hex digits')
  num(model.size, 'params.model.size', 1, 2 ** 28, true)
  num(model.seed, 'params.model.seed', 0, 2 ** 31 - 1, true)
  if (!isObj(model.input)) fail('params.model.input must be an object { size, channels }')
  num(model.input.size, 'params.model.input.size', 4, 1024, true)
  if (model.input.channels !== 1 && model.input.channels !== 3) fail('params.model.input.channels must be 1 or 3')
  num(model.classes, 'params.model.classes', 2, 1000, true)
  if (model.init !== undefined) text(model.init, 'params.model.init', 200)
  if (model.classNames !== undefined) {
    const names = model.classNames
    if (!Array.isArray(names) || names.length !== model.classes) fail(`params.model.classNames must be ${model.classes} names, one per class`)
    names.forEach((c, i) => text(c, `params.model.classNames[${i}]`, 64))
    if (new Set(names).size !== names.length) fail('params.model.classNames must be distinct')
  }
}

/** params.slicing: its two fields only, the slices and the aggregators of each. */
function validateSlicing (slicing: SlicingParams, minParticipants: number): void {
  if (!isObj(slicing) || Object.keys(slicing).some(k => k !== 'slices' && k !== 'perSlice')) fail('params.slicing must be { slices, perSlice }')
  num(slicing.slices, 'params.slicing.slices', 1, MAX_SLICES, true)
  // every slice needs perSlice aggregators among the survivors, and a survivor set may be as small as minParticipants
  num(slicing.perSlice, 'params.slicing.perSlice', 2, minParticipants, true)
}

/** The inference clients: each a named Ed25519 peer id, listed once and not a member (`seen` holds the members). */
function validateInferenceClients (inference: NonNullable<ProtocolParams['inference']>, seen: Set<string>): void {
  if (!isObj(inference) || !Array.isArray(inference.clients) || Object.keys(inference).some(k => k !== 'clients')) fail('params.inference must be { clients: [{ peerId, name }] }')
  if (inference.clients.length > 1000) fail('params.inference.clients lists at most 1000 clients')
  for (const [i, cl] of inference.clients.entries()) {
    if (!isObj(cl) || Object.keys(cl).some(k => k !== 'peerId' && k !== 'name')) fail(`params.inference.clients[${i}] must be { peerId, name }`)
    text(cl.peerId, `params.inference.clients[${i}].peerId`, 100); text(cl.name, `params.inference.clients[${i}].name`, 100)
    try { ed25519PublicKeyFromPeerId(cl.peerId) } catch { fail(`params.inference.clients[${i}].peerId is not an Ed25519 libp2p peer id`) }
    if (seen.has(cl.peerId)) fail(`inference client ${cl.peerId} is listed twice or is a member`)
    seen.add(cl.peerId)
  }
}

/** Check every field; returns the manifest with members in canonical (peer id) order. */
export function validateManifest (m: unknown): Manifest {
  if (!isObj(m)) return fail('manifest must be an object')
  if (m.version !== 1) fail('manifest.version must be 1')
  text(m.name, 'manifest.name')
  if (!Array.isArray(m.members)) fail('manifest.members must be an array')
  const members = m.members as unknown[]
  if (members.length < 2 || members.length > MAX_MEMBERS) fail(`a consortium has 2 to ${MAX_MEMBERS} members, got ${members.length}`)
  const seen = validateMembers(members)
  const n = members.length
  const p = m.params as ProtocolParams
  if (!isObj(p)) fail('manifest.params must be an object')
  validateModelParams(p.model)
  if (!isObj(p.quantization)) fail('params.quantization must be an object')
  num(p.quantization.clip, 'params.quantization.clip', 1, 2 ** 20)
  num(p.quantization.scale, 'params.quantization.scale', 1, 2 ** 30)
  num(p.quantization.maxSampleCount, 'params.quantization.maxSampleCount', 1, 2 ** 40, true)
  try { assertNoWrap(n, p.quantization) } catch (e) { fail(`params.quantization: ${(e as Error).message}`) }
  const majority = Math.floor(n / 2) + 1
  num(p.threshold, 'params.threshold', majority, n, true)
  num(p.minParticipants, 'params.minParticipants', Math.max(2, p.threshold), n, true)
  num(p.quorum, 'params.quorum', majority, n, true)
  if (!isObj(p.timeouts)) fail('params.timeouts must be an object')
  num(p.timeouts.phaseMs, 'params.timeouts.phaseMs', 1, 86_400_000, true)
  num(p.timeouts.roundMs, 'params.timeouts.roundMs', p.timeouts.phaseMs, 7 * 86_400_000, true)
  if (!isObj(p.dp)) fail('params.dp must be an object')
  if (typeof p.dp.enabled !== 'boolean') fail('params.dp.enabled must be true or false')
  num(p.dp.epsilon, 'params.dp.epsilon', 0, 1000); num(p.dp.delta, 'params.dp.delta', 0, 0.1)
  num(p.dp.noiseMultiplier, 'params.dp.noiseMultiplier', 0, 1000); num(p.dp.clipNorm, 'params.dp.clipNorm', 0, 1e6)
  if (!isObj(p.aggregation)) fail('params.aggregation must be an object')
  if (!(AGGREGATION_RULES as readonly string[]).includes(p.aggregation.rule as string)) fail(`params.aggregation.rule must be one of ${AGGREGATION_RULES.join(', ')}`)
  num(p.aggregation.serverLr, 'params.aggregation.serverLr', 0, 100)
  num(p.aggregation.beta1, 'params.aggregation.beta1', 0, 0.9999999)
  num(p.aggregation.beta2, 'params.aggregation.beta2', 0, 0.9999999)
  num(p.aggregation.tau, 'params.aggregation.tau', 1e-12, 10)
  if (!isObj(p.validation)) fail('params.validation must be an object { bins, patience }')
  num(p.validation.bins, 'params.validation.bins', 10, 100_000, true)
  num(p.validation.patience, 'params.validation.patience', 0, 1000, true)
  if (!isObj(p.training) || !(LR_SCHEDULES as readonly string[]).includes(p.training.schedule as string)) fail('params.training.schedule must be constant, cosine or step')
  num(p.training.rounds, 'params.training.rounds', 1, 100_000, true)
  num(p.training.epochs, 'params.training.epochs', 0.01, 1000)
  num(p.training.batchSize, 'params.training.batchSize', 1, 65_536, true)
  num(p.training.learningRate, 'params.training.learningRate', 1e-9, 10)
  if (!(CLASS_WEIGHTINGS as readonly string[]).includes(p.training.classWeighting as string)) fail('params.training.classWeighting must be balanced or none')
  if (p.training.priorCorrection !== undefined && !(PRIOR_CORRECTIONS as readonly string[]).includes(p.training.priorCorrection as string)) fail('params.training.priorCorrection must be none or pooled')
  if (p.training.warmupSteps !== undefined) num(p.training.warmupSteps, 'params.training.warmupSteps', 0, 1_000_000, true)
  if (p.training.minSteps !== undefined) num(p.training.minSteps, 'params.training.minSteps', 1, 1_000_000, true)
  if (p.training.clipGradientNorm !== undefined) num(p.training.clipGradientNorm, 'params.training.clipGradientNorm', 1e-6, 1e6)
  if (p.training.weightDecay !== undefined) {
    num(p.training.weightDecay, 'params.training.weightDecay', 0, 1)
    // each step scales the kernels by 1 − lr·wd: at 1 or more they would vanish or flip sign
    if ((p.training.learningRate as number) * (p.training.weightDecay as number) >= 0.1) fail('params.training.weightDecay times learningRate must be below 0.1')
  }
  if (p.training.augmentation !== undefined && !(AUGMENTATIONS as readonly string[]).includes(p.training.augmentation as string)) fail(`params.training.augmentation must be one of ${AUGMENTATIONS.join(', ')}`)
  if (p.slicing !== undefined) validateSlicing(p.slicing, p.minParticipants)
  if (p.selection !== undefined) {
    const problem = selectionProblem(p.selection, { rounds: p.training.rounds as number, weightDecay: p.training.weightDecay as number | undefined, dp: p.dp.enabled as boolean, model: p.model })
    if (problem !== null) fail(problem)
  }
  if (p.inference !== undefined) validateInferenceClients(p.inference, seen)
  const sorted = [...(members as Member[])].map(x => ({ peerId: x.peerId, name: x.name })).sort((a, b) => a.peerId < b.peerId ? -1 : 1)
  return { version: 1, name: m.name as string, members: sorted, params: structuredClone(p) }
}

/** The consortium id: SHA-256 of the canonical encoding of the (validated) manifest. */
export function consortiumId (manifest: Manifest): Uint8Array {
  return hash(encodeCanonical(manifest))
}

export function signManifest (manifest: Manifest, identity: NodeIdentity): string {
  return hex(identity.sign('manifest', consortiumId(manifest)))
}

/** A founding manifest is valid with a signature from every member it lists. */
export function verifySignedManifest (signed: unknown): Manifest {
  if (!isObj(signed) || !isObj(signed.signatures)) return fail('a signed manifest has { manifest, signatures }')
  const manifest = validateManifest(signed.manifest)
  const id = consortiumId(manifest)
  for (const { peerId } of manifest.members) {
    const sig = (signed.signatures as Record<string, unknown>)[peerId]
    if (typeof sig !== 'string' || !/^[0-9a-f]{128}$/.test(sig)) fail(`the manifest lacks a signature from member ${peerId}`)
    if (!verifySignature(ed25519PublicKeyFromPeerId(peerId), 'manifest', id, Uint8Array.from(Buffer.from(sig as string, 'hex')))) fail(`member ${peerId}'s signature on the manifest is invalid`)
  }
  return manifest
}

/** Parameters a small consortium can start from; every field can be overridden. */
export function defaultParams (members: number, modelSize: number, initialHash: string): ProtocolParams {
  const majority = Math.floor(members / 2) + 1
  return {
    model: { id: 'medmesh/cnn-small', version: '1', seed: 1, initialHash, size: modelSize, input: { size: 28, channels: 1 }, classes: 2 },
    quantization: { clip: 8, scale: 2 ** 18, maxSampleCount: 100_000 },
    minParticipants: Math.max(2, majority),
    threshold: majority,
    quorum: majority,
    timeouts: { phaseMs: 10_000, roundMs: 120_000 },
    dp: { enabled: false, epsilon: 8, delta: 1e-5, noiseMultiplier: 1.0, clipNorm: 1.0 },
    aggregation: { rule: 'fedavg', serverLr: 1, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
    validation: { bins: 1000, patience: 0 },
    training: { schedule: 'constant', rounds: 10, epochs: 1, batchSize: 32, learningRate: 1e-3, classWeighting: 'balanced', ...DEFAULT_GUARDS }
  }
}

/** The member index of a peer id, or -1. Members are in canonical order. */
export function memberIndex (manifest: Manifest, peerId: string): number {
  return manifest.members.findIndex(m => m.peerId === peerId)
}
