/**
 * The sliced exchange (exchange.ts): each masked vector committed and published in slices, each
 * slice fetched, summed and unmasked only by its aggregators, who sign its sum; a member puts the
 * whole sum together from the agreed slice sums (sliced.ts holds the bookkeeping; docs/PROTOCOL.md §8).
 */
import { hash, hex } from './codec.ts'
import type { UnmaskingSecrets } from './aggregate.ts'
import type { Exchange, Rejection, SumStep } from './exchange.ts'
import type { MaskedInputBody, SliceSumsBody } from './messages.ts'
import { SlicedAggregation, commitSlices, type SliceClaimConflict, type SlicedOptions } from './sliced.ts'
import { MaskedVectors, type Commitment } from './vectors.ts'

/** Two signed sums for one slice: both messages are the proof; which signer lied, the next aggregator's sum tells. */
function conflictRejection (c: SliceClaimConflict): Rejection {
  const [a, b] = c.members
  const proof = `${hex(hash(c.wires[0])).slice(0, 16)}…, ${hex(hash(c.wires[1])).slice(0, 16)}…`
  return a === b
    ? { code: 'equivocation', reason: `member ${a} signed two different sums of slice ${c.slice} (messages ${proof})`, peer: b }
    : { code: 'bad-aggregate', reason: `members ${a} and ${b} signed different sums of slice ${c.slice} (messages ${proof}): one of them lied; the next aggregator of the slice recomputes it`, peer: b }
}

export class SlicedExchange implements Exchange {
  readonly #slices: SlicedAggregation
  /** the signed commitments (their wires go into the survivor-set proposal) */
  readonly #commitments = new MaskedVectors()
  /** a member that checks everything found an agreed slice sum unlike its own (reported once) */
  #disputeReported = false

  constructor (o: SlicedOptions) { this.#slices = new SlicedAggregation(o) }

  get described (): string { return ` in ${this.#slices.slices} slices` }

  checkCommitment (body: MaskedInputBody): string | null { return this.#slices.checkCommitment(body) }

  commit (member: number, c: Commitment, authoritative: boolean): 'new' | 'same' | 'other' {
    const recorded = this.#commitments.commit(member, c, authoritative)
    if (recorded === 'new' || (recorded === 'other' && authoritative)) this.#slices.commit(member, c.body)
    return recorded
  }

  commitmentOf (member: number): Commitment | undefined { return this.#commitments.commitmentOf(member) }

  own (y: Uint32Array): { blobs: Array<{ hash: string, data: Uint8Array }>, vectorHash: Uint8Array, sliceHashes: Uint8Array[] } {
    // each slice its own blob, fetched by that slice's aggregators only
    const { hashes, root, blobs } = commitSlices(y, this.#slices.slices)
    this.#slices.holdOwn(blobs)
    return { blobs, vectorHash: root, sliceHashes: hashes }
  }

  receiveBlob (hashHex: string, data: Uint8Array, hashChecked: boolean): ReturnType<Exchange['receiveBlob']> {
    const got = this.#slices.receiveBlob(hashHex, data, hashChecked)
    if (got === null) return null
    return got.kind === 'bad' ? { ok: false, reason: `a blob served as ${hashHex.slice(0, 16)}… does not match the slice it was fetched for`, member: got.member ?? -1 } : { ok: true }
  }

  hasInputOf (u: number, maskingSet: readonly number[]): boolean { return this.#slices.hasInputOf(u, maskingSet) }

  takeMissing (maskingSet: readonly number[] | null, survivors: readonly number[] | null): Array<{ hash: string, owner: number }> {
    return maskingSet === null ? [] : this.#slices.takeMissing(maskingSet, survivors)
  }

  sum (now: number, maskingSet: readonly number[], survivors: readonly number[], secrets: UnmaskingSecrets): SumStep {
    const sliced = this.#slices
    const step = sliced.step(now, maskingSet, survivors, secrets)
    const rejects: Rejection[] = []
    const words = sliced.sum()
    if (words === null) {
      const disputed = sliced.disputed()
      if (disputed.length > 0 && !this.#disputeReported) {
        this.#disputeReported = true
        const signers = disputed.map(j => sliced.agreedSigners(j).join('+')).join(', ')
        rejects.push({ code: 'bad-aggregate', reason: `the agreed sums of slices ${disputed.join(', ')} differ from this member's own (signed by ${signers}): it signs no header for this round`, peer: sliced.agreedSigners(disputed[0])[0] ?? -1 })
      }
    }
    return { sum: words === null ? null : { words, sliceHashes: sliced.agreedHashes() }, publish: step.publish, fetch: step.fetch, announce: step.announce, rejects }
  }

  claim (sender: number, body: SliceSumsBody, wire: Uint8Array, certified: { id: Uint8Array, members: readonly number[] } | null): { rejects: Rejection[], invalid: string | null } {
    const { conflicts, invalid } = this.#slices.claim(sender, body, wire, certified)
    return { rejects: conflicts.map(conflictRejection), invalid }
  }

  survivorsCertified (certified: { id: Uint8Array, members: readonly number[] }): Rejection[] {
    const out: Rejection[] = []
    // slice sums that came before this peer certified the set
    for (const p of this.#slices.takePending()) {
      const { conflicts, invalid } = this.#slices.claim(p.sender, p.body, p.wire, certified)
      if (invalid !== null || conflicts.length > 0) out.push({ code: invalid !== null ? 'invalid' : 'bad-aggregate', reason: invalid ?? `member ${p.sender} signed a sum of slice ${conflicts[0].slice} that another aggregator's contradicts`, peer: p.sender })
    }
    return out
  }

  release (): void { this.#slices.release() }
}
