/**
 * A peer's view of the chain of rounds: the verified ledger, the certified global state, the
 * round in progress, and what arrives early or late. Pure like Round: the driver (the libp2p node
 * or the simulator) feeds it wire bytes, blobs and the time, and carries out its actions.
 *
 * - Every wire message is opened (size, schema, consortium, membership, signature) before anything
 *   else; a failure becomes a 'reject' action naming the peer and the reason.
 * - Messages for the next round are kept (bounded) until it starts; older rounds' messages are
 *   rejected, except commits, which let a peer that aborted a round adopt its late certificate.
 * - When a round ends (certified or aborted) the next one starts at once; the input for it comes
 *   from `inputFor` or, later, `setInput`.
 */
import { equalBytes, hex } from './codec.ts'
import { ProtocolError, orReject } from './errors.ts'
import { Ledger, decodeHeader, headerHash, type Certificate, type CertificateHeader } from './ledger.ts'
import { MSG, openMessage, type CommitBody, type MessageContext, type OpenedMessage } from './messages.ts'
import { decodeState, encodeState, stateHash, type GlobalState } from './model.ts'
import { Round } from './round.ts'
import type { PeerAction, RoundKind } from './actions.ts'
import type { PeerOptions, RoundView } from './peer-options.ts'
import { memberIndex, type Manifest } from './manifest.ts'
import { CommitTally, commitSignatureValid } from './commits.ts'
import { adaptiveWait } from './lateness.ts'
import { Presence, absentMembers } from './presence.ts'
import { inputMayGo } from './input-gate.ts'
import { route } from './routing.ts'
import { roundStart } from './selection.ts'

export type { PeerAction, RoundKind } from './actions.ts'

export type { PeerOptions, RoundView } from './peer-options.ts'

const MAX_BUFFERED = 64 * 16
/** how far ahead of its own round a peer keeps messages (it may have been away that long) */
const FUTURE_ROUNDS = 16
/** rounds whose input lateness sets the adaptive wait */
const LATENESS_ROUNDS = 5
/** rounds whose late commits are counted at once */
const LATE_ROUNDS = 4
const MAX_STATE_BYTES = 1 << 30

function decodeStateOrNull (data: Uint8Array): GlobalState | null {
  return orReject(() => decodeState(data, MAX_STATE_BYTES), () => {}) ?? null
}

export class ProtocolPeer {
  readonly ledger: Ledger
  state: GlobalState
  /** the last certified statistics (from a 'stats' round), as its certificate carries them */
  get stats (): Float64Array | null { return this.ledger.statistics }
  #current: Round | null = null
  readonly #o: PeerOptions
  readonly #actions: PeerAction[] = []
  #buffer: Array<{ msg: OpenedMessage }> = []
  /** commits for rounds this peer has left (it aborted, or restarted in them), per round: a late certificate to adopt */
  readonly #lateCommits = new Map<number, CommitTally>()
  #pendingState: { hash: string, prev: Uint8Array } | null = null
  /** when the current round began here (see input-gate.ts) */
  #startedAt = 0
  /** commits extending a ledger head this peer lacks: evidence that it must catch up */
  readonly #foreign = new CommitTally({ latestPerSender: true, maxHeaders: 256 })
  readonly #synced = new Set<string>()
  #now = 0
  /**
   * running rounds; waiting, since a time, for the network to pass the round this peer was in when
   * it stopped (see firstRound); or halted for good
   */
  #standing: { is: 'running' } | { is: 'waiting', since: number } | { is: 'halted' } = { is: 'running' }
  /** the last rounds that ended, still told of late masked inputs: how late inputs come */
  readonly #recent: Round[] = []
  /** the last round each member was heard from: whose advertisements a round waits for */
  readonly #presence = new Presence()

  constructor (o: PeerOptions) {
    this.#o = o
    this.ledger = o.ledger ?? new Ledger(o.manifest)
    this.state = o.state ?? o.initialState
  }

