/**
 * Steps 5–6 of a round (docs/PROTOCOL.md) as pure functions: gather the shares the members
 * revealed, reconstruct each survivor's self-mask seed and each dropped member's mask key, check
 * every secret against what its owner committed to in its advertisement, strip the masks from the
 * sum of the survivors' masked vectors, apply the aggregation strategy, and build the certificate
 * header every honest member signs. No state, no I/O: the same inputs give the same header.
 */
import {
  decodeShare, reconstructSecret, secretCommitment, x25519PublicKey, pairwiseMaskSeed, pairwiseSign, sumVectors, unmaskSum,
  decodeWeightedAverage, InconsistentSharesError, type Share, type DroppedPairwiseMask, type WeightedUpdateParams
} from '../privacy/index.ts'
import { equalBytes, hash } from './codec.ts'
import type { RejectCode } from './errors.ts'
import { encodeHeader } from './ledger.ts'
import type { AggregationParams } from './manifest.ts'
import { encodeState, stateHash, type GlobalState } from './model.ts'
import type { RevealBody } from './messages.ts'
import { strategyFor } from './strategy/index.ts'
import { encodeValidation, validationFigures, validationLength } from './validation.ts'
import type { SelectionParams } from './selection.ts'

export interface RevealedShares {
  /** per survivor: shares of its self-mask seed */
  selfMaskShares: Map<number, Share[]>
  /** per dropped member: shares of its mask key */
  keyShares: Map<number, Share[]>
  /** members whose reveal broke the rules, with why */
  misbehaved: Array<{ member: number, code: RejectCode, reason: string }>
}

/**
 * The shares in the reveals that name the certified survivor set, from members of the masking set
 * not already known to be faulty. A member that reveals both kinds of share for one member, shares
 * for members outside the set, or shares at another member's point is named and left out.
 */
export function collectRevealedShares (reveals: ReadonlyMap<number, RevealBody>, maskingSet: readonly number[], survivors: readonly number[], faulty: ReadonlySet<number>): RevealedShares {
  const dropped = maskingSet.filter(u => !survivors.includes(u))
  const selfMaskShares = new Map<number, Share[]>(survivors.map(u => [u, []]))
  const keyShares = new Map<number, Share[]>(dropped.map(u => [u, []]))
  const misbehaved: RevealedShares['misbehaved'] = []
  for (const [sender, body] of reveals) {
    if (faulty.has(sender) || !maskingSet.includes(sender)) continue
    const owners = new Set<number>()
    let withinRules = true
    for (const [u] of body.selfMaskShares) { if (!selfMaskShares.has(u) || owners.has(u)) withinRules = false; owners.add(u) }
    for (const [u] of body.keyShares) { if (!keyShares.has(u) || owners.has(u)) withinRules = false; owners.add(u) }
    if (!withinRules) { misbehaved.push({ member: sender, code: 'invalid', reason: `member ${sender} revealed shares outside the rules (both kinds, or for the wrong set)` }); continue }
    const own = (encoded: Uint8Array): Share | null => {
      try {
        const share = decodeShare(encoded)
        return share.x === sender + 1 ? share : null
      } catch { return null }
    }
    const self = body.selfMaskShares.map(([u, s]) => [u, own(s)] as const)
    const keys = body.keyShares.map(([u, s]) => [u, own(s)] as const)
    if ([...self, ...keys].some(([, s]) => s === null)) { misbehaved.push({ member: sender, code: 'bad-share', reason: `member ${sender} revealed malformed shares` }); continue }
    for (const [u, s] of self) selfMaskShares.get(u)!.push(s!)
    for (const [u, s] of keys) keyShares.get(u)!.push(s!)
  }
  return { selfMaskShares, keyShares, misbehaved }
}

/** Whether every secret has the t shares its reconstruction needs. */
export function enoughShares (shares: RevealedShares, threshold: number): boolean {
  return [...shares.selfMaskShares.values(), ...shares.keyShares.values()].every(list => list.length >= threshold)
}

