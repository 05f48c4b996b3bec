/**
 * The hospital node: drives the round protocol (src/protocol) over libp2p, trains locally
 * (src/training), and keeps everything it must not lose in its data directory.
 *
 * Gossip carries the signed control messages (topic /medmesh/<consortium id>/v1, each message
 * validated before gossipsub forwards it, so peer scoring penalises a sender of bad ones);
 * masked vectors and certified states travel as blobs on /medmesh/blob/1.0.0; a node that was
 * away asks a member for the certificates it missed on /medmesh/ledger/1.0.0, and checks them.
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { PrivacyBudget, systemRandom, type NodeIdentity } from '../privacy/index.ts'
import { ProtocolPeer, type PeerAction } from '../protocol/peer.ts'
import { openMessage } from '../protocol/messages.ts'
import { ProtocolError } from '../protocol/errors.ts'
import { consortiumId, type Manifest } from '../protocol/manifest.ts'
import { Ledger, decodeCertificate, encodeCertificate, type LedgerEntry } from '../protocol/ledger.ts'
import { hex } from '../protocol/codec.ts'
import { stateHash, type GlobalState } from '../protocol/model.ts'
import { Site, loadSiteData } from '../training/site.ts'
import { formatMetrics } from '../training/metrics.ts'
import { describeBackend } from '../training/backend.ts'
import type { NodeConfig } from './config.ts'
import { ConfigError, resolveConfig } from './config.ts'
import { DataDir } from './datadir.ts'
import { isStorageError } from './fsutil.ts'
import { createHost, isMember, tagMembers, type MedmeshHost } from './host.ts'
import { createMetrics, type NodeMetrics } from './metrics.ts'
import { startHttp } from './http.ts'
import { createLogger, type Logger } from './logger.ts'
import {
  BLOB_PROTOCOL, LEDGER_PROTOCOL, checkBlob, parseBlobHeader, parseBlobRequest, parseLedgerHeader, parseLedgerRequest, readFramed, sendFramed
} from './wire.ts'
import type { Server } from 'node:http'

const TICK_MS = 100
const FETCH_RETRY_MS = 500
const MEMBER_REDIAL_MS = 3000

export class MedmeshNode {
  readonly config: NodeConfig
  readonly log: Logger
  readonly dir: DataDir
  readonly identity: NodeIdentity
  readonly manifest: Manifest
  readonly metrics: NodeMetrics
  readonly topic: string
  host!: MedmeshHost
  peer!: ProtocolPeer
  site!: Site
  http: { server: Server, port: number } | null = null
  #timer: NodeJS.Timeout | null = null
  #blobs = new Map<string, { data: Uint8Array, round: number }>()
  #fetching = new Set<string>()
  #own: Uint8Array[] = []
  #ownRound = -1
  #phase = 'starting'
  #phaseSince = Date.now()
  #stopping = false
  #stopScheduled = false
  #stopped: Promise<void>
  #resolveStopped!: () => void
  #training = false
  #trainFor = -1
  #persisted = new Set<number>()
  #syncing = false
  /** hash of the certified model last written to the data directory */
  #stateSaved = ''
  readonly #denied = new Set<string>()
  #watchdog: NodeJS.Timeout | null = null
  /** set when the data directory could not be written: the node stopped rather than go on without a record */
  storageError: string | null = null

  private constructor (config: NodeConfig) {
    this.config = config
    this.log = createLogger(config.logLevel, 'medmesh')
    this.dir = new DataDir(config.dataDir)
    this.identity = this.dir.identity()
    this.manifest = this.dir.manifest()
    if (!this.manifest.members.some(m => m.peerId === this.identity.peerId)) throw new ConfigError(`this node (${this.identity.peerId}) is not a member of consortium '${this.manifest.name}'`)
    this.metrics = createMetrics()
    this.topic = `/medmesh/${hex(consortiumId(this.manifest))}/v1`
    this.#stopped = new Promise(resolve => { this.#resolveStopped = resolve })
  }

  static async start (config: NodeConfig): Promise<MedmeshNode> {
    const node = new MedmeshNode(config)
    await node.#start()
    return node
  }

  /** Resolves when the node has stopped (after `stop()` or after its configured rounds). */
  get stopped (): Promise<void> { return this.#stopped }

  async #start (): Promise<void> {
    const { manifest, log } = this
    const leftovers = this.dir.removeTemporaryFiles()
    if (leftovers > 0) log.warn(`removed ${leftovers} temporary file(s) left by an interrupted write`)
    let ledger = this.dir.ledger(manifest)
    for (const e of ledger.entries) this.#persisted.add(e.header.round)
    log.info({ peerId: this.identity.peerId, consortium: manifest.name, members: manifest.members.length, certified: ledger.entries.length }, `ledger verified: ${ledger.entries.length} certified round(s)`)
    const dp = manifest.params.dp
    const budget = dp.enabled ? (this.dir.budget() ?? new PrivacyBudget(dp.epsilon, dp.delta)) : null
    this.site = await Site.open(manifest, loadSiteData(this.config.dataset, this.config.shard), {
      epochs: this.config.epochs, batchSize: this.config.batchSize, learningRate: this.config.learningRate, seed: this.identity.exportSeed().slice(0, 32), budget
    })
    log.info(describeBackend(this.site.backend!))
    let state: GlobalState = this.site.initialState()
    const updates = ledger.entries.filter(e => e.header.kind === 'update')
    const withState = [...updates].reverse().find(e => this.dir.stateBytes(hex(e.header.stateHash)) !== null)
    if (withState !== undefined) state = this.dir.state(hex(withState.header.stateHash))!
    if (withState !== undefined && withState === updates[updates.length - 1]) this.#stateSaved = hex(withState.header.stateHash)
    if (updates.length > 0 && withState !== updates[updates.length - 1]) {
      // it stopped after storing a certificate but before it held the model it certifies (it was
      // still fetching it): go back to the last certificate whose model is here; the members
      // provide the rest again, checked as ever
      const keep = withState === undefined ? ledger.entries.filter(e => e.header.round < updates[0].header.round) : ledger.entries.filter(e => e.header.round <= withState.header.round)
      log.warn(`the model certified in round ${updates[updates.length - 1].header.round} is not in ${this.dir.path('states')}: resuming from round ${keep.length > 0 ? keep[keep.length - 1].header.round : 'none'} and catching up from the members`)
      ledger = Ledger.verify(manifest, keep.map(e => e.certificate))
      this.#persisted.clear()
      for (const e of ledger.entries) this.#persisted.add(e.header.round)
    }
    const lastStats = [...ledger.entries].reverse().find(e => e.header.kind === 'stats')
    if (lastStats !== undefined) this.site.useStatistics(new Float64Array(new Uint8Array(lastStats.header.extra).buffer))
    this.peer = new ProtocolPeer({
      manifest, identity: this.identity, rng: systemRandom, initialState: this.site.initialState(), ledger, state,
      kindOf: r => r === 0 ? 'stats' : 'update', inputFor: () => null,
      // with --rounds N: no round after the Nth model round, not even one it would only begin
      finished: () => this.#allRoundsCertified(),
      // the round this node was in when it stopped may hold its signed commit: never run it again
      firstRound: (this.dir.lastRound() ?? -1) + 1
    })

    if (this.config.http !== 'off') {
      this.http = await startHttp(this.config.http, () => this.status(), this.metrics)
      log.info(`status on http://${this.config.http.replace(/:\d+$/, '')}:${this.http.port}/status`)
    }
    for (const id of this.config.deny) this.#denied.add(id)
    this.host = await createHost(this.config, this.identity, manifest, {
      denied: this.#denied,
      onRefused: (peer, how) => { this.metrics.refused.inc(); log.warn({ peer }, `refused ${how}: not a member of the consortium`) }
    })
    await this.host.handle(BLOB_PROTOCOL, async (stream, connection) => this.#serveBlob(stream, connection.remotePeer), { maxInboundStreams: 64 })
    await this.host.handle(LEDGER_PROTOCOL, async (stream, connection) => this.#serveLedger(stream, connection.remotePeer), { maxInboundStreams: 16 })
    const pubsub = this.host.services.pubsub
    pubsub.topicValidators.set(this.topic, (from, msg) => this.#validate(from, msg.data))
    pubsub.subscribe(this.topic)
    pubsub.addEventListener('message', (evt) => {
      if (evt.detail.topic !== this.topic) return
      this.peer.receive(evt.detail.data, Date.now())
      this.#drain()
    })
    pubsub.addEventListener('subscription-change', (evt) => {
      if (evt.detail.subscriptions.some(s => s.topic === this.topic && s.subscribe) && isMember(manifest, evt.detail.peerId)) this.#republish()
    })
    this.host.addEventListener('peer:connect', (evt) => { log.info({ peer: evt.detail.toString() }, 'member connected'); this.#countPeers() })
    this.host.addEventListener('peer:disconnect', (evt) => { log.info({ peer: evt.detail.toString() }, 'member disconnected'); this.#countPeers() })
    await tagMembers(this.host, manifest, this.identity.peerId)
    log.info({ addresses: this.host.getMultiaddrs().map(a => a.toString()) }, 'listening')
    // libp2p re-dials a lost member with growing backoff; after a long outage that can mean minutes
    // of waiting once the network is back: look for missing members at a steady pace as well
    this.#watchdog = setInterval(() => { void this.#dialMissingMembers() }, MEMBER_REDIAL_MS)

    await this.#waitForMembers()
    await this.#catchUp()
    if (this.#stopIfDone()) return
    this.peer.start(Date.now())
    this.#drain()
    let lastTick = Date.now()
    this.#timer = setInterval(() => {
      const now = Date.now()
      // after the thread was blocked (training), let the queued network input in before any deadline fires
      const blocked = now - lastTick > 5 * TICK_MS
      lastTick = now
      if (blocked) return
      this.peer.tick(now)
      this.#drain()
    }, TICK_MS)
  }

  #validate (from: PeerId, data: Uint8Array): TopicValidatorResult {
    if (!isMember(this.manifest, from)) { this.log.warn({ peer: from.toString() }, 'gossip from a non-member dropped'); return TopicValidatorResult.Reject }
    try {
      openMessage(data, { consortium: this.peer.ledger.consortium, memberKeys: this.peer.ledger.memberKeys })
      return TopicValidatorResult.Accept
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e
      this.metrics.rejected.inc({ code: e.code })
      this.log.warn({ peer: from.toString(), code: e.code }, `message rejected: ${e.message}`)
      return TopicValidatorResult.Reject
    }
  }

  #countPeers (): void {
    const members = new Set(this.manifest.members.map(m => m.peerId))
    this.metrics.peers.set(this.host.getPeers().filter(p => members.has(p.toString())).length)
  }

  async #dialMissingMembers (): Promise<void> {
    if (this.#stopping) return
    const connected = new Set(this.host.getPeers().map(p => p.toString()))
    for (const m of this.manifest.members) {
      if (m.peerId === this.identity.peerId || connected.has(m.peerId) || this.#denied.has(m.peerId)) continue
      try { await this.host.dial(peerIdFromString(m.peerId), { signal: AbortSignal.timeout(MEMBER_REDIAL_MS) }) } catch { /* not reachable yet */ }
    }
  }

  /**
   * Re-read the deny list (config.json and MEDMESH_DENY): members on it are disconnected and
   * refused until they are taken off it. Operators use it to quarantine a member; tests use it
   * to partition the network.
   */
  reloadDenyList (): void {
    let deny: string[]
    try { deny = resolveConfig(this.config.dataDir, {}).deny } catch (e) { this.log.error(`deny list not reloaded: ${(e as Error).message}`); return }
    const next = new Set(deny)
    const added = deny.filter(id => !this.#denied.has(id))
    const removed = [...this.#denied].filter(id => !next.has(id))
    this.#denied.clear()
    for (const id of next) this.#denied.add(id)
    for (const id of added) void this.host.hangUp(peerIdFromString(id)).catch(() => {})
    this.log.info({ denied: deny.length }, `deny list reloaded: ${added.length} member(s) added, ${removed.length} removed`)
    if (removed.length > 0) void this.#dialMissingMembers()
  }

  async #waitForMembers (): Promise<void> {
    const want = this.config.minPeers > 0 ? this.config.minPeers : this.manifest.params.threshold - 1
    const deadline = Date.now() + Math.max(30_000, this.manifest.params.timeouts.roundMs)
    while (!this.#stopping && Date.now() < deadline) {
      const subscribed = this.host.services.pubsub.getSubscribers(this.topic).filter(p => isMember(this.manifest, p)).length
      if (subscribed >= want) return
      await sleep(200)
    }
    if (!this.#stopping) this.log.warn(`fewer than ${want} members reachable after waiting; starting anyway`)
  }

  /** Ask connected members for certificates this node has not seen, and adopt them if they verify. */
  async #catchUp (prefer: number[] = []): Promise<void> {
    if (this.#syncing) return
    this.#syncing = true
    try { await this.#catchUpFrom(prefer) } finally { this.#syncing = false }
  }

  async #catchUpFrom (prefer: number[]): Promise<void> {
    const preferred = new Set(prefer.map(i => this.manifest.members[i]?.peerId))
    const peers = this.host.getPeers().filter(p => isMember(this.manifest, p)).sort((a, b) => Number(preferred.has(b.toString())) - Number(preferred.has(a.toString())))
    for (const p of peers) {
      try {
        const stream = await this.host.dialProtocol(p, LEDGER_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
        await sendFramed(stream, { from: this.peer.ledger.lastRound })
        const { header, body } = await readFramed(stream, 64 * 1024 * 1024, parseLedgerHeader, h => h.n)
        if (header.certs.length === 0) continue
        this.peer.catchUp(header.certs.map(decodeCertificate), body.length > 0 ? body : null, Date.now())
        this.#drain()
        this.#persist()
        this.log.info({ peer: p.toString() }, `caught up to round ${this.peer.ledger.lastRound} from a member (certificates and state verified)`)
        return
      } catch (e) {
        if (isStorageError(e)) { this.#storageFailed(e as NodeJS.ErrnoException); return }
        this.log.warn({ peer: p.toString() }, `catch-up from this member failed: ${(e as Error).message}`)
      }
    }
  }

  async #serveLedger (stream: import('@libp2p/interface').Stream, remote: PeerId): Promise<void> {
    if (!isMember(this.manifest, remote)) { stream.abort(new Error('not a member')); return }
    try {
      const { header: from } = await readFramed(stream, 1024, parseLedgerRequest, () => 0)
      const entries = this.peer.ledger.entries.filter(e => e.header.round > from)
      const lastUpdate = [...this.peer.ledger.entries].reverse().find(e => e.header.kind === 'update')
      const state = lastUpdate !== undefined && entries.length > 0 ? (this.dir.stateBytes(hex(lastUpdate.header.stateHash)) ?? new Uint8Array(0)) : new Uint8Array(0)
      await sendFramed(stream, { c: entries.map(e => encodeCertificate(e.certificate)), n: state.length }, state)
    } catch (e) {
      this.log.warn({ peer: remote.toString() }, `ledger request failed: ${(e as Error).message}`)
      stream.abort(e as Error)
    }
  }

  async #serveBlob (stream: import('@libp2p/interface').Stream, remote: PeerId): Promise<void> {
    if (!isMember(this.manifest, remote)) { this.log.warn({ peer: remote.toString() }, 'blob request from a non-member refused'); stream.abort(new Error('not a member')); return }
    try {
      const { header: h } = await readFramed(stream, 1024, parseBlobRequest, () => 0)
      const key = hex(h)
      const data = this.#blobs.get(key)?.data ?? this.dir.stateBytes(key)
      if (data === null || data === undefined) { await sendFramed(stream, { n: -1 }); return }
      this.metrics.bytesSent.inc({ kind: 'blob' }, data.length)
      await sendFramed(stream, { n: data.length }, data)
    } catch (e) {
      this.log.warn({ peer: remote.toString() }, `blob request failed: ${(e as Error).message}`)
      stream.abort(e as Error)
    }
  }

  async #fetchBlob (hashHex: string, owner: number): Promise<void> {
    if (this.#fetching.has(hashHex)) return
    this.#fetching.add(hashHex)
    const round = this.peer.current?.round
    try {
      while (!this.#stopping && this.peer.current?.round === round) {
        const ownerId = this.manifest.members[owner]?.peerId
        const candidates = [...this.host.getPeers()].filter(p => isMember(this.manifest, p)).sort((a, b) => (a.toString() === ownerId ? -1 : b.toString() === ownerId ? 1 : 0))
        for (const p of candidates) {
          try {
            const stream = await this.host.dialProtocol(p, BLOB_PROTOCOL, { signal: AbortSignal.timeout(30_000) })
            await sendFramed(stream, { h: Uint8Array.from(Buffer.from(hashHex, 'hex')) })
            const { header: n, body } = await readFramed(stream, 1024, parseBlobHeader, n => n)
            if (n < 0) continue
            if (!checkBlob(hashHex, body)) { this.log.warn({ peer: p.toString() }, 'a member served a blob that does not match its hash'); continue }
            // content-addressed: whoever holds a blob may serve it
            this.#blobs.set(hashHex, { data: body, round: round ?? -1 })
            this.peer.receiveBlob(hashHex, body, Date.now())
            this.#drain()
            // it may have been the certified model this node lacked: keep it
            try { this.#persist() } catch (e) { if (!isStorageError(e)) throw e; this.#storageFailed(e as NodeJS.ErrnoException); return }
            this.#stopIfDone()
            return
          } catch (e) {
            this.log.debug({ peer: p.toString() }, `blob fetch failed: ${(e as Error).message}`)
          }
        }
        await sleep(FETCH_RETRY_MS)
      }
    } finally {
      this.#fetching.delete(hashHex)
    }
  }

  #republish (): void {
    if (this.peer.current === null || this.#ownRound !== this.peer.current.round) return
    for (const wire of this.#own) void this.host.services.pubsub.publish(this.topic, wire).catch(() => {})
  }

  /** Carry out what the protocol asked for. */
  #drain (): void {
    for (const a of this.peer.takeActions()) this.#act(a)
  }

  #act (a: PeerAction): void {
    try {
      this.#carryOut(a)
    } catch (e) {
      if (!isStorageError(e)) throw e
      this.#storageFailed(e as NodeJS.ErrnoException)
    }
  }

  /**
   * The data directory cannot be written (full disk, read-only mount, permissions). Going on would
   * mean certifying rounds this node could not prove after a restart, or forgetting which round it
   * signed: stop instead. Every file is written whole or not at all, so what is there stays valid.
   */
  #storageFailed (e: NodeJS.ErrnoException): void {
    if (this.storageError !== null) return
    this.storageError = `${e.code ?? 'error'}: ${e.message}`
    this.log.error({ code: e.code, dataDir: this.dir.root }, `cannot write to the data directory (${e.code ?? e.message}): stopping; files already there are intact — free space or fix permissions, then start again`)
    void this.stop()
  }

  #carryOut (a: PeerAction): void {
    switch (a.type) {
      case 'broadcast':
        if (this.#ownRound !== this.peer.current?.round) { this.#own = []; this.#ownRound = this.peer.current?.round ?? -1 }
        this.#own.push(a.wire)
        this.metrics.bytesSent.inc({ kind: 'gossip' }, a.wire.length)
        void this.host.services.pubsub.publish(this.topic, a.wire).catch(e => this.log.warn(`publish failed: ${(e as Error).message}`))
        break
      case 'publish-blob':
        this.#blobs.set(a.hash, { data: a.data, round: this.peer.current?.round ?? -1 })
        break
      case 'fetch-blob':
        void this.#fetchBlob(a.hash, a.owner)
        break
      case 'reject':
        this.metrics.rejected.inc({ code: a.code })
        this.log.warn({ member: a.peer, code: a.code }, `rejected: ${a.reason}`)
        break
      case 'phase': {
        // train once the masking set is agreed and includes this node: its input is due now, and
        // training (which blocks this thread) for a round it cannot join would only make it late
        // for the next one too
        if (a.phase === 'masked-input' && this.#trainFor === this.peer.current?.round && this.peer.current.inputExpected) { this.#scheduleTraining(this.#trainFor); this.#trainFor = -1 }
        const now = Date.now()
        this.metrics.phaseSeconds.set({ phase: this.#phase }, (now - this.#phaseSince) / 1000)
        this.#phase = a.phase
        this.#phaseSince = now
        this.log.info(`round ${a.round}: ${a.phase} — ${a.detail}`)
        this.dir.saveRound({ round: a.round, phase: a.phase })
        break
      }
      case 'round-started':
        this.metrics.round.set(a.round)
        for (const [h, b] of this.#blobs) if (b.round < a.round - 1) this.#blobs.delete(h)
        if (a.kind === 'stats') { const s = this.site.statsInput(); this.peer.setInput(s.values, s.count) } else this.#trainFor = a.round
        break
      case 'certified':
        this.metrics.certified.inc()
        this.#persist()
        this.#afterCertified(a.header.round)
        break
      case 'aborted':
        this.metrics.aborted.inc()
        this.log.warn(`round aborted: ${a.reason}`)
        // perhaps the others certified it and this node missed their commits (members that ran
        // their last round halt, so no later round would tell): ask them
        if (!this.#stopping) void this.#catchUp()
        break
      case 'caught-up':
        this.#persist()
        // certificates learnt by catching up count towards --rounds as much as those it signed:
        // without this, two members that both caught up went on past the last round
        this.#stopIfDone()
        break
      case 'sync':
        // a quorum certified a round on a ledger head this node lacks: it missed certificates
        this.log.info({ round: a.round }, `members are ahead (round ${a.round} certified on a head this node lacks): catching up`)
        void this.#catchUp(a.from)
        break
    }
  }

  #scheduleTraining (round: number): void {
    if (this.#training) return
    this.#training = true
    // let the network run first: training blocks this thread while it lasts
    setTimeout(() => {
      try {
        if (this.#stopping || this.peer.current?.round !== round) return
        const update = this.site.update(this.peer.state, round)
        const t = this.site.lastTrain!
        this.log.info(`round ${round}: trained ${t.examples} images in ${t.seconds.toFixed(1)} s (${t.imagesPerSecond.toFixed(0)} images/s)${t.epsilon !== null ? `, ε spent ${t.epsilon.toFixed(3)}` : ''}${t.stoppedEarly !== null ? ` — ${t.stoppedEarly}` : ''}`)
        if (this.site.options.budget !== null) {
          try { this.dir.saveBudget(this.site.options.budget) } catch (e) { if (!isStorageError(e)) throw e; this.#storageFailed(e as NodeJS.ErrnoException); return }
          this.metrics.epsilon.set(this.site.options.budget.spent.epsilon)
        }
        this.peer.setInput(update.values, update.count)
        this.#drain()
      } finally {
        this.#training = false
      }
    }, 50)
  }

  /** Write every certificate (and the latest certified state) not yet on disk. */
  #persist (): void {
    for (const e of this.peer.ledger.entries) {
      if (this.#persisted.has(e.header.round)) continue
      this.dir.saveCertificate(e.header.round, e.certificate)
      this.#persisted.add(e.header.round)
    }
    const last = [...this.peer.ledger.entries].reverse().find(e => e.header.kind === 'update')
    if (last !== undefined && this.#stateSaved !== hex(last.header.stateHash) && hex(stateHash(this.peer.state)) === hex(last.header.stateHash)) {
      this.dir.saveState(this.peer.state)
      this.#stateSaved = hex(last.header.stateHash)
    }
    const stats = [...this.peer.ledger.entries].reverse().find(e => e.header.kind === 'stats')
    if (stats !== undefined && this.site.norm === undefined) this.site.useStatistics(new Float64Array(new Uint8Array(stats.header.extra).buffer))
  }

  #afterCertified (round: number): void {
    const entry = this.peer.ledger.last as LedgerEntry
    this.log.info({ round, survivors: entry.header.survivors.length, certificate: hex(entry.hash).slice(0, 16), model: hex(entry.header.stateHash).slice(0, 16) }, `round ${round} certified (${entry.header.kind})`)
    if (entry.header.kind === 'update') {
      const m = this.site.evaluate(this.peer.state, 'val')
      if (m !== null) this.log.info(`round ${round}: validation ${formatMetrics(m)}`)
    }
    this.#stopIfDone()
  }

  /** with --rounds N: N model rounds are in the ledger (signed here or learnt by catching up) */
  #allRoundsCertified (): boolean {
    return this.config.rounds > 0 && this.peer.ledger.entries.filter(e => e.header.kind === 'update').length >= this.config.rounds
  }

  #stopIfDone (): boolean {
    if (this.#allRoundsCertified() && !this.#stopping && !this.#stopScheduled) {
      // a certificate learnt late arrives before its model: stop once the model is here and saved
      const last = [...this.peer.ledger.entries].reverse().find(e => e.header.kind === 'update')
      if (last !== undefined && this.#stateSaved !== hex(last.header.stateHash)) return false
      this.#stopScheduled = true
      this.peer.halt()
      this.log.info(`${this.config.rounds} round(s) certified: stopping`)
      // linger so that members still finishing can fetch the certified state from us
      setTimeout(() => { void this.stop() }, 3000)
      return true
    }
    return false
  }

  status (): Record<string, unknown> {
    const last = this.peer?.ledger.last
    return {
      peerId: this.identity.peerId,
      consortium: this.manifest.name,
      consortiumId: hex(consortiumId(this.manifest)),
      members: this.manifest.members.length,
      connectedMembers: this.host?.getPeers().filter(p => isMember(this.manifest, p)).length ?? 0,
      round: this.peer?.current?.round ?? null,
      phase: this.#phase,
      certifiedRounds: this.peer?.ledger.entries.length ?? 0,
      lastCertificate: last === undefined ? null : { round: last.header.round, kind: last.header.kind, hash: hex(last.hash), survivors: last.header.survivors },
      modelHash: this.peer === undefined ? null : hex(stateHash(this.peer.state)),
      epsilonSpent: this.site?.options.budget?.spent.epsilon ?? null,
      backend: this.site?.backend?.name ?? null,
      addresses: this.host?.getMultiaddrs().map(a => a.toString()) ?? []
    }
  }

  async stop (): Promise<void> {
    if (this.#stopping) return await this.#stopped
    this.#stopping = true
    if (this.#timer !== null) clearInterval(this.#timer)
    if (this.#watchdog !== null) clearInterval(this.#watchdog)
    const round = this.peer?.current?.round
    if (round !== undefined) try { this.dir.saveRound({ round, phase: 'stopped' }) } catch {}
    try { await this.host?.stop() } catch {}
    await new Promise<void>(resolve => this.http === null ? resolve() : this.http.server.close(() => resolve()))
    // training may be under way in a timer that has not fired yet: it checks #stopping first
    try { this.site?.dispose() } catch {}
    this.log.info('stopped')
    this.#resolveStopped()
  }
}

function sleep (ms: number): Promise<void> { return new Promise(resolve => setTimeout(resolve, ms)) }

