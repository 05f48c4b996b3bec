/**
 * The hospital node: one protocol peer (src/protocol, pure) driven over libp2p by small services,
 * each given only what it needs (docs/ARCHITECTURE.md), all on one clock. This file composes
 * them: it starts them in order, carries out each action of the peer with one service call, holds
 * the network's input for the peer while this node trains, and stops them in the reverse order,
 * then the site, then the host. Its parts are built by services/compose.ts (a test gives stubs).
 */
import type { Startable } from '@libp2p/interface'
import type { ProtocolPeer, PeerAction } from '../protocol/peer.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { hex } from '../protocol/codec.ts'
import type { TrainingSite } from '../training/worker-site.ts'
import { systemClock, within, type Clock } from './clock.ts'
import type { NodeConfig } from './config.ts'
import type { Logger } from './logger.ts'
import type { NodeStore } from './services/index.ts'
import type { NodeHooks, NodeServices } from './services/compose.ts'

type Opened = Parameters<ProtocolPeer['receiveOpened']>[0]

export interface NodeComponents {
  clock: Clock
  log: Logger
  manifest: Pick<Manifest, 'members'>
  peer: Pick<ProtocolPeer, 'ledger' | 'state' | 'round' | 'absent' | 'start' | 'tick' | 'halt' | 'takeActions' | 'receiveOpened' | 'receiveBlob' | 'setInput' | 'catchUp'>
  store: Pick<NodeStore, 'guard' | 'persist' | 'saveRound' | 'unwritable'>
  /** the training site: its workers close after the services stop */
  site: Pick<TrainingSite, 'close'>
  /** the libp2p host, listening already: `ready` once the services have started (members tagged), stopped last */
  host: { ready: () => Promise<void>, addresses: () => string[], stop: () => Promise<void> }
  /** the encrypted-inference listener, made and started after the host is ready, if this node serves it */
  inference: (() => Promise<Startable>) | null
  services: (node: NodeHooks) => NodeServices
}

export interface NodeInit {
  /** members to wait for before the first round, and for how long at most */
  peers: number
  waitMs: number
  /** each part of a stop gets at most this long: SIGTERM ends a node within about two seconds */
  stopMs?: number
}

export class MedmeshNode {
  readonly #c: NodeComponents
  readonly #init: NodeInit
  readonly #s: NodeServices
  #inference: Startable | null = null
  #stopping: Promise<void> | null = null
  readonly #stopped = Promise.withResolvers<void>()
  /** gossip for the peer that came while this node trained (see #release) */
  #held: Opened[] = []