  get manifest (): Manifest { return this.ledger.manifest }
  /** The round under way (or the last one, once ended), as drivers and tests may see it: read-only. */
  get round (): RoundView | null {
    const r = this.#current
    return r === null ? null : { number: r.round, kind: r.kind, phase: r.phase, inputExpected: r.inputExpected, done: r.done }
  }
  /** The state the round under way trains from or judges (the certified state, less any candidates recipe selection dropped since); the certified state between rounds. */
  get roundState (): GlobalState { return this.#current === null || this.#current.done ? this.state : this.#current.state }
  /** What a round of this kind starts from, and how many candidates' models that holds (selection.ts roundStart). */
  #base (round: number, kind: RoundKind): { state: GlobalState, parts: number } { return roundStart(this.ledger.entries, this.manifest.params, round, kind, this.state, this.fetchingState) }
  get peerId (): string { return this.#o.identity.peerId }
  get #me (): number { return memberIndex(this.manifest, this.#o.identity.peerId) }

  /** Adaptive wait for missing masked inputs (lateness.ts, adaptiveWait): within [phase/4, 4·phase]. */
  get inputWaitMs (): number { return adaptiveWait(this.#recent.map(r => r.lateness.input).filter((x): x is number => x !== null), this.manifest.params.timeouts.phaseMs) }

  /**
   * The same for advertisements, but never below the phase timeout: a member that restarts (or
   * returns) needs that long to be heard, and keys shared without it cannot include it later.
   */
  get advertiseWaitMs (): number {
    const phase = this.manifest.params.timeouts.phaseMs
    return adaptiveWait(this.#recent.map(r => r.lateness.advertise), phase, phase)
  }

  /** The members this peer considers absent now (presence.ts), each since the round after the last it survived. */
  get absent (): Array<{ member: number, since: number }> {
    const round = this.#current?.round ?? this.ledger.lastRound + 1
    return absentMembers(this.manifest.members.length, this.#presence.expected(round, this.ledger.entries.at(-1)?.header.survivors), this.ledger.entries.map(e => e.header))
  }

  takeActions (): PeerAction[] {
    this.#collect()
    return this.#actions.splice(0)
  }

  /**
   * Take part in no further round: the one under way, if not done, is left (as if stopped) and none
   * starts after it; the ledger still grows from certificates it is sent. A node that has run its
   * last round halts before it lingers to serve its model (else it would sign rounds that some
   * members certify after it left and others never see).
   */
  halt (): void {
    this.#standing = { is: 'halted' }
    if (this.#current !== null && !this.#current.done) this.#current = null
  }

  /** Start the round after the last certified one (or `round`, when the network is further on). */
  start (now: number, round = this.ledger.lastRound + 1): void {
    this.#now = Math.max(this.#now, now)
    // never two Rounds for one round number: new keys for the same round would be equivocation
    if (this.#current !== null && this.#current.round >= round) return
    if (this.#standing.is === 'halted') return
    if (this.#o.finished?.(this.ledger, round) === true) { this.halt(); return }
    if (this.#o.lastRound !== undefined && round > this.#o.lastRound) { this.#current = null; return }
    if (round < (this.#o.firstRound ?? 0)) {
      if (this.#standing.is !== 'waiting') this.#standing = { is: 'waiting', since: this.#now }
      return
    }
    this.#standing = { is: 'running' }
    const kind = this.#o.kindOf?.(round) ?? 'update'
    if (this.#current !== null) { this.#recent.push(this.#current); if (this.#recent.length > LATENESS_ROUNDS) this.#recent.shift() }
    this.#current = new Round({
      manifest: this.manifest,
      consortium: this.ledger.consortium,
      memberKeys: this.ledger.memberKeys,
      identity: this.#o.identity,
      round,
      prev: this.ledger.head,
      ...this.#base(round, kind),
      kind,
      rng: this.#o.rng, now: this.#now,
      lastSurvivors: this.ledger.entries.at(-1)?.header.survivors, behind: this.ledger.lastRound < round - 1,
      expectedAdverts: this.#presence.expected(round, this.ledger.entries.at(-1)?.header.survivors) ?? undefined,
      inputWaitMs: this.#o.adaptiveTimeouts === false ? undefined : this.inputWaitMs,
      advertiseWaitMs: this.#o.adaptiveTimeouts === false ? undefined : this.advertiseWaitMs,
      checkAll: this.#o.checkAll
    })
    this.#actions.push({ type: 'round-started', round, kind })
    this.#startedAt = this.#now
    // an eval round judges the certified model: not before this peer holds it (see receiveBlob)
    this.#askInput()
    const early = this.#buffer.filter(b => b.msg.env.round === round)
    this.#buffer = this.#buffer.filter(b => b.msg.env.round > round)
    for (const { msg } of early) this.#current.receive(msg, this.#now)
    this.#collect()
  }

  /** Whether a certified state is being fetched (the round under way may hold a stand-in of its length until it comes). */
  get fetchingState (): boolean { return this.#pendingState !== null }
  /** Whether this peer holds the certified state of the round before the one in progress (it may have jumped ahead, or still be fetching it). */
  get stateCurrent (): boolean { return this.#pendingState === null && (this.#current === null || this.ledger.lastRound === this.#current.round - 1) }

  #askInput (): void {
    const r = this.#current
    if (r === null || r.done || r.hasInput) return
    const gate = { kind: r.kind, round: r.round, lastCertified: this.ledger.lastRound, fetchingState: this.fetchingState, stateCurrent: this.stateCurrent, sinceStart: this.#now - this.#startedAt, phaseMs: this.manifest.params.timeouts.phaseMs }
    if (!inputMayGo(gate)) return
    const input = this.#o.inputFor?.(r.round, r.kind, this.roundState) ?? null
    if (input !== null) r.setInput(input.values, input.count)
  }

  /** This peer's input, handed over at `now`: the waits after it count from then (a node's clock stands still while it trains). */
  setInput (values: ArrayLike<number>, count: number, now = this.#now): void {
    this.#now = Math.max(this.#now, now)
    this.#current?.setInput(values, count, this.#now)
    this.#collect()
  }

  /** What a message from the network is checked against (see openMessage). */
  get messageContext (): MessageContext { return { consortium: this.ledger.consortium, memberKeys: this.ledger.memberKeys } }

  /** Bytes from the network: opened (size, schema, consortium, membership, signature), then taken in. */
  receive (wire: Uint8Array, now: number): void {
    const msg = orReject(() => openMessage(wire, this.messageContext), e => this.#rejected(e, -1))
    if (msg !== undefined) this.receiveOpened(msg, now)
  }

  /** A message the driver has already opened against `messageContext` (a gossip validator does it once). */
  receiveOpened (msg: OpenedMessage, now: number): void {
    this.#now = Math.max(this.#now, now)
    const r = msg.env.round
    this.#presence.heard(msg.env.sender, r)
    const isCommit = msg.env.type === MSG.commit
    const recent = this.#recent.find(x => x.round === r)
    const view = { current: this.#current?.round ?? null, lastCertified: this.ledger.lastRound, waitingFor: this.#standing.is === 'waiting' ? this.#o.firstRound : undefined }
    const to = route({ round: r, isCommit, extendsAnotherHead: isCommit && this.#extendsAnotherHead(msg as OpenedMessage<CommitBody>), newStraggler: recent?.isNewStraggler(msg) === true }, view)
    const cur = this.#current?.round ?? this.ledger.lastRound + 1
    switch (to) {
      case 'another-head': this.#onAnotherHead(msg as OpenedMessage<CommitBody>); break
      case 'this-round': this.#current!.receive(msg, this.#now); break
      case 'late-commit': this.#lateCommit(msg as OpenedMessage<CommitBody>); break
      case 'buffer': this.#keepForLater(msg, cur); break
      case 'straggler': recent!.noteLate(msg, this.#now); break
      case 'ignore': break
      case 'old': this.#actions.push({ type: 'reject', code: 'old-round', reason: `message for round ${r}, this peer is in round ${cur}`, peer: msg.env.sender })
    }
    this.#collect()
  }

  /** A later round's message, or this one's before this peer has started it: kept for then (a peer that was away may be several rounds behind; each member gets an equal share of the buffer). */
  #keepForLater (msg: OpenedMessage, cur: number): void {
    const r = msg.env.round
    const fromSender = this.#buffer.filter(b => b.msg.env.sender === msg.env.sender).length
    if (fromSender < MAX_BUFFERED / this.manifest.members.length && r <= cur + FUTURE_ROUNDS) this.#buffer.push({ msg })
    else this.#actions.push({ type: 'reject', code: 'future-round', reason: `message for round ${r}, this peer is in round ${cur}`, peer: msg.env.sender })
    this.#maybeJump(r)
  }

  /** A fetched blob; `hashChecked` when the driver has already found that SHA-256(data) is `hashHex` (the node's blob exchange does: a vector is then hashed once). */
  receiveBlob (hashHex: string, data: Uint8Array, now: number, hashChecked = false): void {
    this.#now = Math.max(this.#now, now)
    if (this.#pendingState !== null && hashHex === this.#pendingState.hash) {
      const state = decodeStateOrNull(data)
      if (state === null || hex(stateHash(state)) !== hashHex) this.#actions.push({ type: 'reject', code: 'bad-blob', reason: 'certified state does not match its hash', peer: -1 })
      else {
        this.state = state
        this.#pendingState = null // (before the base state: no stand-in now)
        // the round after the ledger's head moves onto it (an older one's base is another round's)
        const cur = this.#current
        if (cur !== null && cur.round === this.ledger.lastRound + 1) cur.rebase(this.ledger.head, this.#base(cur.round, cur.kind))
        this.#askInput()
      }
    }
    this.#current?.receiveBlob(hashHex, data, this.#now, hashChecked)
    this.#collect()
  }

  tick (now: number): void {
    this.#now = Math.max(this.#now, now)
    // a restarted peer that has since learnt the certificate of the round it had been in goes on
    const waiting = this.#standing.is === 'waiting' ? this.#standing : null
    if (waiting !== null && this.ledger.lastRound + 1 >= (this.#o.firstRound ?? 0) && this.#pendingState === null) this.start(this.#now)
    else if (waiting !== null && this.#pendingState === null && this.#now - waiting.since >= this.manifest.params.timeouts.roundMs) {
      // no certificate for the round it stopped in, and no members ahead to follow: that round is
      // aborted everywhere by now (or every member stopped in it): begin the next one, and ask the
      // members for certificates in case it was certified after all (the round is rebased then)
      const round = this.#o.firstRound!
      this.start(this.#now, round)
      this.#requestSync(round - 1, [])
    }
    this.#askInput() // an update that waited for the previous round's certificate (input-gate.ts)
    this.#current?.tick(this.#now)
    this.#collect()
  }

  /**
   * Catch up from other peers' certificates and the state they certify: verify each certificate
   * against the chain (hashes, quorum signatures) and the state against the last one's hash.
   */
  catchUp (certs: readonly Certificate[], stateBytes: Uint8Array | null, now: number): void {
    const fresh = certs.filter(c => decodeHeader(c.header).round > this.ledger.lastRound)
    let last: CertificateHeader | undefined
    for (const c of fresh) last = this.ledger.append(c).header
    if (last !== undefined) {
      // an eval certificate names the state it judged: the model of the round before it
      if (last.kind === 'update' || last.kind === 'eval') {
        if (stateBytes === null) throw new ProtocolError('invalid', 'catch-up needs the certified state')
        const state = decodeState(stateBytes, MAX_STATE_BYTES)
        if (!equalBytes(stateHash(state), last.stateHash)) throw new ProtocolError('bad-blob', 'the state does not match the certificate')
        this.state = state
      }
      this.#actions.push({ type: 'caught-up', round: last.round })
      this.#foreign.clear()
      this.#pendingState = null
      const cur = this.#current
      if (cur !== null && !cur.done && cur.round <= last.round) {
        this.#actions.push({ type: 'aborted', reason: `round ${cur.round} abandoned: caught up to round ${last.round}` })
      } else this.#followHead()
      this.#askInput() // (after following the head: the input is trained from the state it now starts from)
    }
    this.start(now)
  }

  /** The round this peer jumped into is the network's: move it onto the head it now holds (after the round before it was certified). */
  #followHead (): void {
    const cur = this.#current
    if (cur === null || cur.done || cur.round !== this.ledger.lastRound + 1 || equalBytes(cur.prev, this.ledger.head)) return
    if (!cur.rebase(this.ledger.head, this.#base(cur.round, cur.kind))) this.#actions.push({ type: 'reject', code: 'stale-round', reason: `round ${cur.round} was aggregated on a stale ledger head; following the others`, peer: -1 })
  }

  /**
   * A commit that extends a ledger head this peer does not hold: the peer missed a certificate
   * (it was away when a round was certified) and would otherwise go on forever with a stale head,
   * its commits never matching anyone's. Once a quorum of members has signed one such header it
   * is certain the others are ahead: ask the driver to fetch their ledger, verified in catchUp.
   */
  #extendsAnotherHead (msg: OpenedMessage<CommitBody>): boolean {
    let header: CertificateHeader
    try { header = decodeHeader(msg.env.body.header) } catch { return false }
    return !equalBytes(header.prev, this.ledger.head) && header.round === msg.env.round
  }

  #onAnotherHead (msg: OpenedMessage<CommitBody>): void {
    if (!commitSignatureValid(this.ledger.memberKeys, msg.env.sender, msg.env.body)) {
      this.#actions.push({ type: 'reject', code: 'bad-signature', reason: `member ${msg.env.sender}'s certificate signature is invalid`, peer: msg.env.sender })
      return
    }
    // one header per sender (its latest), so a member cannot crowd out the others' evidence
    const key = this.#foreign.record(msg.env.sender, msg.env.body)
    const signers = key === null ? [] : this.#foreign.signers(key)
    if (signers.length >= this.manifest.params.quorum) this.#requestSync(decodeHeader(msg.env.body.header).round, signers)
  }

  /** Ask for the ledger up to `round`, once for each (round, own ledger height) */
  #requestSync (round: number, from: number[]): void {
    const key = `${round}:${this.ledger.lastRound}`
    if (this.#synced.has(key)) return
    if (this.#synced.size > 256) this.#synced.clear()
    this.#synced.add(key)
    this.#actions.push({ type: 'sync', round, from })
  }

  /**
   * Members already in a later round mean this peer fell behind (or, restarted, is waiting for the
   * next round): follow them once they and it are enough to make that round (t of them with it),
   * else a consortium that needs every live member could wait on itself.
   */
  #maybeJump (r: number): void {
    const set = new Set(this.#buffer.filter(b => b.msg.env.round === r && b.msg.env.type === MSG.advertise && b.msg.env.sender !== this.#me).map(b => b.msg.env.sender))
    // only a peer already running rounds follows; one that has not started yet will start there
    if ((this.#current !== null || this.#standing.is === 'waiting') && set.size >= Math.max(1, this.manifest.params.threshold - 1) && (this.#current?.round ?? -1) < r && r >= (this.#o.firstRound ?? 0)) {
      if (this.#current !== null && !this.#current.done) this.#actions.push({ type: 'aborted', reason: `round ${this.#current.round} abandoned: ${set.size} members are in round ${r}` })
      this.start(this.#now, r)
      // rounds were certified while this peer was away (or it would not be this far behind): fetch them
      if (r > this.ledger.lastRound + 1) this.#requestSync(r - 1, [...set])
    }
  }

  #lateCommit (msg: OpenedMessage<CommitBody>): void {
    if (!commitSignatureValid(this.ledger.memberKeys, msg.env.sender, msg.env.body)) return
    const r = msg.env.round
    // one tally per round, none for a round the ledger holds by now, a few rounds at most
    for (const k of this.#lateCommits.keys()) if (k <= this.ledger.lastRound) this.#lateCommits.delete(k)
    let tally = this.#lateCommits.get(r)
    if (tally === undefined) {
      if (this.#lateCommits.size >= LATE_ROUNDS) this.#lateCommits.delete(Math.min(...this.#lateCommits.keys()))
      tally = new CommitTally({ maxHeaders: 64 })
      this.#lateCommits.set(r, tally)
      // what the round heard before it gave up counts too, this peer's own signature among it: where
      // the live members are exactly a quorum, the late signatures alone never are one
      for (const [sender, body] of [this.#current, ...this.#recent].find(x => x?.round === r)?.commitsHeard() ?? []) tally.record(sender, body)
    }
    const key = tally.record(msg.env.sender, msg.env.body)
    const cert = key === null ? null : tally.certificateFor(key, this.manifest.params.quorum)
    if (cert === null) return
    const appended = orReject(() => this.ledger.append(cert), e => this.#rejected(e, msg.env.sender))
    if (appended === undefined) return
    this.#lateCommits.delete(r)
    if (appended.header.kind === 'update') {
      this.#pendingState = { hash: hex(appended.header.stateHash), prev: appended.hash }
      this.#actions.push({ type: 'fetch-blob', hash: hex(appended.header.stateHash), owner: msg.env.sender, what: 'state' })
    } else this.#followHead() // a statistics or eval certificate leaves the state as it was
    this.#actions.push({ type: 'caught-up', round: appended.header.round })
    this.#askInput()
  }

  #rejected (e: ProtocolError, peer: number): void { this.#actions.push({ type: 'reject', code: e.code, reason: e.message, peer }) }

  /** Move the round's actions out, and end/start rounds. */
  #collect (): void {
    const round = this.#current
    if (round === null) return
    for (const a of round.takeActions()) {
      this.#actions.push(a)
      if (a.type === 'certified') {
        orReject(() => this.ledger.append(a.certificate), e => this.#actions.push({ type: 'reject', code: e.code, reason: `own certificate: ${e.message}`, peer: -1 }))
        if (a.state !== null) {
          this.state = a.state
          this.#actions.push({ type: 'publish-blob', hash: hex(a.header.stateHash), data: a.stateBytes ?? encodeState(a.state), what: 'state', round: a.header.round })
        } else if (a.header.kind === 'update') {
          // a quorum certified a state this peer did not compute: fetch it
          this.#pendingState = { hash: hex(a.header.stateHash), prev: headerHash(a.certificate.header) }
          this.#actions.push({ type: 'fetch-blob', hash: hex(a.header.stateHash), owner: a.certificate.signatures[0][0], what: 'state' })
        }
      }
    }
    if (round.done && this.#current === round) this.start(this.#now, round.round + 1)
  }
}
