/**
 * One round of secure aggregation with peer-verified consensus, as seen by one peer.
 *
 * A pure state machine: it is fed verified-on-entry wire messages (`receive`), fetched blobs
 * (`receiveBlob`), its own input (`setInput`) and the time (`tick`), and answers with actions
 * for its driver (`takeActions`): broadcast a message, publish or fetch a blob, log a rejection,
 * report a phase or the outcome. It does no I/O and reads no clock; given the same inputs and
 * the same random source it does the same thing. The protocol and its security argument are in
 * docs/PROTOCOL.md; the phases:
 *
 *  advertise → share keys → [proposal 1: masking set M] → masked input →
 *  [proposal 2: survivor set U3] → ack (t acks = QC) → reveal → aggregate → commit (quorum = certificate)
 */
import {
  NodeIdentity, generateX25519KeyPair, x25519PublicKey, randomBytes, splitSecret, reconstructSecret, secretCommitment,
  encodeShare, decodeShare, sealForPeer, openFromPeer, pairwiseMaskSeed, pairwiseSign, maskInput, sumVectors, unmaskSum,
  encodeWeightedUpdate, decodeWeightedAverage, InconsistentSharesError, type RandomSource, type X25519KeyPair, type Share,
  type DroppedPairwiseMask
} from '../privacy/index.ts'
import { decodeBounded, encodeCanonical, equalBytes, hash, hex, obj, bytes as bytesField } from './codec.ts'
import { ProtocolError } from './errors.ts'
import {
  MSG, MSG_NAME, openMessage, sealMessage, type AckBody, type AdvertiseBody, type CommitBody, type Envelope, type MaskedInputBody,
  type OpenedMessage, type ProposalBody, type RevealBody, type ShareKeysBody, type MsgType, type Body
} from './messages.ts'
import type { Manifest } from './manifest.ts'
import { encodeHeader, decodeHeader, headerHash, signHeader, type Certificate, type CertificateHeader, type CertificateKind } from './ledger.ts'
import { stateHash, type GlobalState } from './model.ts'
import { strategyFor } from './strategy/strategy.ts'
import { verifySignature } from '../privacy/index.ts'

export type Phase = 'advertise' | 'share-keys' | 'masking-set' | 'masked-input' | 'survivor-set' | 'unmask' | 'commit' | 'certified' | 'aborted'

export type Action =
  | { type: 'broadcast', msgType: string, wire: Uint8Array }
  | { type: 'publish-blob', hash: string, data: Uint8Array }
  | { type: 'fetch-blob', hash: string, owner: number }
  | { type: 'reject', code: string, reason: string, peer: number }
  | { type: 'phase', phase: Phase, detail: string, round: number }
  | { type: 'certified', certificate: Certificate, header: CertificateHeader, state: GlobalState | null, stats: Float64Array | null }
  | { type: 'aborted', reason: string }

export interface RoundOptions {
  manifest: Manifest
  consortium: Uint8Array
  memberKeys: readonly Uint8Array[]
  identity: NodeIdentity
  round: number
  /** hash of the last certificate (the consortium id before the first) */
  prev: Uint8Array
  state: GlobalState
  kind: Exclude<CertificateKind, 'membership'>
  rng: RandomSource
  now: number
  /**
   * how long after sending its own masked input the survivor-set proposer waits for missing ones
   * (default: the manifest's phase timeout); ProtocolPeer adapts it to how late inputs came lately
   */
  inputWaitMs?: number
  /** how long to wait for every member's advertisement before sharing keys (default: the phase timeout) */
  advertiseWaitMs?: number
}

interface Advert { id: Uint8Array, wire: Uint8Array, body: AdvertiseBody }
interface ShareKeys { id: Uint8Array, wire: Uint8Array, view: Map<number, Uint8Array>, boxes: Map<number, Uint8Array> }
interface Commitment { id: Uint8Array, wire: Uint8Array, body: MaskedInputBody }
interface Proposal { id: Uint8Array, attempt: number, members: number[], msgs: OpenedMessage[] }

export class Round {
  readonly o: RoundOptions
  readonly me: number
  readonly n: number
  phase: Phase = 'advertise'
  readonly #actions: Action[] = []
  readonly #ctx: Uint8Array

  // my secrets for this round
  readonly #c: X25519KeyPair
  readonly #s: X25519KeyPair
  readonly #b: Uint8Array
  #input: { values: ArrayLike<number>, count: number } | null = null

  // what I have seen
  readonly #seen = new Map<string, Uint8Array>() // replay / equivocation: key -> message id
  readonly #adverts = new Map<number, Advert>()
  readonly #shareKeys = new Map<number, ShareKeys>()
  readonly #commitments = new Map<number, Commitment>()
  readonly #blobs = new Map<string, Uint32Array>()
  readonly #requested = new Set<string>()
  readonly #acks = new Map<string, Set<number>>()
  readonly #reveals = new Map<number, RevealBody>()
  readonly #revealIds = new Map<number, string>()
  readonly #commits = new Map<string, Map<number, Uint8Array>>()
  readonly #faulty = new Set<number>()

