/**
 * Step 6 of a round (docs/PROTOCOL.md): the members' reveals, and the certified survivor set's
 * secrets reconstructed from them once. Pure state, like survivors.ts: the round adds each
 * member's first reveal and asks for the secrets on every event until they are known.
 */
import { hex } from './codec.ts'
import { secretsFromReveals, type AggregationInput, type RevealedShares, type UnmaskingSecrets } from './aggregate.ts'
import type { RevealBody } from './messages.ts'

export type SecretsContext = Pick<AggregationInput, 'adverts' | 'peerIds' | 'maskContext' | 'params'> & { maskingSet: readonly number[], faulty: ReadonlySet<number> }

export class RevealedSecrets {
  readonly #reveals = new Map<number, RevealBody>()
  /** what the last look at the reveals saw (survivor set, reveals, faulty members): nothing new, no need to look again */
  #seen = ''
  #secrets: UnmaskingSecrets | null = null

  /** a member's reveal (the round passes only its first) */
  add (sender: number, body: RevealBody): void { this.#reveals.set(sender, body) }

  /**
   * The secrets of survivor set `survivors` (proposal `proposalId`), once t usable reveals name it;
   * `misbehaved` names whose reveals broke the rules or gave shares that reconstruct no committed
   * secret (the round makes them faulty, and may then do without them).
   */
  secrets (proposalId: Uint8Array, survivors: readonly number[], c: () => SecretsContext): { secrets: UnmaskingSecrets | null, misbehaved: RevealedShares['misbehaved'] } {
    if (this.#secrets !== null) return { secrets: this.#secrets, misbehaved: [] }
    // every event comes here until the secrets are known; the reveals are decoded again only when
    // one came in or a member was found faulty since (otherwise a round costs each peer n² share
    // decodings per event, n⁴ in all: a round of 100 peers took minutes)
    const context = c()
    const seen = `${hex(proposalId)}:${this.#reveals.size}:${context.faulty.size}` // a member's first reveal is its only one
    if (seen === this.#seen) return { secrets: null, misbehaved: [] }
    this.#seen = seen
    const got = secretsFromReveals({ ...context, reveals: this.#reveals, proposalId, survivors })
    this.#secrets = got.secrets
    return got
  }
}
