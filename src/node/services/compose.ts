/**
 * How a node is put together from its data directory and its configuration: the store, the
 * training site, the protocol peer and the libp2p host, and each service given only the
 * components it needs, the node's one clock among them. MedmeshNode (../node.ts) drives what this
 * builds; a test gives it stubs instead.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { Startable } from '@libp2p/interface'
import { ProtocolPeer } from '../../protocol/peer.ts'
import type { Certificate, Ledger } from '../../protocol/ledger.ts'
import type { OpenedMessage } from '../../protocol/messages.ts'
import { consortiumId, memberIndex, type Manifest } from '../../protocol/manifest.ts'
import { hex } from '../../protocol/codec.ts'
import { modelRoundOf, roundKind } from '../../protocol/validation.ts'
import { consortiumInitialWeights } from '../initial-weights.ts'
import { candidateRecipe, candidateSize, selectionAt, selectionStartState, stateCandidates } from '../../protocol/selection.ts'
import type { CandidateRecipe } from '../../training/candidates.ts'
import type { NodeIdentity } from '../../privacy/index.ts'
import type { TrainingSite } from '../../training/worker-site.ts'
import { systemClock, type Clock } from '../clock.ts'
import { ConfigError, resolveConfig, type NodeConfig } from '../config.ts'
import { DataDir } from '../datadir.ts'
import { createHost, dialBack, directAddresses, isMember, listenRelayed, memberLinks, relayedAddresses, sealAddressRecord, tagMembers, type MedmeshHost } from '../host.ts'
import { createLogger, type Logger } from '../logger.ts'
import { describeMaskKernel, installMaskKernel } from '../mask-kernel.ts'
import { createMetrics, type NodeMetrics } from '../metrics.ts'
import { peerLinks, streamNetwork } from '../network.ts'
import type { NodeComponents, NodeInit } from '../node.ts'
import { nodeRandomness, openSite } from '../site.ts'
import { createAddressBook, type AddressBook } from './address-book.ts'
import { createBlobExchange, type BlobExchange } from './blob-exchange.ts'
import { createGossip, type Gossip } from './gossip.ts'
import { createLedgerSync, type LedgerSync } from './ledger-sync.ts'
import { createMembership, type Membership } from './membership.ts'
import { createReachability, type Reachability } from './reachability.ts'
import { createSiteReports, type SiteReports } from './site-reports.ts'
import { createStatusService, type StatusService } from './status.ts'
import { createStopPolicy, roundsFinished, type StopPolicy } from './stop-policy.ts'
import { NodeStore } from './store.ts'
import { createTicker } from './ticker.ts'
import { createTrainingScheduler, type TrainingScheduler } from './training.ts'

/** In the order they start; they stop in the reverse order. */
export interface NodeServices { status: StatusService, membership: Membership, gossip: Gossip, addressBook: AddressBook, siteReports: SiteReports, reachability: Reachability, blobs: BlobExchange, ledgerSync: LedgerSync, training: TrainingScheduler, stopPolicy: StopPolicy, ticker: Startable }

/** What the services hand back to the node. */
export interface NodeHooks {
  /** a gossip message for the peer (held while this node trains) */
  deliver: (msg: OpenedMessage) => void
  /** this node's input for the round */
  setInput: (values: ArrayLike<number>, count: number) => void
  /** a training ended: the input held meanwhile goes to the peer */
  trainingEnded: () => void
  /** certificates (and the state) learnt from a member */
  adopt: (certificates: Certificate[], state: Uint8Array | null) => void
  /** the time, for the peer's deadlines (not while this node trains) */
  tick: (now: number) => void
  stop: () => void
}

/** What the services are built from. */
export interface NodeParts {
  config: NodeConfig
  manifest: Manifest
  identity: NodeIdentity
  dir: DataDir
  store: NodeStore
  site: TrainingSite
  peer: ProtocolPeer
  host: MedmeshHost
  denied: Set<string>
  clock: Clock
  log: Logger
  metrics: NodeMetrics
}

/**
 * Open a node's parts from its data directory (the ledger verified, the site opened, the host
 * listening) and return what MedmeshNode is built from.
 */
