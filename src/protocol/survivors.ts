/**
 * Step 4 of a round (docs/PROTOCOL.md): agreeing on the survivor set U3. The proposer of each
 * attempt proposes the members of the masking set whose masked vectors it holds; every member
 * acks the newest proposal whose vectors it all holds, and is then locked to it (in a later
 * attempt it re-affirms that set, never a second one); t acks for one proposal (a quorum
 * certificate) fix the set. On timeout the next proposer takes over. Pure: driven by the round.
 */
import { equalBytes, hex } from './codec.ts'
import { ProtocolError } from './errors.ts'
import { MSG, type MaskedInputBody, type OpenedMessage, type ProposalBody } from './messages.ts'
import { proposingAttempt } from './presence.ts'

export interface SurvivorProposal { id: Uint8Array, attempt: number, members: number[] }

/** What the agreement needs to know of the round it is part of. */
export interface SurvivorContext {
  round: number
  n: number
  me: number
  maskingSet: readonly number[]
  minSet: number
  threshold: number
  phaseMs: number
  hasVectorOf: (member: number) => boolean
  faulty: ReadonlySet<number>
  /** whether this peer has already acked in this attempt */
  ackedIn: (attempt: number) => boolean
  /** send my proposal of these members (the round signs and broadcasts it, and feeds it back) */
  propose: (attempt: number, members: number[]) => void
  /** send my ack of this proposal (fed back likewise) */
  ack: (attempt: number, proposalId: Uint8Array) => void
}

export class SurvivorAgreement {
  readonly #proposals = new Map<string, SurvivorProposal>()
  /** the proposal of the latest attempt seen */
  #newest: SurvivorProposal | null = null
  #attempt = 0
  #deadline = Infinity
  readonly #proposed = new Set<number>()
  /** the proposal I acked first: I am locked to it */
  #lockedTo: string | null = null
  readonly #acks = new Map<string, Set<number>>()
  #certified: { proposal: SurvivorProposal, acks: number } | null = null

  /** the survivor set fixed by t acks, once it is */
  certified (): { proposal: SurvivorProposal, acks: number } | null { return this.#certified }
  /** whether I acked this proposal (only then do I reveal shares for it) */
  acked (proposalId: Uint8Array): boolean { return this.#lockedTo === hex(proposalId) }
  get started (): boolean { return this.#deadline !== Infinity }

  /** Open the first attempt; its proposer proposes at once when every vector is in, or by `deadline` minus a phase. */
  begin (deadline: number): void {
    if (this.#deadline === Infinity) this.#deadline = deadline
  }

  addProposal (p: SurvivorProposal): void {
    this.#proposals.set(hex(p.id), p)
    if (this.#newest === null || p.attempt > this.#newest.attempt) this.#newest = p
  }

  addAck (sender: number, proposalId: Uint8Array): void {
    const key = hex(proposalId)
    let set = this.#acks.get(key)
    if (set === undefined) { set = new Set(); this.#acks.set(key, set) }
    set.add(sender)
  }

  step (now: number, c: SurvivorContext): void {
    if (this.#certified !== null || this.#deadline === Infinity) return
    if (now >= this.#deadline) { this.#attempt++; this.#deadline = now + 2 * c.phaseMs }
    // a proposer outside the masking set takes no part in this round: the first one in it proposes at once (presence.ts)
    const attempt = proposingAttempt(2, c.round, this.#attempt, c.n, c.me, u => !c.maskingSet.includes(u))
    if (attempt !== null && !this.#proposed.has(attempt)) {
      const complete = c.maskingSet.every(u => c.hasVectorOf(u) || c.faulty.has(u))
      if (complete || this.#attempt > 0 || now >= this.#deadline - c.phaseMs) this.#propose(c, attempt)
    }
    // ack the newest proposal whose vectors I all hold, unless I acked another set already (lock)
    const newest = this.#newest
    if (newest !== null && c.maskingSet.includes(c.me) && newest.members.every(u => c.hasVectorOf(u))) {
      if (this.#lockedTo === null) {
        this.#lockedTo = hex(newest.id)
        c.ack(newest.attempt, newest.id)
      } else if (this.#lockedTo !== hex(newest.id) && !c.ackedIn(newest.attempt)) {
        // locked: re-affirm my earlier set in this attempt, never a second one
        c.ack(newest.attempt, this.#proposals.get(this.#lockedTo)!.id)
      }
    }
    // a quorum certificate of t acks from the masking set fixes the survivor set
    for (const [key, ackers] of this.#acks) {
      const proposal = this.#proposals.get(key)
      if (proposal !== undefined && ackers.size >= c.threshold && proposal.members.every(u => c.hasVectorOf(u))) {
        this.#certified = { proposal, acks: ackers.size }
        return
      }
    }
  }

  #propose (c: SurvivorContext, attempt: number): void {
    this.#proposed.add(attempt)
    // an honest proposer that is locked re-proposes its locked set
    const locked = this.#lockedTo !== null ? this.#proposals.get(this.#lockedTo) : undefined
    const members = locked?.members ?? c.maskingSet.filter(u => c.hasVectorOf(u) && !c.faulty.has(u))
    if (members.length >= c.minSet) c.propose(attempt, members)
  }
}

/**
 * The members of a survivor-set proposal (proposal 2): the masked-input commitments it carries,
 * one per member, each opened and handed to `accept` (which checks it as it would a direct one);
 * sorted. A ProtocolError if it names another masking set, holds a duplicate or foreign message,
 * or is below the minimum.
 */
export function survivorSetOf (msg: OpenedMessage<ProposalBody>, M: { id: Uint8Array } | undefined, minSet: number, open: (wire: Uint8Array) => OpenedMessage, accept: (m: OpenedMessage<MaskedInputBody>) => void): number[] {
  if (M === undefined) throw new ProtocolError('wrong-phase', 'survivor-set proposal before the masking set is known')
  if (!equalBytes(msg.env.body.maskingSetId, M.id)) throw new ProtocolError('invalid', 'survivor-set proposal names another masking set')
  const members: number[] = []
  for (const wire of msg.env.body.messages) {
    const m = open(wire) as OpenedMessage<MaskedInputBody>
    if (m.env.type !== MSG.maskedInput || members.includes(m.env.sender)) throw new ProtocolError('invalid', 'survivor-set proposal holds a duplicate or foreign message')
    accept(m)
    members.push(m.env.sender)
  }
  members.sort((a, b) => a - b)
  if (members.length < minSet) throw new ProtocolError('invalid', `survivor set of ${members.length} is below the minimum`)
  return members
}
