/**
 * The hospital node: one protocol peer (src/protocol, pure) driven over libp2p by small services,
 * each given only what it needs (docs/ARCHITECTURE.md): the node store, the training scheduler,
 * gossip, blob exchange, ledger sync, membership, the stop policy, the status endpoint and the
 * clock. This file composes them: it starts them in order, and carries out each action of the
 * peer with one service call.
 */
import type { Startable } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { NodeIdentity } from '../privacy/index.ts'
import { ProtocolPeer, type PeerAction } from '../protocol/peer.ts'
import { consortiumId, memberIndex, type Manifest } from '../protocol/manifest.ts'
import { hex } from '../protocol/codec.ts'
import { roundKind } from '../protocol/validation.ts'
import { ConfigError, resolveConfig, type NodeConfig } from './config.ts'
import { DataDir } from './datadir.ts'
import { createHost, dialBack, directAddresses, isMember, listenRelayed, memberLinks, relayedAddresses, sealAddressRecord, tagMembers, type MedmeshHost } from './host.ts'
import { createMetrics, type NodeMetrics } from './metrics.ts'
import { describeMaskKernel, installMaskKernel } from './mask-kernel.ts'
import { createLogger, type Logger } from './logger.ts'
import { peerLinks, streamNetwork } from './network.ts'
import { nodeRandomness, openSite } from './site.ts'
import type { TrainingSite } from '../training/worker-site.ts'
import {
  NodeStore, createAddressBook, createBlobExchange, createLedgerSync, createGossip, createMembership, createTrainingScheduler, createStopPolicy, createStatusService, createTicker,
  createReachability, createSiteReports, type SiteReports, type AddressBook, type Reachability, type BlobExchange, type LedgerSync, type Gossip, type Membership, type TrainingScheduler, type StopPolicy, type StatusService
} from './services/index.ts'

/** In the order they start; they stop in the reverse order, then the site (its training worker), then the host. */
interface Services { status: StatusService, membership: Membership, gossip: Gossip, addressBook: AddressBook, siteReports: SiteReports, reachability: Reachability, blobs: BlobExchange, ledgerSync: LedgerSync, training: TrainingScheduler, stopPolicy: StopPolicy, ticker: Startable }

export class MedmeshNode {
  readonly config: NodeConfig
  readonly log: Logger
  readonly identity: NodeIdentity
  readonly manifest: Manifest
  readonly metrics: NodeMetrics = createMetrics()
  readonly #store: NodeStore
  readonly #dir: DataDir
  #peer!: ProtocolPeer
  #host!: MedmeshHost
  #services!: Services
  #site!: TrainingSite
  #inference: Startable | null = null
  #stopping: Promise<void> | null = null
  readonly #stopped = Promise.withResolvers<void>()

  private constructor (config: NodeConfig) {
    this.config = config
    this.log = createLogger(config.logLevel, 'medmesh', config.logFormat)
    const dir = this.#dir = new DataDir(config.dataDir)
    this.identity = dir.identity()
    this.manifest = dir.manifest()
    if (memberIndex(this.manifest, this.identity.peerId) < 0) throw new ConfigError(`this node (${this.identity.peerId}) is not a member of consortium '${this.manifest.name}'`)
    this.#store = new NodeStore({ dir, log: this.log, unwritable: () => { void this.stop() } })
  }