export async function openNode (config: NodeConfig, clock: Clock = systemClock): Promise<{ components: NodeComponents, init: NodeInit }> {
  const log = createLogger(config.logLevel, 'medmesh', config.logFormat)
  const metrics = createMetrics()
  const dir = new DataDir(config.dataDir)
  const identity = dir.identity()
  const manifest = dir.manifest()
  if (memberIndex(manifest, identity.peerId) < 0) throw new ConfigError(`this node (${identity.peerId}) is not a member of consortium '${manifest.name}'`)
  // set once the node gives its hooks to the services (the store and the host are made before)
  let hooks: NodeHooks | null = null
  let services: NodeServices | null = null
  const store = new NodeStore({ dir, log, unwritable: () => hooks?.stop() })
  const restored = store.restore(manifest, identity.peerId)
  log.info(describeMaskKernel(installMaskKernel()))
  const randomness = nodeRandomness(config, identity.exportSeed(), log)
  const site = await openSite(manifest, config, randomness, store.budget(), log)
  // with recipe selection, every candidate's model from the same initial weights (selection.ts)
  const initial = selectionStartState({ weights: consortiumInitialWeights(manifest, dir, site), optimizer: [], step: 0 }, manifest.params.selection, width => site.initialWeights(width))
  const peer = new ProtocolPeer({
    manifest, identity, rng: randomness.rng, initialState: initial, ledger: restored.ledger, state: restored.state ?? initial,
    kindOf: roundKind, inputFor: () => null, finished: roundsFinished({ rounds: config.rounds, patience: manifest.params.validation.patience }), firstRound: restored.firstRound,
    checkAll: config.checkAggregates
  })
  const denied = new Set(config.deny)
  const host = await createHost(config, identity, manifest, { denied, relaying: () => services?.reachability.relaying() ?? true, onRefused: (p, how) => { metrics.refused.inc(); log.warn({ peer: p }, `refused ${how}: not a member of the consortium`) } })
  const parts: NodeParts = { config, manifest, identity, dir, store, site, peer, host, denied, clock, log, metrics }
  const inference = config.inferenceListen.length === 0
    ? null
    : async (): Promise<Startable> => {
      const { createInferenceHolder } = await import('../inference/holder.ts')
      return await createInferenceHolder({ dataDir: config.dataDir, manifest, listen: config.inferenceListen, log, clock, options: { perMinute: config.inferencePerMinute }, version: () => peer.ledger.entries.length })
    }
  return {
    components: {
      clock, log, manifest, peer, store, site, inference,
      host: { ready: async () => await tagMembers(host, manifest, identity.peerId), addresses: () => host.getMultiaddrs().map(a => a.toString()), stop: async () => await host.stop() },
      services: h => { hooks = h; services = composeServices(parts, h); return services }
    },
    init: { peers: config.minPeers > 0 ? config.minPeers : manifest.params.threshold - 1, waitMs: Math.max(30_000, manifest.params.timeouts.roundMs) }
  }
}

