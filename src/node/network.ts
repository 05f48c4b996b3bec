/**
 * The stream side of the network as the node's services see it: protocols to serve, channels to
 * open to a member, and the members connected now. Peers are named by their peer id string. The
 * libp2p host is adapted here once, so that the services can be tested with a network in memory.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { messageStreamToDuplex } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'
import type { MedmeshHost } from './host.ts'
import type { Channel } from './wire.ts'

export interface StreamNetwork {
  /** serve `protocol`: `handler` gets each inbound channel and the peer id it came from */
  handle: (protocol: string, handler: (channel: Channel, remote: string) => Promise<void>, maxInboundStreams: number) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  /** a channel to `peer` on `protocol`, or an error within `timeoutMs` */
  open: (peer: string, protocol: string, timeoutMs: number) => Promise<Channel>
  /** peer ids of the peers connected now (the gater lets only members connect) */
  connected: () => string[]
}

/** The host's links to peers, for the membership service. */
export function peerLinks (host: MedmeshHost): { dial: (peer: string, timeoutMs: number) => Promise<void>, hangUp: (peer: string) => Promise<void>, onConnectionChange: (listener: (peer: string, connected: boolean) => void) => () => void } {
  return {
    dial: async (peer, timeoutMs) => { await host.dial(peerIdFromString(peer), { signal: AbortSignal.timeout(timeoutMs) }) },
    hangUp: async peer => { await host.hangUp(peerIdFromString(peer)) },
    onConnectionChange: listener => {
      const on = (evt: CustomEvent): void => listener(String(evt.detail), evt.type === 'peer:connect')
      host.addEventListener('peer:connect', on)
      host.addEventListener('peer:disconnect', on)
      return () => { host.removeEventListener('peer:connect', on); host.removeEventListener('peer:disconnect', on) }
    }
  }
}

export function channelOf (stream: Stream): Channel {
  // one duplex per stream: its listener buffers what arrives from the moment it exists
  const duplex = messageStreamToDuplex(stream)
  return { source: duplex.source, sink: duplex.sink, abort: err => stream.abort(err) }
}

export function streamNetwork (host: Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'getPeers'>): StreamNetwork {
  return {
    handle: async (protocol, handler, maxInboundStreams) => {
      await host.handle(protocol, async (stream, connection) => await handler(channelOf(stream), connection.remotePeer.toString()), { maxInboundStreams })
    },
    unhandle: async protocol => { await host.unhandle(protocol) },
    open: async (peer, protocol, timeoutMs) => channelOf(await host.dialProtocol(peerIdFromString(peer), protocol, { signal: AbortSignal.timeout(timeoutMs) })),
    connected: () => host.getPeers().map(p => p.toString())
  }
}