  /** Start a node on its data directory; it runs until `stop()` (or its configured rounds are done). */
  static async start (config: NodeConfig): Promise<MedmeshNode> { const node = new MedmeshNode(config); await node.#start(); return node }

  /** Resolves when the node has stopped (after `stop()` or after its configured rounds). */
  get stopped (): Promise<void> { return this.#stopped.promise }
  /** the chain of certificates this node holds */
  get ledger (): ProtocolPeer['ledger'] { return this.#peer.ledger }
  /** set when the data directory could not be written: the node stopped rather than go on without a record */
  get storageError (): string | null { return this.#store.unwritable }

  async #start (): Promise<void> {
    const { manifest, log, config, metrics } = this
    const restored = this.#store.restore(manifest, this.identity.peerId)
    log.info(describeMaskKernel(installMaskKernel()))
    const randomness = nodeRandomness(config, this.identity.exportSeed(), log)
    const site = this.#site = await openSite(manifest, config, randomness, this.#store.budget(), log)
    const initial = { weights: site.initialWeights(), optimizer: [], step: 0 }
    const stopPolicy = createStopPolicy({ rounds: config.rounds, patience: manifest.params.validation.patience, ledger: () => this.#peer.ledger, round: () => this.#peer.round, modelSaved: () => this.#store.modelSaved(this.#peer.ledger), halt: () => this.#peer.halt(), stop: () => { void this.stop() }, log })
    this.#peer = new ProtocolPeer({
      manifest, identity: this.identity, rng: randomness.rng, initialState: initial, ledger: restored.ledger, state: restored.state ?? initial,
      kindOf: roundKind, inputFor: () => null, finished: stopPolicy.finished, firstRound: restored.firstRound,
      checkAll: config.checkAggregates
    })
    const denied = new Set(config.deny)
    this.#host = await createHost(config, this.identity, manifest, { denied, relaying: () => this.#services?.reachability.relaying() ?? true, onRefused: (peer, how) => { metrics.refused.inc(); log.warn({ peer }, `refused ${how}: not a member of the consortium`) } })
    this.#services = this.#compose(site, stopPolicy, denied)
    const { membership, gossip, ledgerSync, training, ticker } = this.#services
    training.statisticsCertified(restored.ledger.statistics)
    for (const s of Object.values(this.#services) as Startable[]) if (s !== ticker) await s.start()
    await tagMembers(this.#host, manifest, this.identity.peerId)
    if (config.inferenceListen.length > 0) {
      const { createInferenceHolder } = await import('./inference/holder.ts')
      this.#inference = await createInferenceHolder({ dataDir: config.dataDir, manifest, listen: config.inferenceListen, log, options: { perMinute: config.inferencePerMinute }, version: () => this.#peer.ledger.entries.length })
      await this.#inference.start()
    }
    log.info({ addresses: this.#host.getMultiaddrs().map(a => a.toString()) }, 'listening')
    // a node restarted after it finished says so now, not after waiting for members it no longer needs
    if (stopPolicy.check()) return
    await membership.waitFor(config.minPeers > 0 ? config.minPeers : manifest.params.threshold - 1, () => gossip.subscribers().length, Math.max(30_000, manifest.params.timeouts.roundMs))
    await ledgerSync.catchUp()
    if (stopPolicy.check() || this.#stopping !== null) return
    this.#peer.start(Date.now())
    this.#drain()
    ticker.start()
  }

  /** The services, each given only the components it needs. */
  #compose (site: TrainingSite, stopPolicy: StopPolicy, denied: Set<string>): Services {
    const { manifest, log, metrics, config } = this
    const host = this.#host
    const peer = this.#peer
    const member = (p: string): boolean => isMember(manifest, peerIdFromString(p))
    const network = streamNetwork(host)
    const storedState = (h: string): Uint8Array | null => this.#store.storedState(h)
    return {
      status: createStatusService({
        listen: config.http, metrics, log, peer, site, connectedMembers: () => this.#services.membership.connectedMembers().length,
        reachable: () => this.#services.reachability.reachable(), memberLinks: () => memberLinks(host, manifest, this.identity.peerId), addresses: () => host.getMultiaddrs().map(a => a.toString()),
        training: () => this.#services.training.training()
      }),
      membership: createMembership({
        ...peerLinks(host), members: manifest.members.map(m => m.peerId).filter(p => p !== this.identity.peerId), connected: network.connected, denied, log, metrics,
        readDenyList: () => resolveConfig(config.dataDir, {}).deny,
        describe: p => { const l = memberLinks(host, manifest, this.identity.peerId).find(m => m.peerId === p); return { name: l?.name ?? p, link: l?.link ?? 'none' } }
      }),
      gossip: createGossip({
        pubsub: host.services.pubsub, topic: `/medmesh/${hex(consortiumId(manifest))}/v1`, isMember: member, context: () => peer.messageContext,
        deliver: msg => { if (this.#training()) this.#held.push(msg); else { peer.receiveOpened(msg, Date.now()); this.#drain() } }, round: () => peer.round?.number ?? null, log, metrics
      }),
      addressBook: createAddressBook({
        self: this.identity.peerId, isMember: member, pubsub: host.services.pubsub, topic: `/medmesh/${hex(consortiumId(manifest))}/addresses/1`, log,
        sealOwn: async seq => await sealAddressRecord(host, this.identity, seq),
        onOwnAddressesChanged: listener => { host.addEventListener('self:peer:update', listener); return () => host.removeEventListener('self:peer:update', listener) },
        consume: async r => { await host.peerStore.consumePeerRecord(r.wire, { expectedPeer: peerIdFromString(r.peer) }) },
        learnt: peer => this.#services.membership.reach(peer),
        load: () => this.#dir.addressRecords(), save: data => this.#dir.saveAddressRecords(data)
      }),
      siteReports: createSiteReports({
        identity: this.identity, consortium: consortiumId(manifest), isMember: member, pubsub: host.services.pubsub, topic: `/medmesh/${hex(consortiumId(manifest))}/sites/1`, log,
        figures: () => ({ trainImages: site.images.train, validationImages: site.images.validation, epsilonSpent: site.options.budget?.spent.epsilon ?? null }),
        load: () => this.#dir.siteReports(), save: data => this.#dir.saveSiteReports(data)
      }),
      reachability: createReachability({
        network, isMember: member, log, onConnectionChange: peerLinks(host).onConnectionChange,
        directMembers: () => memberLinks(host, manifest, this.identity.peerId).filter(m => m.link === 'direct').map(m => m.peerId),
        ownAddresses: () => directAddresses(host), relayedAddresses: () => relayedAddresses(host),
        dialBack: async (peer, address, ms) => await dialBack(host, peer, address, ms), listenRelayed: async () => await listenRelayed(host)
      }),
      blobs: createBlobExchange({ network, isMember: member, storedState, log, metrics }),
      ledgerSync: createLedgerSync({
        network, isMember: member, ledger: () => peer.ledger, storedState, round: () => peer.round?.number ?? -1, log, metrics,
        adopt: (certs, state) => { peer.catchUp(certs, state, Date.now()); this.#drain(); this.#persist() }
      }),
      training: createTrainingScheduler({
        site, round: () => peer.round, weights: () => peer.state.weights, stateCurrent: () => peer.stateCurrent, lastModelRound: () => peer.ledger.lastOf('update')?.header.round, log, metrics, validation: { classes: manifest.params.model.classes, bins: manifest.params.validation.bins },
        setInput: (values, count) => { peer.setInput(values, count, Date.now()); this.#drain() },
        trainingEnded: () => this.#release(),
        saveBudget: () => { this.#store.guard(() => this.#store.saveBudget(site.options.budget!)); this.#services.siteReports.update() }
      }),
      stopPolicy,
      ticker: createTicker(now => { if (!this.#training()) { peer.tick(now); this.#drain() } })
    }
  }

  /**
   * While this node trains, its protocol peer waits for its own input: gossip is still validated
   * and relayed, blobs served and /status answered, but messages reach the peer, and its timers
   * run, only once the input is handed over, so a slow hospital is late (and waited for next
   * time) rather than cut out of the round it is training for.
   */
  #held: Parameters<ProtocolPeer['receiveOpened']>[0][] = []
  #training (): boolean { return this.#services?.training.training() != null }
  #release (): void {
    const held = this.#held
    this.#held = []
    for (const msg of held) this.#peer.receiveOpened(msg, Date.now())
    this.#drain()
  }

  /** Carry out what the protocol asked for. */
  #drain (): void {
    const actions = this.#peer.takeActions()
    // a node that is stopping sends nothing more (a training result that lands now is dropped)
    if (this.#stopping !== null) return
    for (const a of actions) this.#store.guard(() => this.#act(a))
  }

  /** Each action of the protocol peer, with one service call. */
  #act (a: PeerAction): void {
    const s = this.#services
    switch (a.type) {
      case 'broadcast': return s.gossip.broadcast(a.wire, a.round)
      case 'publish-blob': return s.blobs.publish(a.hash, a.data, a.what, a.round)
      case 'fetch-blob': return void this.#fetch(a.hash, a.owner, a.what)
      case 'reject': return s.status.rejected(a.code, a.peer, a.reason)
      case 'phase':
        s.status.phaseEntered(a.round, a.phase, a.detail)
        this.#store.saveRound(a.round, a.phase) // before any message of the phase leaves: a restart never re-runs this round
        return s.training.phaseEntered()
      case 'round-started':
        s.status.roundStarted(a.round, this.#peer.absent)
        s.blobs.prune(a.round - 1)
        return s.training.roundStarted(a.round, a.kind)
      case 'certified':
        this.#persist()
        s.status.certified(this.#peer.ledger.last!)
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
        this.log.info({ round: a.round }, `members are ahead (round ${a.round} certified on a head this node lacks): catching up`)
        return void s.ledgerSync.catchUp(a.from.map(i => this.manifest.members[i]?.peerId).filter((p): p is string => p !== undefined))
    }
  }

  async #fetch (hash: string, owner: number, what: 'masked-vector' | 'state'): Promise<void> {
    const round = this.#peer.round?.number ?? -1
    const wanted = (): boolean => this.#stopping === null && (this.#peer.round?.number ?? -1) === round
    const body = await this.#services.blobs.fetch({ hash, what, round, preferred: this.manifest.members[owner]?.peerId, wanted })
    if (body === null) return
    this.#peer.receiveBlob(hash, body, Date.now(), true) // the blob exchange checked its hash
    this.#drain()
    this.#persist() // it may have been the certified model this node lacked: keep it
    this.#services.stopPolicy.check()
  }

  /** Certificates and the certified model to disk; the certified statistics to the site. */
  #persist (): void {
    this.#store.guard(() => this.#store.persist(this.#peer.ledger, this.#peer.state))
    this.#services.training.statisticsCertified(this.#peer.ledger.statistics)
  }

  /** Re-read the deny list (config.json and MEDMESH_DENY): see the membership service. */
  reloadDenyList (): void { this.#services.membership.reloadDenyList() }

  async stop (): Promise<void> {
    this.#stopping ??= this.#stop()
    await this.#stopping
  }

  async #stop (): Promise<void> {
    const round = this.#peer?.round?.number
    // nothing leaves after the signal: the peer starts nothing, #drain sends nothing
    this.#peer?.halt()
    if (round !== undefined) try { this.#store.saveRound(round, 'stopped') } catch {}
    // the training workers first: a node that stops does not wait for a training step to end
    await within(STOP_MS, this.#site?.close())
    await within(STOP_MS, (async () => { for (const s of [this.#inference, ...(Object.values(this.#services ?? {}) as Startable[]).reverse()]) try { await s?.stop() } catch {} })())
    // libp2p closes its connections politely; a peer that does not answer must not hold the stop up
    await within(STOP_MS, Promise.resolve(this.#host?.stop()))
    this.log.info('stopped')
    this.#stopped.resolve()
  }
}

/** each part of a stop gets at most this long: SIGTERM ends a node within about two seconds */
const STOP_MS = 1000

async function within (ms: number, p: Promise<unknown> | undefined): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const settled = (p ?? Promise.resolve()).then(() => {}, () => {})
  await Promise.race([settled, new Promise(resolve => { timer = setTimeout(resolve, ms) })]).finally(() => clearTimeout(timer))
}