/** The services, each given only the components it needs; what they hand back to the node goes through its hooks. */
export function composeServices (p: NodeParts, node: NodeHooks): NodeServices {
  const { manifest, log, metrics, config, host, peer, site, identity, clock } = p
  const member = (id: string): boolean => isMember(manifest, peerIdFromString(id))
  const network = streamNetwork(host)
  const storedState = (h: string): Uint8Array | null => p.store.storedState(h)
  const topic = (suffix: string): string => `/medmesh/${hex(consortiumId(manifest))}/${suffix}`
  const links = (): ReturnType<typeof memberLinks> => memberLinks(host, manifest, identity.peerId)
  const s: NodeServices = {
    status: createStatusService({
      listen: config.http, metrics, log, peer, site, clock, connectedMembers: () => s.membership.connectedMembers().length,
      reachable: () => s.reachability.reachable(), memberLinks: links, addresses: () => host.getMultiaddrs().map(a => a.toString()),
      training: () => s.training.training()
    }),
    membership: createMembership({
      ...peerLinks(host), members: manifest.members.map(m => m.peerId).filter(id => id !== identity.peerId), connected: network.connected, denied: p.denied, log, metrics, clock,
      readDenyList: () => resolveConfig(config.dataDir, {}).deny,
      describe: id => { const l = links().find(m => m.peerId === id); return { name: l?.name ?? id, link: l?.link ?? 'none' } }
    }),
    gossip: createGossip({ pubsub: host.services.pubsub, topic: topic('v1'), isMember: member, context: () => peer.messageContext, deliver: node.deliver, round: () => peer.round?.number ?? null, log, metrics }),
    addressBook: createAddressBook({
      self: identity.peerId, isMember: member, pubsub: host.services.pubsub, topic: topic('addresses/1'), log, clock,
      sealOwn: async seq => await sealAddressRecord(host, identity, seq),
      onOwnAddressesChanged: listener => { host.addEventListener('self:peer:update', listener); return () => host.removeEventListener('self:peer:update', listener) },
      consume: async r => { await host.peerStore.consumePeerRecord(r.wire, { expectedPeer: peerIdFromString(r.peer) }) },
      learnt: id => s.membership.reach(id),
      load: () => p.dir.addressRecords(), save: data => p.dir.saveAddressRecords(data)
    }),
    siteReports: createSiteReports({
      identity, consortium: consortiumId(manifest), isMember: member, pubsub: host.services.pubsub, topic: topic('sites/1'), log, clock,
      figures: () => ({ trainImages: site.images.train, validationImages: site.images.validation, epsilonSpent: site.options.budget?.spent.epsilon ?? null }),
      load: () => p.dir.siteReports(), save: data => p.dir.saveSiteReports(data)
    }),
    reachability: createReachability({
      network, isMember: member, log, clock, onConnectionChange: peerLinks(host).onConnectionChange,
      directMembers: () => links().filter(m => m.link === 'direct').map(m => m.peerId),
      ownAddresses: () => directAddresses(host), relayedAddresses: () => relayedAddresses(host),
      dialBack: async (id, address, ms) => await dialBack(host, id, address, ms), listenRelayed: async () => await listenRelayed(host)
    }),
    blobs: createBlobExchange({ network, isMember: member, storedState, log, metrics, clock }),
    ledgerSync: createLedgerSync({ network, isMember: member, ledger: () => peer.ledger, storedState, round: () => peer.round?.number ?? -1, log, metrics, adopt: node.adopt }),
    training: createTrainingScheduler({
      site, round: () => peer.round, weights: () => peer.roundState.weights, candidates: candidateRecipes(manifest, () => peer.ledger), stateCurrent: () => peer.stateCurrent, fetchingState: () => peer.fetchingState, lastModelRound: () => peer.ledger.lastOf('update')?.header.round, log, metrics, clock,
      validation: { classes: manifest.params.model.classes, bins: manifest.params.validation.bins },
      setInput: node.setInput, trainingEnded: node.trainingEnded,
      saveBudget: () => { p.store.guard(() => p.store.saveBudget(site.options.budget!)); s.siteReports.update() }
    }),
    stopPolicy: createStopPolicy({ ledger: () => peer.ledger, round: () => peer.round, modelSaved: () => p.store.modelSaved(peer.ledger), halt: () => peer.halt(), stop: node.stop, log, clock }, { rounds: config.rounds, patience: manifest.params.validation.patience }),
    ticker: createTicker({ clock, tick: node.tick })
  }
  return s
}

/** The training scheduler's view of recipe selection: each model round's candidates' recipes, and the parts of the certified state; undefined without selection. */
function candidateRecipes (manifest: Manifest, ledger: () => Pick<Ledger, 'entries'>): { recipes: (round: number) => CandidateRecipe[], stateParts: () => number[] } | undefined {
  const s = manifest.params.selection
  if (s === undefined) return undefined
  return {
    recipes: round => selectionAt(ledger().entries, s, manifest.params.model.classes, modelRoundOf(round)).live.map(c => candidateRecipe(manifest.params, c)),
    stateParts: () => (stateCandidates(ledger().entries, manifest.params) ?? [0]).map(c => candidateSize(manifest.params, c))
  }
}
