/**
 * The libp2p host of a medmesh node: TCP, Noise, Yamux, identify, ping, gossipsub, bootstrap,
 * circuit relay v2 (transport and server), optionally a pre-shared network key, and a connection gater that lets only consortium members
 * in (and out). The gater is not enough alone (a dial can resolve before the remote closes), so
 * every protocol handler checks the remote peer again (`isMember`).
 */
import { readFileSync } from 'node:fs'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { bootstrap } from '@libp2p/bootstrap'
import { circuitRelayServer, circuitRelayTransport, type CircuitRelayService } from '@libp2p/circuit-relay-v2'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { preSharedKey } from '@libp2p/pnet'
import { KEEP_ALIVE, type PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import type { NodeIdentity } from '../privacy/index.ts'
import { memberIndex, type Manifest } from '../protocol/manifest.ts'
import type { NodeConfig } from './config.ts'

export type MedmeshHost = Libp2p<{ pubsub: GossipSub, identify: ReturnType<ReturnType<typeof identify>>, ping: ReturnType<ReturnType<typeof ping>>, relay: CircuitRelayService, relayListener: RelayListener }>

/** Listening through relays, started when the node finds that members cannot dial it (services/reachability.ts). */
export interface RelayListener { listen: (relays: number) => Promise<void> }
function relayListener () {
  // a libp2p service, so that it is given the transport manager like libp2p's own services
  return (components: { transportManager: { listen: (addrs: Multiaddr[]) => Promise<void> } }): RelayListener => ({
    listen: async relays => { await components.transportManager.listen(Array.from({ length: relays }, () => multiaddr('/p2p-circuit'))) }
  })
}

export interface HostHooks {
  /** a non-member was refused: for logs and metrics */
  onRefused: (peer: string, how: string) => void
  /** members refused for now (the node's deny list, which can change while it runs) */
  denied: ReadonlySet<string>
  /** whether this node relays for other members now (not when it is itself unreachable; default yes) */
  relaying?: () => boolean
}

export async function createHost (config: NodeConfig, identity: NodeIdentity, manifest: Manifest, hooks: HostHooks): Promise<MedmeshHost> {
  const members = new Set(manifest.members.map(m => m.peerId))
  const deny = (how: string) => (peer: PeerId): boolean => {
    const id = peer.toString()
    if (hooks.denied.has(id)) return true
    if (members.has(id) && id !== identity.peerId) return false
    hooks.onRefused(id, how)
    return true
  }
  const connectionProtector = config.pskFile !== null ? preSharedKey({ psk: readFileSync(config.pskFile) }) : undefined
  return await createLibp2p({
    privateKey: identity.toLibp2pPrivateKey(),
    addresses: { listen: config.listen, announce: config.announce },
    // circuit relay v2, members only: a member behind NAT is reached through reachable members
    transports: [tcp(), circuitRelayTransport({ reservationCompletionTimeout: 10_000 })],
    connectionEncrypters: [noise()],
    // larger windows: a masked vector is tens of MB, and the default 256 KiB window caps throughput
    streamMuxers: [yamux({ maxMessageSize: 256 * 1024, streamOptions: { initialStreamWindowSize: 4 * 1024 * 1024, maxStreamWindowSize: 16 * 1024 * 1024, maxReadBufferLength: 32 * 1024 * 1024 } })],
    connectionProtector,
    peerDiscovery: config.bootstrap.length > 0 ? [bootstrap({ list: config.bootstrap, timeout: 500 })] : [],
    connectionGater: {
      denyDialPeer: deny('dial'),
      denyInboundEncryptedConnection: deny('inbound connection'),
      denyOutboundEncryptedConnection: deny('outbound connection'),
      denyInboundUpgradedConnection: deny('inbound connection'),
      denyOutboundUpgradedConnection: deny('outbound connection'),
      denyInboundRelayReservation: peer => deny('relay reservation')(peer) || hooks.relaying?.() === false,
      denyOutboundRelayedConnection: (source, destination) => deny('relayed connection')(source) || deny('relayed connection')(destination),
      denyInboundRelayedConnection: (relay, remote) => deny('relayed connection')(relay) || deny('relayed connection')(remote)
    },
    // members are tagged keep-alive (see tagMembers): a dropped link is re-dialled with backoff
    // a member's address that does not answer (a NAT'd private one) must not hold up its next, relayed, one
    connectionManager: { addressDialTimeout: 2000, maxConnections: Math.max(16, 2 * manifest.members.length), reconnectRetries: 1_000_000, reconnectRetryInterval: 1000, reconnectBackoffFactor: 2 },
    services: {
      identify: identify(),
      ping: ping(),
      // members' masked vectors are tens of MB: no data or time limit on relayed connections
      relay: circuitRelayServer({ reservations: { applyDefaultLimit: false, maxReservations: manifest.members.length } }),
      relayListener: relayListener(),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        floodPublish: true,
        emitSelf: false,
        ignoreDuplicatePublishError: true,
        // members only, several of them possibly behind one NAT address: no penalty for sharing an
        // IP. (gossipsub's invalid-message penalty is per topic, in TopicScoreParams; none is set, so
        // a member's invalid message is dropped by the validators one by one, not scored. The
        // global keys once written here for it were ignored by gossipsub: a cast hid that.)
        scoreParams: { IPColocationFactorWeight: 0 }
      })
    }
  }) as unknown as MedmeshHost
}

