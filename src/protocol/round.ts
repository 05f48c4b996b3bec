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
import { equalBytes, hex } from './codec.ts'
import { ProtocolError, orReject } from './errors.ts'
import type { Phase, RoundAction } from './actions.ts'
import { RoundOutbox } from './round-outbox.ts'
import {
  MSG, MSG_NAME, PROTOCOL_VERSION, openMessage, sealMessage, type AckBody, type AdvertiseBody, type CommitBody, type Envelope, type MaskedInputBody,
  type OpenedMessage, type ProposalBody, type RevealBody, type ShareKeysBody, type SliceSumsBody, type MsgType, type Body
} from './messages.ts'
import { memberIndex } from './manifest.ts'
import { decodeHeader, signHeader, type Certificate } from './ledger.ts'
import type { GlobalState } from './model.ts'
import { aggregateFromSum } from './aggregate.ts'
import { RevealedSecrets } from './reveals.ts'
import { CommitTally, checkCommit } from './commits.ts'
import { sharesToReveal } from './shares.ts'
import { inputLength } from './masked-input.ts'
import { Lateness } from './lateness.ts'
import { proposerOf } from './presence.ts'
import { SurvivorAgreement, survivorSetOf, type SurvivorProposal } from './survivors.ts'
import { checkMaskedInput, type Exchange } from './exchange.ts'
import { exchangeFor } from './exchange-for.ts'
import { RoundMessages } from './round-messages.ts'
import { MaskingSetAgreement } from './masking-set.ts'
import type { Progress, Proposal, RoundOptions } from './round-options.ts'
import { startsRung } from './selection.ts'
import { DeferredMessages } from './deferred.ts'

export type { RoundOptions } from './round-options.ts'

export class Round {
  readonly #o: Readonly<RoundOptions>
  /** the ledger head this round extends and the state it trains from (a late certificate can move both: rebase) */
  #head: { prev: Uint8Array, state: GlobalState, parts: number }
  #now: number
  readonly me: number
  readonly n: number
  phase: Phase = 'advertise'
  readonly #progress: Progress = { inputSent: false, revealed: false }
  readonly #outbox: RoundOutbox
  readonly #ctx: Uint8Array

  #input: { values: ArrayLike<number>, count: number } | null = null

  // what I have seen
  readonly #messages: RoundMessages
  /** advertise, share keys, agree on the masking set (masking-set.ts); it holds my secrets for this round */
  readonly #masking: MaskingSetAgreement
  readonly #reveals = new RevealedSecrets()
  readonly #commits = new CommitTally()
  readonly #faulty = new Set<number>()
  /** how the masked vectors travel and are summed: whole, or in slices (exchange.ts) */
  #exchange: Exchange
  /** how late the others' advertisements and masked inputs came (even after this round ended) */
  readonly lateness: Lateness
  readonly #survivors = new SurvivorAgreement()
  /** messages it cannot judge yet: before the masking set, or while its input length may change (deferred.ts) */
  readonly #deferred: DeferredMessages
  readonly #roundDeadline: number

  constructor (o: RoundOptions) {
    this.#o = o
    this.#outbox = new RoundOutbox(o.round)
    this.#head = { prev: o.prev, state: o.state, parts: o.parts ?? 1 }
    this.#now = o.now
    this.n = o.manifest.members.length
    this.#messages = new RoundMessages({ consortium: o.consortium, memberKeys: o.memberKeys }, o.round, this.n)
    this.me = memberIndex(o.manifest, o.identity.peerId)
    if (this.me < 0) throw new Error('this identity is not a member of the consortium')
    const r = new Uint8Array(8)
    new DataView(r.buffer).setBigUint64(0, BigInt(o.round))
    this.#ctx = new Uint8Array([...o.consortium, ...r])
    const p = o.manifest.params
    this.#masking = new MaskingSetAgreement({
      me: this.me, n: this.n, round: o.round, threshold: p.threshold, minSet: this.#minSet, phaseMs: p.timeouts.phaseMs, advertiseDeadline: o.now + (o.advertiseWaitMs ?? p.timeouts.phaseMs),
      context: this.#ctx, rng: o.rng, expectedAdverts: o.expectedAdverts, lastSurvivors: o.lastSurvivors, behind: o.behind
    }, { send: (t, attempt, body) => this.#send(t, attempt, body), reject: (code, reason, peer) => this.#outbox.reject(code, reason, peer), phase: (phase, detail) => this.#setPhase(phase, detail) })
    this.lateness = new Lateness(o.now)
    this.#roundDeadline = o.now + o.manifest.params.timeouts.roundMs
    this.#exchange = this.#newExchange()
    this.#deferred = new DeferredMessages(4 * this.n, o.behind === true && startsRung(o.kind, o.round, o.manifest.params.selection) ? o.now + o.manifest.params.timeouts.phaseMs : null)
    this.#send(MSG.advertise, 0, this.#masking.advertisement)
    this.#setPhase('advertise', 'keys advertised')
  }

