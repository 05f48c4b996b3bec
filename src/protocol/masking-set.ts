/**
 * The first half of a round, as one peer sees it: advertise keys, share keys with everyone whose
 * advertisement it holds, and agree on the masking set M (proposal 1: the proposer of the current
 * attempt proposes; on timeout the next one does). Like survivors.ts for the survivor set: pure
 * state, driven by Round, which sends what it is asked to and feeds back every message (its own too).
 */
import { generateX25519KeyPair, randomBytes, secretCommitment, type RandomSource, type WeightedUpdateParams, type X25519KeyPair } from '../privacy/index.ts'
import { maskedInput } from './masked-input.ts'
import type { RejectCode } from './errors.ts'
import type { Phase } from './actions.ts'
import { MSG, type AdvertiseBody, type OpenedMessage, type ProposalBody, type ShareKeysBody } from './messages.ts'
import type { Advert, Proposal } from './round-options.ts'
import { checkMaskingSet, largestConsistentSet, parseShareKeys, splitMaskingProposal, type ShareKeys } from './sets.ts'
import { openShares, sealShares, type SharePair } from './shares.ts'
import { proposingAttempt } from './presence.ts'

/** how long a round still waits, once every expected member has advertised, for one coming back */
const ADVERT_GRACE_MS = 200

export interface MaskingSetOptions {
  me: number
  n: number
  round: number
  threshold: number
  /** the fewest members a masking set may have */
  minSet: number
  phaseMs: number
  /** when this peer shares its keys at the latest (with whoever has advertised by then) */
  advertiseDeadline: number
  /** the round's context (consortium id and round) that seals shares and derives masks */
  context: Uint8Array
  rng: RandomSource
  /** the members whose advertisements are awaited before sharing keys (default: all; presence.ts) */
  expectedAdverts?: readonly number[]
  /** the last certified round's survivors: a proposer outside them is away, and ties keep them */
  lastSurvivors?: readonly number[]
  /** this peer lacks the previous round's certificate (it jumped ahead to the others' round) */
  behind?: boolean
}

/** What the agreement asks of its round. */
export interface MaskingSetHooks {
  send: (type: typeof MSG.shareKeys | typeof MSG.proposal, attempt: number, body: ShareKeysBody | ProposalBody) => void
  reject: (code: RejectCode, reason: string, peer: number) => void
  phase: (phase: Phase, detail: string) => void
}

export class MaskingSetAgreement {
  readonly #o: MaskingSetOptions
  readonly #hooks: MaskingSetHooks
  /** X25519 key pair whose agreement with each member seals the shares sent to it */
  readonly #boxKeys: X25519KeyPair
  /** X25519 key pair whose agreement with each member seeds the pairwise masks (shared t-of-n) */
  readonly maskKeys: X25519KeyPair
  /** seed of the self mask (shared t-of-n) */
  readonly selfMaskSeed: Uint8Array
  readonly adverts = new Map<number, Advert>()
  readonly #shareKeys = new Map<number, ShareKeys>()
  /** per member of my view: its shares for me (mine for myself included) */
  readonly myShares = new Map<number, SharePair>()
  /** when the expected members' advertisements were all in */
  #expectedAt?: number
  /** when this peer shared its keys */
  #sharedAt?: number
  /** the proposer attempt under way, when it times out, and the attempts this peer proposed */
  #attempt = 0
  #deadline?: number
  readonly #proposed = new Set<number>()
  #agreed?: Proposal

  constructor (o: MaskingSetOptions, hooks: MaskingSetHooks) {
    this.#o = o
    this.#hooks = hooks
    this.#boxKeys = generateX25519KeyPair(o.rng)
    this.maskKeys = generateX25519KeyPair(o.rng)
    this.selfMaskSeed = randomBytes(o.rng, 32)
  }

