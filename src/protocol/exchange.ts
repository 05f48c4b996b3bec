/**
 * How the members' masked vectors travel and are summed within a round: the one interface that
 * Round drives without knowing which exchange it has (Flower's strategies are the model: one
 * small interface, each implementation in its own file with its test beside it).
 *
 * - whole-exchange.ts: every member fetches every survivor's whole masked vector and sums them
 *   itself (all-to-all).
 * - sliced-exchange.ts: each vector in slices; each slice fetched, summed and unmasked by its
 *   aggregators only, who sign its sum (docs/PROTOCOL.md §8).
 *
 * Round keeps everything else: the messages, the sets, the reveals and the secrets they give. An
 * exchange is pure state: it is told what arrived and asked what to fetch, publish and announce.
 */
import type { RejectCode } from './errors.ts'
import type { UnmaskingSecrets } from './aggregate.ts'
import { equalBytes } from './codec.ts'
import { ProtocolError } from './errors.ts'
import type { MaskedInputBody, OpenedMessage, SliceSumsBody } from './messages.ts'
import type { Commitment } from './vectors.ts'

export type { Commitment } from './vectors.ts'

export interface Blob { hash: string, data: Uint8Array }
export interface Fetch { hash: string, owner: number }
export interface Rejection { code: RejectCode, reason: string, peer: number }

/** A fetched blob: it was one this round wanted and matched, or it was bad (named), or it was not this round's (null). */
export type BlobVerdict = { ok: true } | { ok: false, reason: string, member: number } | null

/** Where the exchange stands once the secrets of the survivor set are known. */
export interface SumStep {
  /** the survivors' unmasked sum (and, sliced, each slice's agreed hash), or null while it is still forming */
  sum: { words: Uint32Array, sliceHashes?: Uint8Array[] } | null
  publish: Blob[]
  fetch: Fetch[]
  /** slice sums this peer computed, to be signed and announced */
  announce: Array<[number, Uint8Array]>
  rejects: Rejection[]
}

export interface Exchange {
  /** how the sum is formed, for the round's log line: '' or ' in 64 slices' */
  readonly described: string
  /** Why a masked-input commitment does not fit this exchange, or null. */
  checkCommitment: (body: MaskedInputBody) => string | null
  /** Record a member's commitment: 'new', 'same' (seen), 'other' (it committed to another: equivocation); `authoritative` makes it count all the same. */
  commit: (member: number, c: Commitment, authoritative: boolean) => 'new' | 'same' | 'other'
  commitmentOf: (member: number) => Commitment | undefined
  /** This peer's own masked vector: what to publish, and the commitment's hashes. */
  own: (y: Uint32Array) => { blobs: Blob[], vectorHash: Uint8Array, sliceHashes?: Uint8Array[] }
  /** A fetched blob (`hashChecked`: the driver already found SHA-256(data) = hashHex). */
  receiveBlob: (hashHex: string, data: Uint8Array, hashChecked: boolean) => BlobVerdict
  /** Whether this peer holds what it needs of member u's input before the survivor set is fixed. */
  hasInputOf: (u: number, maskingSet: readonly number[]) => boolean
  /** What to fetch now that it lacks and has not asked for (marked as asked for). */
  takeMissing: (maskingSet: readonly number[] | null, survivors: readonly number[] | null) => Fetch[]
  /** Given the survivors' secrets: the sum, once it can be formed. */
  sum: (now: number, maskingSet: readonly number[], survivors: readonly number[], secrets: UnmaskingSecrets) => SumStep
  /** An aggregator's signed slice sums: what they prove, and why they break the rules (null if they don't). */
  claim: (sender: number, body: SliceSumsBody, wire: Uint8Array, certified: { id: Uint8Array, members: readonly number[] } | null) => { rejects: Rejection[], invalid: string | null }
  /** The survivor set is certified: the claims that waited for it, judged. */
  survivorsCertified: (certified: { id: Uint8Array, members: readonly number[] }) => Rejection[]
  /** The round ended: let the vectors go. */
  release: () => void
}

/** A member's masked-input commitment checked against the agreed masking set, the round's input length and the exchange (a ProtocolError if it fails). */
export function checkMaskedInput (msg: OpenedMessage<MaskedInputBody>, M: { id: Uint8Array, members: readonly number[] } | undefined, length: number, exchange: Pick<Exchange, 'checkCommitment'>): void {
  const { sender, body } = msg.env
  if (M === undefined) throw new ProtocolError('wrong-phase', `masked input from ${sender} before the masking set is known`)
  if (!equalBytes(body.maskingSetId, M.id)) throw new ProtocolError('invalid', `masked input from ${sender} names another masking set`)
  if (!M.members.includes(sender)) throw new ProtocolError('invalid', `masked input from ${sender}, not in the masking set`)
  if (body.length !== length) throw new ProtocolError('invalid', `masked input from ${sender} has ${body.length} words, expected ${length}`)
  const unfit = exchange.checkCommitment(body)
  if (unfit !== null) throw new ProtocolError('invalid', `masked input from ${sender} ${unfit}`)
}
