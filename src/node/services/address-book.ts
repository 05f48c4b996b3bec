/**
 * Members learn each other's addresses without a hub. Each member publishes a libp2p signed peer
 * record (@libp2p/peer-record: its addresses and a sequence number, in an envelope signed with its
 * own key) on the consortium's address topic, again whenever its addresses change (a relay
 * reservation is made or lost). Every member checks what arrives like any network input (size,
 * signature, signer a member and the record's own peer, address count, newer than what it holds),
 * keeps the newest record per member on disk, hands it to the host's peer store (so that the
 * membership service's dials use it), and passes the records it holds on to a member that
 * subscribes: a member that knows only its bootstrap peer learns everyone from it, and can still
 * reach them once that peer is gone.
 */
import type { Startable } from '@libp2p/interface'
import type { GossipSub } from '@libp2p/gossipsub'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import { peerIdFromCID } from '@libp2p/peer-id'
import type { Clock } from '../clock.ts'
import type { Logger } from '../logger.ts'
import { createRecordBoard } from './record-board.ts'

/** a signed record is a few hundred bytes; more than this is refused before it is parsed */
export const MAX_RECORD_BYTES = 4096
/** addresses per record at most (listen, announce and relayed addresses of one member) */
export const MAX_RECORD_ADDRESSES = 32

export interface AddressRecord { peer: string, seq: bigint, addresses: string[], wire: Uint8Array }

/** Open and check a signed peer record: signature, signer = the record's peer, limits. Throws with the reason. */
export async function openAddressRecord (wire: Uint8Array): Promise<AddressRecord> {
  if (wire.length > MAX_RECORD_BYTES) throw new Error(`address record of ${wire.length} bytes exceeds ${MAX_RECORD_BYTES}`)
  let envelope: RecordEnvelope
  try { envelope = await RecordEnvelope.openAndCertify(wire, PeerRecord.DOMAIN) } catch (e) { throw new Error(`address record does not open: ${(e as Error).message}`) }
  const record = PeerRecord.createFromProtobuf(envelope.payload)
  const signer = peerIdFromCID(envelope.publicKey.toCID())
  if (!record.peerId.equals(signer)) throw new Error(`address record of ${record.peerId.toString()} is signed by ${signer.toString()}`)
  if (record.multiaddrs.length > MAX_RECORD_ADDRESSES) throw new Error(`address record lists ${record.multiaddrs.length} addresses (at most ${MAX_RECORD_ADDRESSES})`)
  return { peer: signer.toString(), seq: record.seqNumber, addresses: record.multiaddrs.map(a => a.toString()), wire }
}

export interface AddressBookComponents {
  self: string
  isMember: (peer: string) => boolean
  pubsub: Pick<GossipSub, 'topicValidators' | 'subscribe' | 'unsubscribe' | 'publish' | 'addEventListener' | 'removeEventListener'>
  topic: string
  /** this node's signed record of its current addresses, with sequence number `seq` */
  sealOwn: (seq: bigint) => Promise<Uint8Array>
  /** fired when this node's own addresses change */
  onOwnAddressesChanged: (listener: () => void) => () => void
  /** give a checked record to the host's peer store, so that dials to its member use its addresses */
  consume: (record: AddressRecord) => Promise<void>
  /** a member whose addresses were learnt: dial it if not connected */
  learnt: (peer: string) => void
  /** the stored records (the file's contents), or null; and writing them (atomically) */
  load: () => Uint8Array | null
  save: (data: string) => void
  log: Logger
  /** its time is the floor of this node's record numbers (they rise across restarts) */
  clock: Pick<Clock, 'now'>
}

export interface AddressBook extends Startable {
  /** the newest record held for each member (this node's own included) */
  records: () => ReadonlyMap<string, AddressRecord>
}

export function createAddressBook (c: AddressBookComponents): AddressBook {
  let unlisten: (() => void) | null = null
  const board = createRecordBoard<AddressRecord>({
    kind: 'address record', self: c.self, isMember: c.isMember, pubsub: c.pubsub, topic: c.topic, load: c.load, save: c.save, log: c.log, clock: c.clock,
    open: openAddressRecord,
    sealOwn: c.sealOwn,
    same: (a, b) => a.addresses.join(' ') === b.addresses.join(' '),
    kept: async r => { await c.consume(r) },
    learnt: r => {
      c.log.info({ peer: r.peer, addresses: r.addresses }, `addresses of a member learnt (record ${r.seq})`)
      c.learnt(r.peer)
    }
  })
  return {
    async start () {
      await board.start()
      unlisten = c.onOwnAddressesChanged(() => { void board.publishOwn().catch(e => c.log.warn(`address record not published: ${(e as Error).message}`)) })
      for (const peer of board.records().keys()) if (peer !== c.self) c.learnt(peer)
    },
    stop () {
      unlisten?.()
      board.stop()
    },
    records: () => board.records()
  }
}