  constructor (components: NodeComponents, init: NodeInit) {
    [this.#c, this.#init] = [components, init]
    this.#s = components.services({
      deliver: msg => { if (this.#training()) this.#held.push(msg); else { this.#c.peer.receiveOpened(msg, this.#now()); this.#drain() } },
      setInput: (values, count) => { this.#c.peer.setInput(values, count, this.#now()); this.#drain() },
      trainingEnded: () => this.#release(),
      adopt: (certs, state) => { this.#c.peer.catchUp(certs, state, this.#now()); this.#drain(); this.#persist() },
      tick: now => { if (!this.#training()) { this.#c.peer.tick(now); this.#drain() } },
      stop: () => { void this.stop() }
    })
  }

  /** Start a node on its data directory; it runs until `stop()` (or its configured rounds are done). */
  static async start (config: NodeConfig, clock: Clock = systemClock): Promise<MedmeshNode> {
    const { components, init } = await (await import('./services/compose.ts')).openNode(config, clock)
    const node = new MedmeshNode(components, init); await node.start(); return node
  }

  /** Resolves when the node has stopped (after `stop()` or after its configured rounds). */
  get stopped (): Promise<void> { return this.#stopped.promise }
  /** the chain of certificates this node holds */
  get ledger (): ProtocolPeer['ledger'] { return this.#c.peer.ledger }
  /** set when the data directory could not be written: the node stopped rather than go on without a record */
  get storageError (): string | null { return this.#c.store.unwritable }

  async start (): Promise<void> {
    const { peer, host, log } = this.#c
    const s = this.#s
    s.training.statisticsCertified(peer.ledger.statistics)
    for (const x of Object.values(s) as Startable[]) if (x !== s.ticker) await x.start()
    await host.ready()
    if (this.#c.inference !== null) { this.#inference = await this.#c.inference(); await this.#inference.start() }
    log.info({ addresses: host.addresses() }, 'listening')
    // a node restarted after it finished says so now, not after waiting for members it no longer needs
    if (s.stopPolicy.check()) return
    await s.membership.waitFor(this.#init.peers, () => s.gossip.subscribers().length, this.#init.waitMs)
    await s.ledgerSync.catchUp()
    if (s.stopPolicy.check() || this.#stopping !== null) return
    peer.start(this.#now())
    this.#drain()
    s.ticker.start()
  }

  #now (): number { return this.#c.clock.now() }

  /**
   * While this node trains, its protocol peer waits for its own input: gossip is still validated
   * and relayed, blobs served and /status answered, but messages reach the peer, and its timers
   * run, only once the input is handed over, so a slow hospital is late (and waited for next
   * time) rather than cut out of the round it is training for.
   */
  #training (): boolean { return this.#s.training.training() != null }
  #release (): void {
    const held = this.#held
    this.#held = []
    for (const msg of held) this.#c.peer.receiveOpened(msg, this.#now())
    this.#drain()
  }

  /** Carry out what the protocol asked for. */
  #drain (): void {
    const actions = this.#c.peer.takeActions()
    // a node that is stopping sends nothing more (a training result that lands now is dropped)
    if (this.#stopping !== null) return
    for (const a of actions) this.#c.store.guard(() => this.#act(a))
  }

  /** Each action of the protocol peer, with one service call. */
  #act (a: PeerAction): void {
    const s = this.#s
    switch (a.type) {
      case 'broadcast': return s.gossip.broadcast(a.wire, a.round)
      case 'publish-blob': return s.blobs.publish(a.hash, a.data, a.what, a.round)
      case 'fetch-blob': return void this.#fetch(a.hash, a.owner, a.what)
      case 'reject': return s.status.rejected(a.code, a.peer, a.reason)
      case 'phase':
        s.status.phaseEntered(a.round, a.phase, a.detail)
        this.#c.store.saveRound(a.round, a.phase) // before any message of the phase leaves: a restart never re-runs this round
        return s.training.phaseEntered()
      case 'round-started':
        s.status.roundStarted(a.round, this.#c.peer.absent)
        s.blobs.prune(a.round - 1)
        return s.training.roundStarted(a.round, a.kind)
      case 'certified':
        this.#persist()
        s.status.certified(this.#c.peer.ledger.last!)
        if (a.header.kind === 'update') s.training.modelCertified(a.header.round, hex(a.header.stateHash))
        return void s.stopPolicy.check()
      case 'aborted':
        s.status.aborted(a.reason)
        // unless done: perhaps the others certified it and this node missed their commits (members that ran their last round halt, so no later round would tell)
        return void (!s.stopPolicy.check() && this.#stopping === null && s.ledgerSync.catchUp())
      case 'caught-up':
        this.#persist()
        // certificates learnt by catching up count towards --rounds as much as those it signed
        return void s.stopPolicy.check()
      case 'sync':
        this.#c.log.info({ round: a.round }, `members are ahead (round ${a.round} certified on a head this node lacks): catching up`)
        return void s.ledgerSync.catchUp(a.from.map(i => this.#c.manifest.members[i]?.peerId).filter((p): p is string => p !== undefined))
    }
  }

  async #fetch (hash: string, owner: number, what: 'masked-vector' | 'state'): Promise<void> {
    const { peer } = this.#c
    const round = peer.round?.number ?? -1
    const wanted = (): boolean => this.#stopping === null && (peer.round?.number ?? -1) === round
    const body = await this.#s.blobs.fetch({ hash, what, round, preferred: this.#c.manifest.members[owner]?.peerId, wanted })
    if (body === null) return
    peer.receiveBlob(hash, body, this.#now(), true) // the blob exchange checked its hash
    this.#drain()
    this.#persist() // it may have been the certified model this node lacked: keep it
    this.#s.stopPolicy.check()
  }

  /** Certificates and the certified model to disk; the certified statistics to the site. */
  #persist (): void {
    const { peer, store } = this.#c
    store.guard(() => store.persist(peer.ledger, peer.state))
    this.#s.training.statisticsCertified(peer.ledger.statistics)
  }

  /** Re-read the deny list (config.json and MEDMESH_DENY): see the membership service. */
  reloadDenyList (): void { this.#s.membership.reloadDenyList() }

  async stop (): Promise<void> {
    this.#stopping ??= this.#stop()
    await this.#stopping
  }

  async #stop (): Promise<void> {
    const { peer, store, site, host, clock } = this.#c
    const ms = this.#init.stopMs ?? 1000
    const round = peer.round?.number
    // nothing leaves after the signal: the peer starts nothing, #drain sends nothing
    peer.halt()
    if (round !== undefined) try { store.saveRound(round, 'stopped') } catch {}
    // the services first, so that none acts on the site closing under it (a training cut short by the stop is no failure)
    await within(clock, ms, (async () => { for (const s of [this.#inference, ...(Object.values(this.#s) as Startable[]).reverse()]) try { await s?.stop() } catch {} })())
    // then the training workers: a node that stops does not wait for a training step to end
    await within(clock, ms, site.close())
    // libp2p closes its connections politely; a peer that does not answer must not hold the stop up
    await within(clock, ms, host.stop())
    this.#c.log.info('stopped')
    this.#stopped.resolve()
  }
}