export interface AggregationInput {
  consortium: Uint8Array
  round: number
  /** the ledger head this round extends */
  prev: Uint8Array
  kind: 'update' | 'stats' | 'eval'
  /** the certified state the updates were trained from */
  state: GlobalState
  /** the candidates' models `state` holds while recipe selection runs (absent: 1): an eval round's sets of figures */
  parts?: number
  survivors: readonly number[]
  dropped: readonly number[]
  shares: Pick<RevealedShares, 'selfMaskShares' | 'keyShares'>
  /** per member of the masking set: what its advertisement committed to */
  adverts: ReadonlyMap<number, { selfMaskCommitment: Uint8Array, maskKey: Uint8Array }>
  /** per survivor: its masked vector, checked against its commitment */
  maskedVectors: ReadonlyMap<number, Uint32Array>
  /** peer ids by member index: they fix the sign of each pairwise mask */
  peerIds: readonly string[]
  /** the round's context (consortium id and round), which every mask seed is derived with */
  maskContext: Uint8Array
  params: { threshold: number, quantization: WeightedUpdateParams, aggregation: AggregationParams, model: { classes: number, size: number }, validation: { bins: number }, selection?: SelectionParams }
}

export type AggregationResult =
  /** stateBytes: the new state's canonical encoding (null with the state), made once for its hash and for publishing it */
  | { ok: true, header: Uint8Array, state: GlobalState | null, stats: Float64Array | null, stateBytes: Uint8Array | null }
  /** a reconstructed secret did not match its commitment: the members whose shares are to blame */
  | { ok: false, suspects: number[] }

/** What removing the masks takes: every survivor's self-mask seed and each survivor's pairwise seed with each dropped member. */
export interface UnmaskingSecrets { selfSeeds: Uint8Array[], droppedMasks: DroppedPairwiseMask[] }

/**
 * Reconstruct the secrets from the revealed shares, each checked against its owner's commitment.
 * The same secrets unmask the whole vector or any slice of it, always over the one survivor set
 * whose reveals they came from (docs/PROTOCOL.md §8).
 */
export function unmaskingSecrets (a: Pick<AggregationInput, 'survivors' | 'dropped' | 'shares' | 'adverts' | 'peerIds' | 'maskContext' | 'params'>): { ok: true, secrets: UnmaskingSecrets } | { ok: false, suspects: number[] } {
  const selfSeeds: Uint8Array[] = []
  const droppedKeys = new Map<number, Uint8Array>()
  try {
    for (const u of a.survivors) {
      const commitment = a.adverts.get(u)!.selfMaskCommitment
      selfSeeds.push(reconstructSecret(a.shares.selfMaskShares.get(u)!, a.params.threshold, { verify: s => equalBytes(secretCommitment(s), commitment) }))
    }
    for (const u of a.dropped) {
      const pub = a.adverts.get(u)!.maskKey
      droppedKeys.set(u, reconstructSecret(a.shares.keyShares.get(u)!, a.params.threshold, { verify: s => equalBytes(x25519PublicKey(s), pub) }))
    }
  } catch (e) {
    // share points are member index + 1
    if (e instanceof InconsistentSharesError) return { ok: false, suspects: e.suspects.map(x => x - 1) }
    throw e
  }
  const droppedMasks: DroppedPairwiseMask[] = []
  for (const [d, key] of droppedKeys) {
    for (const u of a.survivors) {
      droppedMasks.push({ seed: pairwiseMaskSeed(key, a.adverts.get(u)!.maskKey, a.maskContext), sign: pairwiseSign(a.peerIds[u], a.peerIds[d]) })
    }
  }
  return { ok: true, secrets: { selfSeeds, droppedMasks } }
}

/** The survivors' inputs summed over words [from, from + length): their masked slices summed, that slice of every mask removed. */
export function unmaskSlice (maskedSlices: readonly Uint32Array[], from: number, secrets: UnmaskingSecrets): Uint32Array {
  return unmaskSum(sumVectors(maskedSlices), secrets.selfSeeds, secrets.droppedMasks, from)
}

export function aggregate (a: AggregationInput): AggregationResult {
  const unmasking = unmaskingSecrets(a)
  if (!unmasking.ok) return unmasking
  return aggregateFromSum(a, unmaskSlice(a.survivors.map(u => a.maskedVectors.get(u)!), 0, unmasking.secrets))
}