  // progress
  #sharedAt = -1
  #maskingSet: Proposal | null = null
  #maskingAttempt = 0
  #maskingDeadline = Infinity
  #proposedMasking = new Set<number>()
  #maskedSent = false
  #maskedSentAt = -1
  /** the latest arrival of another member's masked input, even after this round ended */
  #lastInputAt = -1
  /** the latest arrival of another member's advertisement, even after this round ended */
  #lastAdvertAt = -1
  readonly #startedAt: number
  #survivorSet: Proposal | null = null
  #survivorProposals = new Map<string, Proposal>()
  #survivorAttempt = 0
  #survivorDeadline = Infinity
  #proposedSurvivor = new Set<number>()
  #ackedFor: string | null = null
  #certifiedSet: Proposal | null = null
  #revealed = false
  #result: { header: Uint8Array, state: GlobalState | null, stats: Float64Array | null } | null = null
  readonly #advertiseDeadline: number
  readonly #roundDeadline: number
  #myShares = new Map<number, { b: Share, k: Share }>()

  constructor (o: RoundOptions) {
    this.o = o
    this.n = o.manifest.members.length
    this.me = o.manifest.members.findIndex(m => m.peerId === o.identity.peerId)
    if (this.me < 0) throw new Error('this identity is not a member of the consortium')
    const r = new Uint8Array(8)
    new DataView(r.buffer).setBigUint64(0, BigInt(o.round))
    this.#ctx = new Uint8Array([...o.consortium, ...r])
    this.#c = generateX25519KeyPair(o.rng)
    this.#s = generateX25519KeyPair(o.rng)
    this.#b = randomBytes(o.rng, 32)
    this.#startedAt = o.now
    this.#advertiseDeadline = o.now + (o.advertiseWaitMs ?? o.manifest.params.timeouts.phaseMs)
    this.#roundDeadline = o.now + o.manifest.params.timeouts.roundMs
    this.#send(MSG.advertise, 0, { boxKey: this.#c.publicKey, maskKey: this.#s.publicKey, selfMaskCommitment: secretCommitment(this.#b) })
    this.#setPhase('advertise', `round ${o.round}: advertised keys`)
  }