/** Tag every member keep-alive, so that libp2p reconnects to it (with backoff) when a link drops. */
export async function tagMembers (host: MedmeshHost, manifest: Manifest, self: string): Promise<void> {
  for (const m of manifest.members) {
    if (m.peerId === self) continue
    await host.peerStore.merge(peerIdFromString(m.peerId), { tags: { [KEEP_ALIVE]: { value: 1 } } })
  }
}

/** This node's signed peer record (its addresses now, without its own /p2p suffix), as bytes. */
export async function sealAddressRecord (host: MedmeshHost, identity: NodeIdentity, seqNumber: bigint): Promise<Uint8Array> {
  const multiaddrs = host.getMultiaddrs().map(a => a.decapsulateCode(P2P_CODE))
  const envelope = await RecordEnvelope.seal(new PeerRecord({ peerId: host.peerId, multiaddrs, seqNumber }), identity.toLibp2pPrivateKey())
  return envelope.marshal()
}
const P2P_CODE = 421

const isRelayed = (a: Multiaddr): boolean => a.getComponents().some(c => c.name === 'p2p-circuit')
const isLoopback = (a: Multiaddr): boolean => a.getComponents().some(c => (c.name === 'ip4' && c.value?.startsWith('127.')) || (c.name === 'ip6' && c.value === '::1'))

/** This node's direct addresses for a dial-back (loopback ones only when it has no other). */
export function directAddresses (host: MedmeshHost): string[] {
  const direct = host.getMultiaddrs().filter(a => !isRelayed(a)).map(a => a.decapsulateCode(P2P_CODE))
  const outward = direct.filter(a => !isLoopback(a))
  return (outward.length > 0 ? outward : direct).map(a => a.toString())
}
export const relayedAddresses = (host: MedmeshHost): string[] => host.getMultiaddrs().filter(isRelayed).map(a => a.toString())

/** How this node is connected to each member now: directly, through a relay, or not. */
export function memberLinks (host: MedmeshHost, manifest: Manifest, self: string): Array<{ name: string, peerId: string, link: 'direct' | 'relayed' | 'none' }> {
  return manifest.members.filter(m => m.peerId !== self).map(m => {
    const conns = host.getConnections(peerIdFromString(m.peerId)).filter(c => c.status === 'open')
    const link = conns.some(c => !isRelayed(c.remoteAddr)) ? 'direct' : conns.length > 0 ? 'relayed' : 'none'
    return { name: m.name, peerId: m.peerId, link }
  })
}

/** Dial a member at one address on a new connection, then close it: a dial-back for reachability. */
export async function dialBack (host: MedmeshHost, peer: string, address: string, timeoutMs: number): Promise<void> {
  const conn = await host.dial(multiaddr(`${address}/p2p/${peer}`), { force: true, signal: AbortSignal.timeout(timeoutMs) })
  await conn.close().catch(() => {})
}

export async function listenRelayed (host: MedmeshHost): Promise<void> { await host.services.relayListener.listen(2) }

export function isMember (manifest: Manifest, peer: PeerId): boolean {
  return memberIndex(manifest, peer.toString()) >= 0
}