/**
 * From the survivors' unmasked sum (computed here, or put together from aggregated slices) to the
 * new state and the certificate header: the same sum gives the same header in either mode.
 */
export function aggregateFromSum (a: Omit<AggregationInput, 'shares' | 'adverts' | 'maskedVectors' | 'peerIds' | 'maskContext' | 'dropped'>, sum: Uint32Array, sliceHashes?: readonly Uint8Array[]): AggregationResult & { ok: true } {
  // sliced (sliceHashes given): the header names each slice's hash too, the hashes its aggregators
  // signed, which the caller checked the slices it put the sum together from against
  const aggregateHash = hash(new Uint8Array(sum.buffer, sum.byteOffset, sum.byteLength))
  let state: GlobalState | null = null
  let stats: Float64Array | null = null
  let extra: Uint8Array = new Uint8Array(0)
  if (a.kind === 'eval') {
    // validation counts are exact integers: their sum is the pooled counts; the state is unchanged
    // (one set of figures per candidate while recipe selection runs, selection.ts)
    const layout = { classes: a.params.model.classes, bins: a.params.validation.bins }
    const parts = a.parts ?? 1
    const length = validationLength(layout)
    const sets = Array.from({ length: parts }, (_, i) => encodeValidation(validationFigures(sum.subarray(i * length, (i + 1) * length), layout)))
    extra = new Uint8Array(sets.reduce((n, b) => n + b.length, 0))
    sets.forEach((b, i) => { extra.set(b, i * b.length) })
  } else {
    const { mean } = decodeWeightedAverage(sum, a.survivors.length, a.params.quantization)
    if (a.kind === 'update') state = strategyFor(a.params.aggregation.rule).apply(a.state, mean, a.params.aggregation)
    else { stats = mean; extra = new Uint8Array(Float64Array.from(mean).buffer) }
  }
  const stateBytes = state !== null ? encodeState(state) : null
  const header = encodeHeader({
    consortium: a.consortium,
    round: a.round,
    prev: a.prev,
    kind: a.kind,
    survivors: [...a.survivors],
    aggregateHash,
    ...(sliceHashes !== undefined ? { sliceHashes: [...sliceHashes] } : {}),
    stateHash: stateBytes !== null ? hash(stateBytes) : stateHash(a.state),
    extra
  })
  return { ok: true, header, state, stats, stateBytes }
}

/**
 * The certified survivor set's secrets from the reveals that name it, or null while they cannot be
 * had yet: fewer than t reveals (each holds one share of each secret; a reveal that breaks the
 * rules is named once t are in), too few usable shares, or a share inconsistent with its owner's
 * commitment. `misbehaved` names the members whose reveals broke the rules or gave such a share.
 */
export function secretsFromReveals (a: Pick<AggregationInput, 'survivors' | 'adverts' | 'peerIds' | 'maskContext' | 'params'> & { reveals: ReadonlyMap<number, RevealBody>, proposalId: Uint8Array, maskingSet: readonly number[], faulty: ReadonlySet<number> }): { secrets: UnmaskingSecrets | null, misbehaved: RevealedShares['misbehaved'] } {
  const reveals = new Map([...a.reveals].filter(([, body]) => equalBytes(body.proposalId, a.proposalId)))
  if (reveals.size < a.params.threshold) return { secrets: null, misbehaved: [] }
  const shares = collectRevealedShares(reveals, a.maskingSet, a.survivors, a.faulty)
  const misbehaved = [...shares.misbehaved]
  if (!enoughShares(shares, a.params.threshold)) return { secrets: null, misbehaved } // wait for more reveals
  const got = unmaskingSecrets({ ...a, dropped: a.maskingSet.filter(u => !a.survivors.includes(u)), shares })
  if (got.ok) return { secrets: got.secrets, misbehaved }
  // whoever revealed a bad share is named and excluded; the others' shares may suffice later
  for (const culprit of got.suspects) misbehaved.push({ member: culprit, code: 'bad-share', reason: `member ${culprit} revealed a share inconsistent with the commitment` })
  return { secrets: null, misbehaved }
}