  get round (): number { return this.o.round }
  get done (): boolean { return this.phase === 'certified' || this.phase === 'aborted' }
  /** members caught misbehaving in this round (bad shares, equivocation) */
  get faulty (): ReadonlySet<number> { return this.#faulty }
  get survivors (): readonly number[] { return this.#certifiedSet?.members ?? [] }
  /** whether this peer's input is expected: the masking set is agreed and includes it */
  get inputExpected (): boolean { return this.#maskingSet?.members.includes(this.me) === true }

  takeActions (): Action[] { return this.#actions.splice(0) }

  /**
   * A member's advertisement or masked input that came after this round ended (a straggler's):
   * noted for the lateness figures if it is the first of its kind from that member; false for a
   * message seen before (a replay).
   */
  noteLate (msg: OpenedMessage, now: number): boolean {
    const key = msg.env.type === MSG.advertise ? `adv:${msg.env.sender}` : msg.env.type === MSG.maskedInput ? `mi:${msg.env.sender}` : null
    if (key === null || this.#seen.has(key)) return false
    this.#seen.set(key, msg.id)
    this.#noteArrival(msg, now)
    return true
  }

  #noteArrival (msg: OpenedMessage, now: number): void {
    if (msg.env.sender === this.me) return
    if (msg.env.type === MSG.maskedInput) this.#lastInputAt = Math.max(this.#lastInputAt, now)
    if (msg.env.type === MSG.advertise) this.#lastAdvertAt = Math.max(this.#lastAdvertAt, now)
  }

  /** How long after this round began here the last other member's advertisement came. */
  get advertiseLateness (): number {
    return Math.max(0, this.#lastAdvertAt - this.#startedAt)
  }

  /** How long after this peer's own masked input the last other one came (null: no input sent). */
  get inputLateness (): number | null {
    return this.#maskedSentAt < 0 ? null : Math.max(0, this.#lastInputAt - this.#maskedSentAt)
  }

  /**
   * A certificate for the previous round arrived late (this peer had aborted it): take the new
   * ledger head and state, if the aggregate has not been formed yet. Returns whether it could.
   */
  rebase (prev: Uint8Array, state: GlobalState): boolean {
    if (this.#result !== null || state.weights.length !== this.o.state.weights.length) return false
    this.o.prev = prev
    this.o.state = state
    return true
  }

  /** This peer's contribution: a model update (or statistics vector) and its sample count. */
  setInput (values: ArrayLike<number>, count: number): void {
    this.#input = { values, count }
    this.#advance(this.o.now)
  }

  /** A wire message from the network (already known to be for this round), `now` in ms. */
  receive (msg: OpenedMessage, now: number): void {
    if (this.done) return
    this.#noteArrival(msg, now)
    try {
      this.#dispatch(msg)
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e
      this.#reject(e.code, e.message, msg.env.sender)
    }
    this.#advance(now)
  }

  /** A blob the driver fetched: kept only if it is a committed masked vector. */
  receiveBlob (hashHex: string, data: Uint8Array, now: number): void {
    if (this.done || this.#blobs.has(hashHex)) return
    const owner = [...this.#commitments.entries()].find(([, c]) => hex(c.body.vectorHash) === hashHex)
    if (owner === undefined) return
    const [idx, c] = owner
    if (data.length !== 4 * c.body.length || hex(hash(data)) !== hashHex) {
      this.#reject('bad-blob', `masked vector from member ${idx} does not match its commitment`, idx)
      this.#requested.delete(hashHex)
      return
    }
    // a view when aligned (blobs are never written to), a copy otherwise
    const aligned = data.byteOffset % 4 === 0 ? data : data.slice()
    this.#blobs.set(hashHex, new Uint32Array(aligned.buffer, aligned.byteOffset, c.body.length))
    this.#advance(now)
  }

  tick (now: number): void {
    if (this.done) return
    this.#advance(now)
  }

  // ---------------------------------------------------------------- incoming

  #dispatch (msg: OpenedMessage): void {
    const { env } = msg
    switch (env.type) {
      case MSG.advertise: return this.#onAdvertise(msg as OpenedMessage<AdvertiseBody>)
      case MSG.shareKeys: return this.#onShareKeys(msg as OpenedMessage<ShareKeysBody>)
      case MSG.proposal: return this.#onProposal(msg as OpenedMessage<ProposalBody>)
      case MSG.maskedInput: return this.#onMaskedInput(msg as OpenedMessage<MaskedInputBody>)
      case MSG.ack: return this.#onAck(msg as OpenedMessage<AckBody>)
      case MSG.reveal: return this.#onReveal(msg as OpenedMessage<RevealBody>)
      case MSG.commit: return this.#onCommit(msg as OpenedMessage<CommitBody>)
    }
  }

  /** First message of its kind from a sender: true; the same again: false; a different one: equivocation. */
  #firstOf (key: string, msg: OpenedMessage): boolean {
    const prior = this.#seen.get(key)
    if (prior === undefined) { this.#seen.set(key, msg.id); return true }
    if (equalBytes(prior, msg.id)) return false
    this.#faulty.add(msg.env.sender)
    throw new ProtocolError('equivocation', `member ${msg.env.sender} sent two different ${MSG_NAME[msg.env.type]} messages (${key})`)
  }

  #onAdvertise (msg: OpenedMessage<AdvertiseBody>): void {
    if (!this.#firstOf(`adv:${msg.env.sender}`, msg)) return
    if (this.#sharedAt >= 0) return // too late to be in my view; a proposal may still carry it
    this.#adverts.set(msg.env.sender, { id: msg.id, wire: msg.wire, body: msg.env.body })
  }

  #onShareKeys (msg: OpenedMessage<ShareKeysBody>): void {
    if (!this.#firstOf(`sk:${msg.env.sender}`, msg)) return
    this.#shareKeys.set(msg.env.sender, this.#parseShareKeys(msg))
  }

  #parseShareKeys (msg: OpenedMessage<ShareKeysBody>): ShareKeys {
    const view = new Map<number, Uint8Array>()
    for (const [idx, id] of msg.env.body.advertsSeen) {
      if (idx >= this.n || view.has(idx)) throw new ProtocolError('invalid', `share keys from ${msg.env.sender} list member ${idx} twice or out of range`)
      view.set(idx, id)
    }
    const boxes = new Map<number, Uint8Array>()
    for (const [idx, box] of msg.env.body.boxes) {
      if (!view.has(idx) || idx === msg.env.sender || boxes.has(idx)) throw new ProtocolError('invalid', `share keys from ${msg.env.sender} hold a bad box for ${idx}`)
      boxes.set(idx, box)
    }
    if (!view.has(msg.env.sender)) throw new ProtocolError('invalid', `share keys from ${msg.env.sender} omit its own advertisement`)
    return { id: msg.id, wire: msg.wire, view, boxes }
  }

  #proposer (ph: 1 | 2, attempt: number): number {
    return (this.o.round + (ph === 1 ? 0 : 1) + attempt) % this.n
  }

  #open (wire: Uint8Array): OpenedMessage {
    const m = openMessage(wire, { consortium: this.o.consortium, memberKeys: this.o.memberKeys })
    if (m.env.round !== this.o.round) throw new ProtocolError('invalid', 'proposal carries a message of another round')
    return m
  }

  #onProposal (msg: OpenedMessage<ProposalBody>): void {
    const { env } = msg
    const ph = env.body.set
    if (env.sender !== this.#proposer(ph, env.attempt)) throw new ProtocolError('wrong-proposer', `member ${env.sender} is not the proposer of set ${ph}, attempt ${env.attempt}`)
    if (ph === 2 && this.#maskingSet === null) return this.#defer(msg)
    if (!this.#firstOf(`prop:${ph}:${env.attempt}`, msg)) return
    if (ph === 1) this.#onMaskingProposal(msg)
    else this.#onSurvivorProposal(msg)
  }

  #onMaskingProposal (msg: OpenedMessage<ProposalBody>): void {
    if (this.#maskingSet !== null) return // already agreed
    const adverts = new Map<number, OpenedMessage>()
    const shares = new Map<number, ShareKeys>()
    for (const wire of msg.env.body.messages) {
      const m = this.#open(wire)
      if (m.env.type === MSG.advertise && !adverts.has(m.env.sender)) adverts.set(m.env.sender, m)
      else if (m.env.type === MSG.shareKeys && !shares.has(m.env.sender)) shares.set(m.env.sender, this.#parseShareKeys(m as OpenedMessage<ShareKeysBody>))
      else throw new ProtocolError('invalid', 'masking-set proposal holds a duplicate or foreign message')
    }
    const members = [...shares.keys()].sort((a, b) => a - b)
    const p = this.o.manifest.params
    if (members.length < Math.max(p.minParticipants, p.threshold)) throw new ProtocolError('invalid', `masking set of ${members.length} is below the minimum`)
    for (const u of members) {
      const adv = adverts.get(u)
      const sk = shares.get(u)!
      if (adv === undefined) throw new ProtocolError('invalid', `masking set lacks member ${u}'s advertisement`)
      for (const v of members) {
        const seenId = sk.view.get(v)
        if (seenId === undefined || !equalBytes(seenId, adverts.get(v)!.id)) throw new ProtocolError('invalid', `member ${u} did not share keys with ${v}'s advertisement`)
        if (v !== u && !sk.boxes.has(v)) throw new ProtocolError('invalid', `member ${u} holds no box for ${v}`)
      }
    }
    // my own advertisement must be the one I sent: a forged one cannot be signed, so equality of ids suffices
    this.#maskingSet = { id: msg.id, attempt: msg.env.attempt, members, msgs: [...adverts.values()] }
    for (const [u, m] of adverts) this.#adverts.set(u, { id: m.id, wire: m.wire, body: m.env.body as AdvertiseBody })
    for (const [u, s] of shares) this.#shareKeys.set(u, s)
    if (members.includes(this.me)) this.#openMyBoxes(members)
    this.#setPhase('masked-input', `masking set agreed: ${members.length} members (proposer ${msg.env.sender}, attempt ${msg.env.attempt})`)
    for (const m of this.#deferred.splice(0)) {
      try { this.#dispatch(m) } catch (e) {
        if (!(e instanceof ProtocolError)) throw e
        this.#reject(e.code, e.message, m.env.sender)
      }
    }
  }

  #openMyBoxes (members: number[]): void {
    for (const u of members) {
      if (u === this.me) continue
      const box = this.#shareKeys.get(u)!.boxes.get(this.me)!
      try {
        const plain = openFromPeer(this.#c.secretKey, this.#adverts.get(u)!.body.boxKey, this.#ctx, box, this.#boxAad(u, this.me))
        const o = obj(decodeBounded(plain, 1024, 'shares'), 'shares', ['b', 'k'])
        const b = decodeShare(bytesField(o.b, 'b'))
        const k = decodeShare(bytesField(o.k, 'k'))
        if (b.x !== this.me + 1 || k.x !== this.me + 1) throw new Error('wrong share point')
        this.#myShares.set(u, { b, k })
      } catch {
        // without my share of u, I simply cannot help reconstruct u's secrets; t others can
        this.#reject('bad-share', `member ${u}'s encrypted shares for me do not open`, u)
      }
    }
  }

  /** A message that needs the masking set, which is not agreed yet: keep it (bounded) for later. */
  #defer (msg: OpenedMessage): void {
    if (this.#deferred.length < 4 * this.n) this.#deferred.push(msg)
    else this.#reject('wrong-phase', `${MSG_NAME[msg.env.type]} from ${msg.env.sender} arrived before the masking set and the queue is full`, msg.env.sender)
  }

  readonly #deferred: OpenedMessage[] = []

  #onMaskedInput (msg: OpenedMessage<MaskedInputBody>): void {
    if (this.#maskingSet === null) return this.#defer(msg)
    if (!this.#firstOf(`mi:${msg.env.sender}`, msg)) return
    this.#acceptCommitment(msg)
  }

  #acceptCommitment (msg: OpenedMessage<MaskedInputBody>, authoritative = false): void {
    const M = this.#maskingSet
    if (M === null) throw new ProtocolError('wrong-phase', `masked input from ${msg.env.sender} before the masking set is known`)
    if (!equalBytes(msg.env.body.maskingSetId, M.id)) throw new ProtocolError('invalid', `masked input from ${msg.env.sender} names another masking set`)
    if (!M.members.includes(msg.env.sender)) throw new ProtocolError('invalid', `masked input from ${msg.env.sender}, not in the masking set`)
    const expected = this.#inputLength()
    if (msg.env.body.length !== expected) throw new ProtocolError('invalid', `masked input from ${msg.env.sender} has ${msg.env.body.length} words, expected ${expected}`)
    const prior = this.#commitments.get(msg.env.sender)
    if (prior !== undefined) {
      if (equalBytes(prior.id, msg.id)) return
      this.#faulty.add(msg.env.sender)
      if (!authoritative) throw new ProtocolError('equivocation', `member ${msg.env.sender} committed to two masked vectors`)
      // the survivor-set proposal fixes which of the two counts; the equivocation is still recorded
      this.#reject('equivocation', `member ${msg.env.sender} committed to two masked vectors; the proposal's counts`, msg.env.sender)
    }
    this.#commitments.set(msg.env.sender, { id: msg.id, wire: msg.wire, body: msg.env.body })
  }

  #onSurvivorProposal (msg: OpenedMessage<ProposalBody>): void {
    const M = this.#maskingSet
    if (M === null) throw new ProtocolError('wrong-phase', 'survivor-set proposal before the masking set is known')
    if (!equalBytes(msg.env.body.maskingSetId, M.id)) throw new ProtocolError('invalid', 'survivor-set proposal names another masking set')
    const msgs: OpenedMessage[] = []
    const members: number[] = []
    for (const wire of msg.env.body.messages) {
      const m = this.#open(wire) as OpenedMessage<MaskedInputBody>
      if (m.env.type !== MSG.maskedInput || members.includes(m.env.sender)) throw new ProtocolError('invalid', 'survivor-set proposal holds a duplicate or foreign message')
      this.#acceptCommitment(m, true) // same checks as a direct commitment
      msgs.push(m)
      members.push(m.env.sender)
    }
    members.sort((a, b) => a - b)
    const p = this.o.manifest.params
    if (members.length < Math.max(p.minParticipants, p.threshold)) throw new ProtocolError('invalid', `survivor set of ${members.length} is below the minimum`)
    const proposal = { id: msg.id, attempt: msg.env.attempt, members, msgs }
    this.#survivorProposals.set(hex(msg.id), proposal)
    if (this.#survivorSet === null || msg.env.attempt > this.#survivorSet.attempt) this.#survivorSet = proposal
  }

  #onAck (msg: OpenedMessage<AckBody>): void {
    if (!this.#firstOf(`ack:${msg.env.sender}:${msg.env.attempt}`, msg)) return
    const M = this.#maskingSet
    if (M !== null && !M.members.includes(msg.env.sender)) throw new ProtocolError('invalid', `ack from ${msg.env.sender}, not in the masking set`)
    const key = hex(msg.env.body.proposalId)
    let set = this.#acks.get(key)
    if (set === undefined) { set = new Set(); this.#acks.set(key, set) }
    set.add(msg.env.sender)
  }

  #onReveal (msg: OpenedMessage<RevealBody>): void {
    if (!this.#firstOf(`rev:${msg.env.sender}`, msg)) return
    this.#reveals.set(msg.env.sender, msg.env.body)
    this.#revealIds.set(msg.env.sender, hex(msg.env.body.proposalId))
  }

  #onCommit (msg: OpenedMessage<CommitBody>): void {
    if (!this.#firstOf(`commit:${msg.env.sender}`, msg)) return
    const h = headerHash(msg.env.body.header)
    if (!verifySignature(this.o.memberKeys[msg.env.sender], 'round-certificate', h, msg.env.body.signature)) throw new ProtocolError('bad-signature', `member ${msg.env.sender}'s certificate signature is invalid`)
    const header = decodeHeader(msg.env.body.header)
    if (header.round !== this.o.round || !equalBytes(header.consortium, this.o.consortium)) throw new ProtocolError('invalid', `commit from ${msg.env.sender} names another round or consortium`)
    if (!equalBytes(header.prev, this.o.prev)) throw new ProtocolError('invalid', `commit from ${msg.env.sender} extends another ledger head`)
    const key = hex(h)
    let sigs = this.#commits.get(key)
    if (sigs === undefined) { sigs = new Map(); this.#commits.set(key, sigs) }
    sigs.set(msg.env.sender, msg.env.body.signature)
    if (!this.#headersByHash.has(key)) this.#headersByHash.set(key, msg.env.body.header)
  }

  readonly #headersByHash = new Map<string, Uint8Array>()

  // ---------------------------------------------------------------- progress

  #advance (now: number): void {
    this.o.now = Math.max(this.o.now, now)
    now = this.o.now
    if (this.done) return
    if (now >= this.#roundDeadline) { this.#abort(`round ${this.o.round} timed out in phase ${this.phase}`); return }
    const p = this.o.manifest.params
    const minSet = Math.max(p.minParticipants, p.threshold)

    // 1. share keys with everyone whose advertisement I hold
    if (this.#sharedAt < 0 && (this.#adverts.size === this.n || now >= this.#advertiseDeadline)) {
      if (this.#adverts.size >= minSet) this.#shareMyKeys(now)
    }

    // 2. masking set: the proposer of the current attempt proposes; on timeout the next one does
    if (this.#maskingSet === null && this.#sharedAt >= 0) {
      if (now >= this.#maskingDeadline) { this.#maskingAttempt++; this.#maskingDeadline = now + 2 * p.timeouts.phaseMs }
      if (this.#proposer(1, this.#maskingAttempt) === this.me && !this.#proposedMasking.has(this.#maskingAttempt)) {
        const ready = this.#shareKeys.size === this.#adverts.size || now >= this.#sharedAt + p.timeouts.phaseMs || this.#maskingAttempt > 0
        if (ready) this.#proposeMaskingSet(minSet)
      }
    }

    // 3. masked input, once the set is agreed and my input is ready
    const M = this.#maskingSet
    if (M !== null && !this.#maskedSent && this.#input !== null && M.members.includes(this.me)) this.#sendMaskedInput(M)
    // the proposer waits inputWait for missing inputs, the others that and one phase more before
    // they turn to the next proposer
    const inputWait = this.o.inputWaitMs ?? p.timeouts.phaseMs
    if (M !== null && this.#survivorDeadline === Infinity && (this.#maskedSent || !M.members.includes(this.me))) this.#survivorDeadline = now + inputWait + p.timeouts.phaseMs

    // fetch every committed vector I lack
    for (const [idx, c] of this.#commitments) {
      const h = hex(c.body.vectorHash)
      if (!this.#blobs.has(h) && !this.#requested.has(h)) { this.#requested.add(h); this.#actions.push({ type: 'fetch-blob', hash: h, owner: idx }) }
    }

    // 4. survivor set
    if (M !== null && this.#certifiedSet === null && this.#survivorDeadline !== Infinity) {
      if (now >= this.#survivorDeadline) { this.#survivorAttempt++; this.#survivorDeadline = now + 2 * p.timeouts.phaseMs }
      if (this.#proposer(2, this.#survivorAttempt) === this.me && !this.#proposedSurvivor.has(this.#survivorAttempt)) {
        const complete = M.members.every(u => this.#hasVectorOf(u) || this.#faulty.has(u))
        if (complete || this.#survivorAttempt > 0 || now >= this.#survivorDeadline - p.timeouts.phaseMs) this.#proposeSurvivorSet(minSet)
      }
      // ack the newest proposal whose vectors I all hold, unless I acked another set already (lock)
      const S = this.#survivorSet
      if (S !== null && M.members.includes(this.me) && S.members.every(u => this.#hasVectorOf(u))) {
        if (this.#ackedFor === null) {
          this.#ackedFor = hex(S.id)
          this.#send(MSG.ack, S.attempt, { proposalId: S.id })
        } else if (this.#ackedFor !== hex(S.id) && !this.#seen.has(`ack:${this.me}:${S.attempt}`)) {
          // locked: re-affirm my earlier set in this attempt, never a second one
          const locked = this.#survivorProposals.get(this.#ackedFor)!
          this.#send(MSG.ack, S.attempt, { proposalId: locked.id })
        }
      }
      // a quorum certificate of t acks from the masking set fixes the survivor set
      for (const [key, ackers] of this.#acks) {
        const proposal = this.#survivorProposals.get(key)
        if (proposal !== undefined && ackers.size >= p.threshold && proposal.members.every(u => this.#hasVectorOf(u))) {
          this.#certifiedSet = proposal
          this.#setPhase('unmask', `survivor set certified by ${ackers.size} acks: ${proposal.members.length} of ${M.members.length} survived`)
          break
        }
      }
    }

    // 5. reveal my shares: self-mask shares of survivors, key shares of the dropped, never both
    const U3 = this.#certifiedSet
    if (U3 !== null && M !== null && !this.#revealed && M.members.includes(this.me) && this.#ackedFor === hex(U3.id)) this.#reveal(M, U3)

    // 6. aggregate, once enough shares are in
    if (U3 !== null && M !== null && this.#result === null) this.#tryAggregate(M, U3)

    // 7. certificate: a quorum of matching commits
    for (const [key, sigs] of this.#commits) {
      if (sigs.size >= p.quorum) {
        const headerBytes = this.#headersByHash.get(key)!
        const certificate: Certificate = { header: headerBytes, signatures: [...sigs.entries()].sort((a, b) => a[0] - b[0]) }
        const header = decodeHeader(headerBytes)
        const mine = this.#result !== null && hex(headerHash(this.#result.header)) === key
        this.phase = 'certified'
        this.#blobs.clear() // the masked vectors are not needed any more: do not hold them
        this.#actions.push({ type: 'phase', phase: 'certified', detail: `round ${this.o.round} certified by ${sigs.size} signatures`, round: this.o.round })
        this.#actions.push({ type: 'certified', certificate, header, state: mine ? this.#result!.state : null, stats: mine ? this.#result!.stats : null })
        return
      }
    }
  }

  #hasVectorOf (u: number): boolean {
    const c = this.#commitments.get(u)
    return c !== undefined && this.#blobs.has(hex(c.body.vectorHash))
  }

  #inputLength (): number {
    return (this.o.kind === 'update' ? this.o.state.weights.length : STATS_LENGTH) + 1
  }

  #boxAad (from: number, to: number): Uint8Array {
    return new Uint8Array([...new TextEncoder().encode('medmesh/v1/shares'), ...this.#ctx, from, to])
  }

  #shareMyKeys (now: number): void {
    const view = [...this.#adverts.keys()].sort((a, b) => a - b)
    if (!view.includes(this.me)) return // my own advertisement has not come back yet
    const points = view.map(i => i + 1)
    const t = this.o.manifest.params.threshold
    const bShares = splitSecret(this.#b, t, points, this.o.rng)
    const kShares = splitSecret(this.#s.secretKey, t, points, this.o.rng)
    const box: Array<[number, Uint8Array]> = []
    view.forEach((v, i) => {
      if (v === this.me) { this.#myShares.set(v, { b: bShares[i], k: kShares[i] }); return }
      const plain = encodeCanonical({ b: encodeShare(bShares[i]), k: encodeShare(kShares[i]) })
      box.push([v, sealForPeer(this.#c.secretKey, this.#adverts.get(v)!.body.boxKey, this.#ctx, plain, this.#boxAad(this.me, v), this.o.rng)])
    })
    this.#sharedAt = now
    this.#maskingDeadline = now + 2 * this.o.manifest.params.timeouts.phaseMs
    this.#send(MSG.shareKeys, 0, { advertsSeen: view.map(v => [v, this.#adverts.get(v)!.id]), boxes: box })
    this.#setPhase('share-keys', `shared keys with ${view.length - 1} members`)
  }

  #proposeMaskingSet (minSet: number): void {
    this.#proposedMasking.add(this.#maskingAttempt)
    // the largest pairwise-consistent set, by removing the most inconsistent member until none is
    let members = [...this.#shareKeys.keys()].filter(u => this.#adverts.has(u) && !this.#faulty.has(u))
    const consistent = (u: number, v: number): boolean => {
      const su = this.#shareKeys.get(u)!
      const id = su.view.get(v)
      return id !== undefined && equalBytes(id, this.#adverts.get(v)!.id) && (u === v || su.boxes.has(v))
    }
    for (;;) {
      const bad = members.map(u => members.filter(v => !consistent(u, v) || !consistent(v, u)).length)
      const worst = bad.indexOf(Math.max(...bad))
      if (members.length === 0 || bad[worst] === 0) break
      members = members.filter((_, i) => i !== worst)
    }
    if (members.length < minSet) return
    const msgs = [...members.map(u => this.#adverts.get(u)!.wire), ...members.map(u => this.#shareKeys.get(u)!.wire)]
    this.#send(MSG.proposal, this.#maskingAttempt, { set: 1, maskingSetId: new Uint8Array(32), messages: msgs })
  }

  #sendMaskedInput (M: Proposal): void {
    this.#maskedSent = true
    this.#maskedSentAt = this.o.now
    const q = this.o.manifest.params.quantization
    const input = this.#input!
    const expected = this.#inputLength() - 1
    if (input.values.length !== expected) throw new Error(`input has ${input.values.length} values, the round needs ${expected}`)
    const x = encodeWeightedUpdate(input.values, Math.min(input.count, q.maxSampleCount), q, this.o.rng)
    const pairwise = M.members.filter(v => v !== this.me).map(v => ({
      seed: pairwiseMaskSeed(this.#s.secretKey, this.#adverts.get(v)!.body.maskKey, this.#ctx),
      sign: pairwiseSign(this.o.manifest.members[this.me].peerId, this.o.manifest.members[v].peerId)
    }))
    const y = maskInput(x, this.#b, pairwise)
    const data = new Uint8Array(y.buffer, y.byteOffset, y.byteLength)
    const h = hash(data)
    this.#blobs.set(hex(h), y)
    this.#actions.push({ type: 'publish-blob', hash: hex(h), data })
    this.#send(MSG.maskedInput, 0, { maskingSetId: M.id, vectorHash: h, length: y.length })
    this.#setPhase('survivor-set', `masked input sent (${(data.length / 1e6).toFixed(2)} MB)`)
  }

  #proposeSurvivorSet (minSet: number): void {
    this.#proposedSurvivor.add(this.#survivorAttempt)
    // an honest proposer that is locked re-proposes its locked set
    const locked = this.#ackedFor !== null ? this.#survivorProposals.get(this.#ackedFor) : undefined
    const members = locked?.members ?? this.#maskingSet!.members.filter(u => this.#hasVectorOf(u) && !this.#faulty.has(u))
    if (members.length < minSet) return
    this.#send(MSG.proposal, this.#survivorAttempt, { set: 2, maskingSetId: this.#maskingSet!.id, messages: members.map(u => this.#commitments.get(u)!.wire) })
  }

  #reveal (M: Proposal, U3: Proposal): void {
    this.#revealed = true
    const bs: Array<[number, Uint8Array]> = []
    const ks: Array<[number, Uint8Array]> = []
    for (const u of M.members) {
      const mine = this.#myShares.get(u)
      if (mine === undefined) continue
      if (U3.members.includes(u)) bs.push([u, encodeShare(mine.b)])
      else ks.push([u, encodeShare(mine.k)])
    }
    this.#send(MSG.reveal, 0, { proposalId: U3.id, selfMaskShares: bs, keyShares: ks })
  }

  #tryAggregate (M: Proposal, U3: Proposal): void {
    const t = this.o.manifest.params.threshold
    const key = hex(U3.id)
    const dropped = M.members.filter(u => !U3.members.includes(u))
    const selfShares = new Map<number, Share[]>(U3.members.map(u => [u, []]))
    const keyShares = new Map<number, Share[]>(dropped.map(u => [u, []]))
    for (const [sender, body] of this.#reveals) {
      if (this.#revealIds.get(sender) !== key || this.#faulty.has(sender) || !M.members.includes(sender)) continue
      const owners = new Set<number>()
      let ok = true
      for (const [u] of body.selfMaskShares) { if (!selfShares.has(u) || owners.has(u)) ok = false; owners.add(u) }
      for (const [u] of body.keyShares) { if (!keyShares.has(u) || owners.has(u)) ok = false; owners.add(u) }
      if (!ok) { this.#faulty.add(sender); this.#reject('invalid', `member ${sender} revealed shares outside the rules (both kinds, or for the wrong set)`, sender); continue }
      try {
        for (const [u, s] of body.selfMaskShares) { const sh = decodeShare(s); if (sh.x !== sender + 1) throw new Error('x'); selfShares.get(u)!.push(sh) }
        for (const [u, s] of body.keyShares) { const sh = decodeShare(s); if (sh.x !== sender + 1) throw new Error('x'); keyShares.get(u)!.push(sh) }
      } catch {
        this.#faulty.add(sender)
        this.#reject('bad-share', `member ${sender} revealed malformed shares`, sender)
      }
    }
    for (const list of [...selfShares.values(), ...keyShares.values()]) if (list.length < t) return // wait for more reveals

    const selfSeeds: Uint8Array[] = []
    const droppedKeys = new Map<number, Uint8Array>()
    try {
      for (const u of U3.members) {
        const commitment = this.#adverts.get(u)!.body.selfMaskCommitment
        selfSeeds.push(reconstructSecret(selfShares.get(u)!, t, { verify: s => equalBytes(secretCommitment(s), commitment) }))
      }
      for (const u of dropped) {
        const pub = this.#adverts.get(u)!.body.maskKey
        droppedKeys.set(u, reconstructSecret(keyShares.get(u)!, t, { verify: s => equalBytes(x25519PublicKey(s), pub) }))
      }
    } catch (e) {
      if (e instanceof InconsistentSharesError) {
        // name and exclude whoever revealed a bad share; the others' shares may suffice later
        for (const x of e.suspects) {
          const culprit = x - 1
          if (!this.#faulty.has(culprit)) { this.#faulty.add(culprit); this.#reject('bad-share', `member ${culprit} revealed a share inconsistent with the commitment`, culprit) }
        }
        return
      }
      throw e
    }

    const sum = sumVectors(U3.members.map(u => this.#blobs.get(hex(this.#commitments.get(u)!.body.vectorHash))!))
    const droppedMasks: DroppedPairwiseMask[] = []
    for (const [d, sk] of droppedKeys) {
      for (const u of U3.members) {
        droppedMasks.push({
          seed: pairwiseMaskSeed(sk, this.#adverts.get(u)!.body.maskKey, this.#ctx),
          sign: pairwiseSign(this.o.manifest.members[u].peerId, this.o.manifest.members[d].peerId)
        })
      }
    }
    unmaskSum(sum, selfSeeds, droppedMasks)
    const aggregateHash = hash(new Uint8Array(sum.buffer, sum.byteOffset, sum.byteLength))
    const { mean } = decodeWeightedAverage(sum, U3.members.length, this.o.manifest.params.quantization)
    let state: GlobalState | null = null
    let stats: Float64Array | null = null
    if (this.o.kind === 'update') state = strategyFor(this.o.manifest.params.aggregation.rule).apply(this.o.state, mean, this.o.manifest.params.aggregation)
    else stats = mean
    const header = encodeHeader({
      consortium: this.o.consortium,
      round: this.o.round,
      prev: this.o.prev,
      kind: this.o.kind,
      survivors: [...U3.members],
      aggregateHash: aggregateHash,
      stateHash: stateHash(state ?? this.o.state),
      extra: stats === null ? new Uint8Array(0) : new Uint8Array(Float64Array.from(stats).buffer)
    })
    this.#result = { header, state, stats }
    this.#setPhase('commit', `aggregated ${U3.members.length} inputs${dropped.length > 0 ? `, removed masks of ${dropped.length} dropped` : ''}`)
    this.#send(MSG.commit, 0, { header: header, signature: signHeader(this.o.identity, header) })
  }

  // ---------------------------------------------------------------- outgoing

  #send (t: MsgType, attempt: number, body: Body): Uint8Array {
    const env: Envelope = { version: 1, type: t, consortium: this.o.consortium, round: this.o.round, attempt: attempt, sender: this.me, body: body }
    const wire = sealMessage(this.o.identity, env)
    this.#actions.push({ type: 'broadcast', msgType: MSG_NAME[t], wire })
    // I receive my own message like anyone else's, so that every rule applies to it too
    this.#dispatch(openMessage(wire, { consortium: this.o.consortium, memberKeys: this.o.memberKeys }))
    return wire
  }

  #reject (code: string, reason: string, peer: number): void {
    this.#actions.push({ type: 'reject', code, reason, peer })
  }

  #setPhase (phase: Phase, detail: string): void {
    this.phase = phase
    this.#actions.push({ type: 'phase', phase, detail, round: this.o.round })
  }

  #abort (reason: string): void {
    this.phase = 'aborted'
    this.#blobs.clear()
    this.#actions.push({ type: 'phase', phase: 'aborted', detail: reason, round: this.o.round })
    this.#actions.push({ type: 'aborted', reason })
  }
}

/** Length of the statistics vector of a 'stats' round: [mean, mean of squares] of the pixels. */
export const STATS_LENGTH = 2
