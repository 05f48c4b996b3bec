/**
 * The two libp2p hosts of encrypted inference, apart from the node's own: the holder's listener
 * (TCP, Noise, Yamux, identify, ping, and /medmesh/infer/1.0.0 only; no gossip, no blobs, no
 * ledger exist on it) with a gater that lets in only the peers allowed to query and never dials
 * out; and the clinic's dialer, which listens nowhere.
 */
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import type { PeerId } from '@libp2p/interface'
import type { NodeIdentity } from '../../privacy/index.ts'

const muxer = () => yamux({ maxMessageSize: 256 * 1024, streamOptions: { initialStreamWindowSize: 4 * 1024 * 1024, maxStreamWindowSize: 16 * 1024 * 1024, maxReadBufferLength: 64 * 1024 * 1024 } })

export async function createInferenceListener (identity: NodeIdentity, listen: string[], allowed: (peer: string) => boolean, onRefused: (peer: string) => void): Promise<Libp2p> {
  const deny = (peer: PeerId): boolean => { const id = peer.toString(); if (allowed(id)) return false; onRefused(id); return true }
  return await createLibp2p({
    privateKey: identity.toLibp2pPrivateKey(),
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [muxer()],
    connectionGater: {
      denyDialPeer: () => true,
      denyDialMultiaddr: () => true,
      denyInboundEncryptedConnection: deny,
      denyInboundUpgradedConnection: deny,
      denyInboundRelayReservation: () => true,
      denyInboundRelayedConnection: () => true
    },
    connectionManager: { maxConnections: 64 },
    services: { identify: identify(), ping: ping() }
  })
}

export async function createClientHost (identity: NodeIdentity): Promise<Libp2p> {
  return await createLibp2p({
    privateKey: identity.toLibp2pPrivateKey(),
    addresses: { listen: [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [muxer()],
    services: { identify: identify() }
  })
}