  /** This peer's advertisement: its public keys and a commitment to its self-mask seed. */
  get advertisement (): AdvertiseBody { return { boxKey: this.#boxKeys.publicKey, maskKey: this.maskKeys.publicKey, selfMaskCommitment: secretCommitment(this.selfMaskSeed) } }

  /** the agreed masking set, once agreed */
  get agreed (): Proposal | undefined { return this.#agreed }

  onAdvertise (msg: OpenedMessage<AdvertiseBody>): void {
    if (this.#sharedAt !== undefined) return // too late to be in my view; a proposal may still carry it
    this.adverts.set(msg.env.sender, { id: msg.id, wire: msg.wire, body: msg.env.body })
  }

  onShareKeys (msg: OpenedMessage<ShareKeysBody>): void { this.#shareKeys.set(msg.env.sender, parseShareKeys(msg, this.#o.n)) }

  /** The masking-set proposal of the current proposer (checked by the round): whether it made the set agreed now. */
  onProposal (msg: OpenedMessage<ProposalBody>, open: (wire: Uint8Array) => OpenedMessage, proposerName: string): boolean {
    if (this.#agreed !== undefined) return false // already agreed
    const { adverts, shares } = splitMaskingProposal(msg.env.body.messages.map(open), this.#o.n)
    const members = checkMaskingSet(new Map([...adverts].map(([u, m]) => [u, m.id])), shares, this.#o.minSet)
    // my own advertisement must be the one I sent: a forged one cannot be signed, so equality of ids suffices
    this.#agreed = { id: msg.id, attempt: msg.env.attempt, members }
    for (const [u, m] of adverts) this.adverts.set(u, { id: m.id, wire: m.wire, body: m.env.body })
    for (const [u, s] of shares) this.#shareKeys.set(u, s)
    if (members.includes(this.#o.me)) this.#openMyBoxes(members)
    this.#hooks.phase('masked-input', `masking set agreed: ${members.length} members (proposer ${proposerName}, attempt ${msg.env.attempt})`)
    return true
  }

  /** My input masked for the agreed set: my self mask, and a pairwise mask with each other member of it. */
  mask (input: { values: ArrayLike<number>, count: number }, encoding: 'counts' | 'weighted', quantization: WeightedUpdateParams, peerIds: readonly string[]): Uint32Array {
    const { me, n, context, rng } = this.#o
    const others = new Map(this.#agreed!.members.filter(v => v !== me).map(v => [v, this.adverts.get(v)!.body.maskKey]))
    return maskedInput({ ...input, encoding, members: n, quantization, me, peerIds, others, selfMaskSeed: this.selfMaskSeed, maskSecretKey: this.maskKeys.secretKey, context, rng })
  }

  #openMyBoxes (members: number[]): void {
    const me = this.#o.me
    for (const u of members) {
      if (u === me) continue
      const box = this.#shareKeys.get(u)!.boxes.get(me)!
      const shares = openShares(box, { me, from: u, fromBoxKey: this.adverts.get(u)!.body.boxKey, boxSecretKey: this.#boxKeys.secretKey, context: this.#o.context })
      // without my share of u, I simply cannot help reconstruct u's secrets; t others can
      if (shares === null) this.#hooks.reject('bad-share', `member ${u}'s encrypted shares for me do not open`, u)
      else this.myShares.set(u, shares)
    }
  }

  /** Steps 1 and 2 of the round: share keys once the advertisements are in, then propose the masking set when it is this peer's turn. */
  step (now: number, faulty: ReadonlySet<number>): void {
    // a member absent since before the last round is not waited for (presence.ts); but one that
    // comes back advertises about when the others do, so a short grace after them lets it in
    if (this.#expectedAt === undefined && this.#o.expectedAdverts?.every(u => this.adverts.has(u)) === true) this.#expectedAt = now
    const heardAll = this.adverts.size === this.#o.n || (this.#expectedAt !== undefined && now >= this.#expectedAt + Math.min(ADVERT_GRACE_MS, this.#o.phaseMs / 4))
    if (this.#sharedAt === undefined && (heardAll || now >= this.#o.advertiseDeadline) && this.adverts.size >= this.#o.minSet) this.#shareMyKeys(now)
    if (this.#agreed === undefined && this.#sharedAt !== undefined) this.#proposeStep(now, this.#sharedAt, faulty)
  }

  #shareMyKeys (now: number): void {
    const view = [...this.adverts.keys()].sort((a, b) => a - b)
    if (!view.includes(this.#o.me)) return // my own advertisement has not come back yet
    const { mine, boxes } = sealShares({
      me: this.#o.me, view: new Map(view.map(v => [v, this.adverts.get(v)!.body.boxKey])), threshold: this.#o.threshold,
      selfMaskSeed: this.selfMaskSeed, maskSecretKey: this.maskKeys.secretKey, boxSecretKey: this.#boxKeys.secretKey, context: this.#o.context, rng: this.#o.rng
    })
    this.myShares.set(this.#o.me, mine)
    this.#sharedAt = now
    // move at once past proposers who were not among the last round's survivors: one that is gone
    // costs nothing, and one coming back lets those who stayed propose (every peer on the same
    // ledger head skips the same attempts, whether or not it has heard the one coming back)
    this.#deadline = now + 2 * this.#o.phaseMs
    this.#hooks.send(MSG.shareKeys, 0, { advertsSeen: view.map(v => [v, this.adverts.get(v)!.id]), boxes })
    this.#hooks.phase('share-keys', `shared keys with ${view.length - 1} members`)
  }

  #proposeStep (now: number, sharedAt: number, faulty: ReadonlySet<number>): void {
    const { me, n, round, phaseMs, behind } = this.#o
    if (this.#deadline !== undefined && now >= this.#deadline) { this.#attempt++; this.#deadline = now + 2 * phaseMs }
    // a proposer who was not among the last round's survivors is away: the first one who is
    // there proposes at once (presence.ts). A peer that lacks the last certificate (it jumped
    // to the others' round) cannot tell who survived it, and counts itself away: it never
    // proposes first where the others have moved on to another proposer
    const last = this.#o.lastSurvivors
    const known = last !== undefined && last.length > 0
    const away = behind === true ? (u: number) => u === me || (known && !last.includes(u)) : known ? (u: number) => !last.includes(u) : null
    const attempt = proposingAttempt(1, round, this.#attempt, n, me, away)
    if (attempt === null || this.#proposed.has(attempt)) return
    // a member that missed an advertisement shares its keys only at its advertise deadline (as
    // late as this peer's): wait a phase past that too, or it is left out of the set; but never
    // past half a phase before the others give up on this attempt (2 phases after their own share
    // keys): a proposal sent as they move on splits them between two masking sets
    const ready = this.#shareKeys.size === this.adverts.size || now >= Math.min(Math.max(sharedAt, this.#o.advertiseDeadline) + phaseMs, sharedAt + 1.5 * phaseMs) || this.#attempt > 0
    if (!ready) return
    this.#proposed.add(attempt)
    const candidates = [...this.#shareKeys.keys()].filter(u => this.adverts.has(u) && !faulty.has(u))
    const members = largestConsistentSet(candidates, this.#shareKeys, new Map([...this.adverts].map(([u, a]) => [u, a.id])), this.#o.lastSurvivors)
    if (members.length < this.#o.minSet) return
    const msgs = [...members.map(u => this.adverts.get(u)!.wire), ...members.map(u => this.#shareKeys.get(u)!.wire)]
    this.#hooks.send(MSG.proposal, attempt, { set: 1, maskingSetId: new Uint8Array(32), messages: msgs })
  }
}
