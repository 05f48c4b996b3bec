/**
 * The libp2p host of a medmesh node: TCP, Noise, Yamux, identify, ping, gossipsub, bootstrap,
 * optionally a pre-shared network key, and a connection gater that lets only consortium members
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
import { preSharedKey } from '@libp2p/pnet'
import { KEEP_ALIVE, type PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import type { NodeIdentity } from '../privacy/index.ts'
import { memberIndex, type Manifest } from '../protocol/manifest.ts'
import type { NodeConfig } from './config.ts'

export type MedmeshHost = Libp2p<{ pubsub: GossipSub, identify: ReturnType<ReturnType<typeof identify>>, ping: ReturnType<ReturnType<typeof ping>> }>

export interface HostHooks {
  /** a non-member was refused: for logs and metrics */
  onRefused: (peer: string, how: string) => void
  /** members refused for now (the node's deny list, which can change while it runs) */
  denied: ReadonlySet<string>
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
    transports: [tcp()],
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
      denyOutboundUpgradedConnection: deny('outbound connection')
    },
    // members are tagged keep-alive (see tagMembers): a dropped link is re-dialled with backoff
    connectionManager: { maxConnections: Math.max(16, 2 * manifest.members.length), reconnectRetries: 1_000_000, reconnectRetryInterval: 1000, reconnectBackoffFactor: 2 },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        floodPublish: true,
        emitSelf: false,
        ignoreDuplicatePublishError: true,
        // members only, so a misbehaving one is penalised hard
        scoreParams: { IPColocationFactorWeight: 0, invalidMessageDeliveriesWeight: -100, invalidMessageDeliveriesDecay: 0.5 }
      } as never)
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

export function isMember (manifest: Manifest, peer: PeerId): boolean {
  return memberIndex(manifest, peer.toString()) >= 0
}