  get round (): number { return this.#o.round }
  get kind (): RoundOptions['kind'] { return this.#o.kind }
  /** the ledger head this round extends */
  get prev (): Uint8Array { return this.#head.prev }
  /** the state this round trains from (an update round) or judges (an eval round) */
  get state (): GlobalState { return this.#head.state }
  get #peerIds (): string[] { return this.#o.manifest.members.map(m => m.peerId) }
  /** the fewest members a masking or survivor set may have: nobody learns a sum of fewer */
  get #minSet (): number { return Math.max(this.#o.manifest.params.minParticipants, this.#o.manifest.params.threshold) }
  get hasInput (): boolean { return this.#input !== null }
  get done (): boolean { return this.phase === 'certified' || this.phase === 'aborted' }
  /** whether this peer's input is expected: the masking set is agreed and includes it */
  get inputExpected (): boolean { return this.#masking.agreed?.members.includes(this.me) === true }

  takeActions (): RoundAction[] { return this.#outbox.take() }

  /** Whether a message of this round, come after it ended, is a straggler's first advertisement or masked input (what noteLate would note). */
  isNewStraggler (msg: OpenedMessage): boolean { return this.#messages.isNewLate(msg) }

  /** A straggler's advertisement or masked input, after this round ended: noted for the lateness figures if new; false for a replay. */
  noteLate (msg: OpenedMessage, now: number): boolean {
    if (!this.#messages.isNewLate(msg, true)) return false
    this.#noteArrival(msg, now)
    return true
  }

  #noteArrival (msg: OpenedMessage, now: number): void { if (msg.env.sender !== this.me) this.lateness.arrived(msg.env.type, now) }

  /**
   * A certificate for the previous round arrived late (this peer had aborted it): take the new
   * ledger head and state, if the aggregate has not been formed yet. Returns whether it could.
   * A state of another length (recipe selection: a rung's decision this peer learnt late) changes
   * the input length and the slices too: only while no masked input was given or seen. `parts`:
   * the candidates' models the new state holds (1 without selection).
   */
  rebase (prev: Uint8Array, { state, parts = 1 }: { state: GlobalState, parts?: number }): boolean {
    if (this.#progress.result !== undefined) return false
    const resized = state.weights.length !== this.#head.state.weights.length || parts !== this.#head.parts
    if (resized && (this.#input !== null || this.#maskedInputSeen)) return false
    this.#head = { prev, state, parts }
    if (resized) this.#exchange = this.#newExchange()
    for (const m of this.#deferred.settle()) this.#dispatchOrReject(m)
    return true
  }

  /** whether any masked input (this peer's or another's) was handed over or received: the input length is fixed from then */
  #maskedInputSeen = false

  #newExchange (): Exchange {
    const o = this.#o
    return exchangeFor({ slicing: o.manifest.params.slicing, me: this.me, peerIds: this.#peerIds, length: this.#inputLength(), prev: () => this.#head.prev, consortium: o.consortium, round: o.round, phaseMs: o.manifest.params.timeouts.phaseMs, checkAll: o.checkAll })
  }

  /**
   * This peer's contribution: a model update (or statistics vector) and its sample count, handed
   * over at `now` (default: the last time this round saw). The waits that follow the input (the
   * survivor set's) count from then, not from when training began.
   */
  setInput (values: ArrayLike<number>, count: number, now = this.#now): void {
    this.#input = { values, count }
    this.#advance(now)
  }

  /** A wire message from the network (already known to be for this round), `now` in ms. */
  receive (msg: OpenedMessage, now: number): void {
    if (this.done) return
    this.#messages.remember(msg)
    this.#noteArrival(msg, now)
    this.#dispatchOrReject(msg)
    this.#advance(now)
  }

  /** A blob the driver fetched: kept only if it is a committed masked vector (or in sliced mode, a committed slice or an agreed slice sum). */
  receiveBlob (hashHex: string, data: Uint8Array, now: number, hashChecked = false): void {
    if (this.done) return
    const got = this.#exchange.receiveBlob(hashHex, data, hashChecked)
    if (got === null) return
    if (!got.ok) { this.#outbox.reject('bad-blob', got.reason, got.member); return }
    this.#advance(now)
  }

  tick (now: number): void {
    for (const m of this.#deferred.settle(now)) this.#dispatchOrReject(m)
    this.#advance(now)
  }

  #dispatchOrReject (msg: OpenedMessage): void { orReject(() => this.#dispatch(msg), e => this.#outbox.reject(e.code, e.message, msg.env.sender)) }

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
      case MSG.sliceSums: return this.#onSliceSums(msg as OpenedMessage<SliceSumsBody>)
    }
  }

  /** First message of its kind from a sender: true; the same again: false; a different one: equivocation (faulty). */
  #firstOf (key: string, msg: OpenedMessage): boolean { return this.#messages.firstOf(key, msg, u => this.#faulty.add(u)) }

  #onAdvertise (msg: OpenedMessage<AdvertiseBody>): void { if (this.#firstOf(`adv:${msg.env.sender}`, msg)) this.#masking.onAdvertise(msg) }

  #onShareKeys (msg: OpenedMessage<ShareKeysBody>): void { if (this.#firstOf(`sk:${msg.env.sender}`, msg)) this.#masking.onShareKeys(msg) }

  #onProposal (msg: OpenedMessage<ProposalBody>): void {
    const { env } = msg
    const ph = env.body.set
    if (env.sender !== proposerOf(ph, this.#o.round, env.attempt, this.n)) throw new ProtocolError('wrong-proposer', `member ${env.sender} is not the proposer of set ${ph}, attempt ${env.attempt}`)
    if (ph === 2 && (this.#masking.agreed === undefined || this.#deferred.lengthUnknown)) return this.#defer(msg)
    if (!this.#firstOf(`prop:${ph}:${env.attempt}`, msg)) return
    if (ph === 2) return this.#onSurvivorProposal(msg)
    const proposer = this.#o.manifest.members[env.sender]?.name ?? String(env.sender)
    if (this.#masking.onProposal(msg, wire => this.#messages.open(wire), proposer)) for (const m of this.#deferred.takeAll()) this.#dispatchOrReject(m)
  }

  /** A message that needs the masking set, which is not agreed yet: keep it (bounded) for later. */
  #defer (msg: OpenedMessage): void {
    if (!this.#deferred.keep(msg)) this.#outbox.reject('wrong-phase', `${MSG_NAME[msg.env.type]} from ${msg.env.sender} arrived before the masking set and the queue is full`, msg.env.sender)
  }

  #onMaskedInput (msg: OpenedMessage<MaskedInputBody>): void {
    if (this.#masking.agreed === undefined || this.#deferred.lengthUnknown) return this.#defer(msg)
    if (!this.#firstOf(`mi:${msg.env.sender}`, msg)) return
    this.#acceptCommitment(msg)
  }

  #acceptCommitment (msg: OpenedMessage<MaskedInputBody>, authoritative = false): void {
    checkMaskedInput(msg, this.#masking.agreed, this.#inputLength(), this.#exchange)
    this.#maskedInputSeen = true
    // the survivor-set proposal (authoritative) fixes which of two commitments counts
    const recorded = this.#exchange.commit(msg.env.sender, { id: msg.id, wire: msg.wire, body: msg.env.body }, authoritative)
    if (recorded !== 'other') return
    this.#faulty.add(msg.env.sender)
    if (!authoritative) throw new ProtocolError('equivocation', `member ${msg.env.sender} committed to two masked vectors`)
    this.#outbox.reject('equivocation', `member ${msg.env.sender} committed to two masked vectors; the proposal's counts`, msg.env.sender)
  }

  #onSurvivorProposal (msg: OpenedMessage<ProposalBody>): void {
    // each commitment it carries passes the same checks as a direct one, and counts over any other
    const members = survivorSetOf(msg, this.#masking.agreed, this.#minSet, wire => this.#messages.open(wire), m => this.#acceptCommitment(m, true))
    this.#survivors.addProposal({ id: msg.id, attempt: msg.env.attempt, members })
  }

  #onAck (msg: OpenedMessage<AckBody>): void {
    if (!this.#firstOf(`ack:${msg.env.sender}:${msg.env.attempt}`, msg)) return
    const M = this.#masking.agreed
    if (M !== undefined && !M.members.includes(msg.env.sender)) throw new ProtocolError('invalid', `ack from ${msg.env.sender}, not in the masking set`)
    this.#survivors.addAck(msg.env.sender, msg.env.body.proposalId)
  }

  #onReveal (msg: OpenedMessage<RevealBody>): void { if (this.#firstOf(`rev:${msg.env.sender}`, msg)) this.#reveals.add(msg.env.sender, msg.env.body) }

  #onSliceSums (msg: OpenedMessage<SliceSumsBody>): void {
    if (!this.#messages.another(`ss:${msg.env.sender}:${hex(msg.id)}`, msg)) return
    const { rejects, invalid } = this.#exchange.claim(msg.env.sender, msg.env.body, msg.wire, this.#survivors.certified()?.proposal ?? null)
    this.#outbox.rejectAll(rejects)
    if (invalid !== null) throw new ProtocolError('invalid', invalid)
  }

  #onCommit (msg: OpenedMessage<CommitBody>): void {
    if (!this.#firstOf(`commit:${msg.env.sender}`, msg)) return
    checkCommit(msg.env.body, msg.env.sender, { ...this.#o, prev: this.#head.prev })
    this.#commits.record(msg.env.sender, msg.env.body)
  }

  #advance (now: number): void {
    now = this.#now = Math.max(this.#now, now)
    if (this.done) return
    if (now >= this.#roundDeadline) { this.#abort(`round ${this.#o.round} timed out in phase ${this.phase}`); return }
    const p = this.#o.manifest.params
    const progress = this.#progress

    // 1. share keys with everyone whose advertisement I hold; 2. agree on the masking set (masking-set.ts)
    this.#masking.step(now, this.#faulty)

    // 3. masked input, once the set is agreed and my input is ready
    const M = this.#masking.agreed ?? null
    if (M !== null && !progress.inputSent && this.#input !== null && M.members.includes(this.me)) this.#sendMaskedInput(M)
    // the proposer waits inputWait for missing inputs, the others that and one phase more before
    // they turn to the next proposer
    const inputWait = this.#o.inputWaitMs ?? p.timeouts.phaseMs
    if (M !== null && (progress.inputSent || !M.members.includes(this.me))) this.#survivors.begin(now + inputWait + p.timeouts.phaseMs)

    // fetch every committed vector I lack (sliced: the slices I aggregate)
    this.#outbox.fetch(this.#exchange.takeMissing(M?.members ?? null, this.#survivors.certified()?.proposal.members ?? null))

    // 4. survivor set
    if (M !== null && this.#survivors.certified() === null) this.#survivorStep(now, M)

    // 5. reveal my shares: self-mask shares of survivors, key shares of the dropped, never both
    const U3 = this.#survivors.certified()?.proposal ?? null
    if (U3 !== null && M !== null && !progress.revealed && M.members.includes(this.me) && this.#survivors.acked(U3.id)) {
      progress.revealed = true
      this.#send(MSG.reveal, 0, { proposalId: U3.id, ...sharesToReveal(M.members, U3.members, this.#masking.myShares) })
    }

    // 6. aggregate, once enough shares are in
    if (U3 !== null && M !== null && progress.result === undefined) this.#tryAggregate(M, U3)

    // 7. certificate: a quorum of matching commits
    const certificate = this.#commits.certificate(p.quorum)
    if (certificate !== null) this.#certify(certificate)
  }

  #survivorStep (now: number, M: Proposal): void {
    const p = this.#o.manifest.params
    this.#survivors.step(now, {
      round: this.#o.round, n: this.n, me: this.me, maskingSet: M.members, minSet: this.#minSet, threshold: p.threshold, phaseMs: p.timeouts.phaseMs,
      hasVectorOf: u => this.#exchange.hasInputOf(u, M.members), faulty: this.#faulty, ackedIn: attempt => this.#messages.has(`ack:${this.me}:${attempt}`),
      propose: (attempt, members) => this.#send(MSG.proposal, attempt, { set: 2, maskingSetId: M.id, messages: members.map(u => this.#exchange.commitmentOf(u)!.wire) }),
      ack: (attempt, proposalId) => this.#send(MSG.ack, attempt, { proposalId })
    })
    const fixed = this.#survivors.certified()
    if (fixed === null) return
    this.#setPhase('unmask', `survivor set certified by ${fixed.acks} acks: ${fixed.proposal.members.length} of ${M.members.length} survived`)
    this.#outbox.rejectAll(this.#exchange.survivorsCertified(fixed.proposal))
  }

  #certify (certificate: Certificate): void {
    const header = decodeHeader(certificate.header)
    const result = this.#progress.result
    const mine = result !== undefined && equalBytes(result.header, certificate.header)
    this.phase = 'certified'
    this.#exchange.release() // the masked vectors are not needed any more: do not hold them
    this.#outbox.certified({ certificate, header, state: mine ? result.state : null, stats: mine ? result.stats : null, stateBytes: mine ? result.stateBytes : null })
    // the peer has the state now; a finished round kept for late messages needs only the header
    if (result !== undefined) this.#progress.result = { header: result.header, state: null, stats: null, stateBytes: null }
  }

  #inputLength (): number {
    return inputLength(this.#o.kind, this.#o.manifest.params, this.#head.state.weights.length, this.#head.parts)
  }

  #sendMaskedInput (M: Proposal): void {
    this.#progress.inputSent = true
    this.lateness.inputSent(this.#now)
    const input = this.#input!
    const expected = this.#inputLength() - 1
    if (input.values.length !== expected) throw new Error(`input has ${input.values.length} values, the round needs ${expected}`)
    const y = this.#masking.mask(input, this.#o.kind === 'eval' ? 'counts' : 'weighted', this.#o.manifest.params.quantization, this.#peerIds)
    const { blobs, vectorHash, sliceHashes } = this.#exchange.own(y)
    this.#outbox.publish(blobs)
    this.#send(MSG.maskedInput, 0, { maskingSetId: M.id, vectorHash, length: y.length, ...(sliceHashes !== undefined ? { sliceHashes } : {}) })
    this.#setPhase('survivor-set', `masked input sent (${(y.byteLength / 1e6).toFixed(2)} MB)`)
  }

  /** The secrets of U3 once (from t reveals), then the sum as the exchange forms it, then my commit. */
  #tryAggregate (M: Proposal, U3: SurvivorProposal): void {
    const { secrets, misbehaved } = this.#reveals.secrets(U3.id, U3.members, () => ({
      maskingSet: M.members, faulty: this.#faulty, params: this.#o.manifest.params, peerIds: this.#peerIds, maskContext: this.#ctx,
      adverts: new Map(M.members.map(u => [u, this.#masking.adverts.get(u)!.body]))
    }))
    for (const m of misbehaved) {
      if (!this.#faulty.has(m.member)) { this.#faulty.add(m.member); this.#outbox.reject(m.code, m.reason, m.member) }
    }
    if (secrets === null) return
    const step = this.#exchange.sum(this.#now, M.members, U3.members, secrets)
    this.#outbox.publish(step.publish)
    this.#outbox.fetch(step.fetch)
    if (step.announce.length > 0) this.#send(MSG.sliceSums, 0, { proposalId: U3.id, sums: step.announce })
    this.#outbox.rejectAll(step.rejects)
    if (step.sum === null) return
    const { consortium, round, kind } = this.#o
    const result = aggregateFromSum({ consortium, round, kind, prev: this.#head.prev, state: this.#head.state, parts: this.#head.parts, survivors: U3.members, params: this.#o.manifest.params }, step.sum.words, step.sum.sliceHashes)
    this.#progress.result = result
    const gone = M.members.length - U3.members.length
    this.#setPhase('commit', `aggregated ${U3.members.length} inputs${this.#exchange.described}${gone > 0 ? `, removed masks of ${gone} dropped` : ''}`)
    this.#send(MSG.commit, 0, { header: result.header, signature: signHeader(this.#o.identity, result.header) })
  }

  /** The signed commits this round heard, its own among them (#send receives it too; kept after the round ends: a late certificate may still form from them). */
  commitsHeard (): Array<[number, CommitBody]> { return this.#commits.commits() }

  #send (t: MsgType, attempt: number, body: Body): Uint8Array {
    const env: Envelope = { version: PROTOCOL_VERSION, type: t, consortium: this.#o.consortium, round: this.#o.round, attempt: attempt, sender: this.me, body: body }
    const wire = sealMessage(this.#o.identity, env)
    this.#outbox.broadcast(MSG_NAME[t], wire)
    // I receive my own message like anyone else's, so that every rule applies to it too
    const opened = openMessage(wire, { consortium: this.#o.consortium, memberKeys: this.#o.memberKeys })
    this.#messages.remember(opened)
    this.#dispatch(opened)
    return wire
  }


  #setPhase (phase: Phase, detail: string): void { this.phase = phase; this.#outbox.phase(phase, detail) }

  #abort (reason: string): void {
    this.phase = 'aborted'
    this.#exchange.release()
    this.#outbox.aborted(reason)
  }
}

