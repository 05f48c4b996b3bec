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
import type { PeerId, Startable } from '@libp2p/interface'
import { TopicValidatorResult, type GossipSub } from '@libp2p/gossipsub'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import { peerIdFromCID } from '@libp2p/peer-id'
import type { Logger } from '../logger.ts'

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
  now?: () => number
}

export interface AddressBook extends Startable {
  /** the newest record held for each member (this node's own included) */
  records: () => ReadonlyMap<string, AddressRecord>
}

export function createAddressBook (c: AddressBookComponents): AddressBook {
  const held = new Map<string, AddressRecord>()
  /** records the validator opened, for the message listener (gossipsub hands both the same data) */
  const opened = new WeakMap<Uint8Array, AddressRecord>()
  const now = c.now ?? Date.now
  let seq = 0n
  let unlisten: (() => void) | null = null
  let running = false

  const persist = (): void => {
    const records = Object.fromEntries([...held].map(([peer, r]) => [peer, Buffer.from(r.wire).toString('base64')]))
    try { c.save(JSON.stringify({ version: 1, records }) + '\n') } catch (e) { c.log.warn(`address records not saved: ${(e as Error).message}`) }
  }
  /** keep a checked record of another member if it is newer than the one held; true if kept */
  const keep = async (r: AddressRecord): Promise<boolean> => {
    const old = held.get(r.peer)
    if (old !== undefined && old.seq >= r.seq) return false
    held.set(r.peer, r)
    try { await c.consume(r) } catch (e) { c.log.warn({ peer: r.peer }, `address record not taken by the peer store: ${(e as Error).message}`) }
    return true
  }
  const publish = (wire: Uint8Array): void => { void c.pubsub.publish(c.topic, wire).catch(() => { /* no member subscribed yet: passed on when one does */ }) }
  const publishOwn = async (): Promise<void> => {
    // strictly increasing, and above what a previous run of this node used (its clock moved on)
    seq = seq >= BigInt(now()) ? seq + 1n : BigInt(now())
    const r = await openAddressRecord(await c.sealOwn(seq))
    const before = held.get(c.self)?.addresses
    if (!running || (before !== undefined && before.join(' ') === r.addresses.join(' '))) return
    held.set(c.self, r)
    persist()
    c.log.debug({ addresses: r.addresses }, 'address record published')
    publish(r.wire)
  }

  const validate = async (from: PeerId, msg: { data: Uint8Array }): Promise<TopicValidatorResult> => {
    const via = from.toString()
    if (!c.isMember(via)) { c.log.warn({ peer: via }, 'address record from a non-member dropped'); return TopicValidatorResult.Reject }
    let r: AddressRecord
    try { r = await openAddressRecord(msg.data) } catch (e) {
      c.log.warn({ peer: via }, `address record rejected: ${(e as Error).message}`)
      return TopicValidatorResult.Reject
    }
    if (!c.isMember(r.peer)) { c.log.warn({ peer: via }, `address record of a non-member (${r.peer}) rejected`); return TopicValidatorResult.Reject }
    // our own, or one we hold already (passed on again): not an offence, but not forwarded either
    if (r.peer === c.self || (held.get(r.peer)?.seq ?? -1n) >= r.seq) return TopicValidatorResult.Ignore
    opened.set(msg.data, r)
    return TopicValidatorResult.Accept
  }
  const onMessage = (evt: CustomEvent<{ topic: string, data: Uint8Array }>): void => {
    if (evt.detail.topic !== c.topic) return
    const r = opened.get(evt.detail.data)
    if (r === undefined) return
    opened.delete(evt.detail.data)
    void keep(r).then(kept => {
      if (!kept) return
      persist()
      c.log.info({ peer: r.peer, addresses: r.addresses }, `addresses of a member learnt (record ${r.seq})`)
      c.learnt(r.peer)
    })
  }
  const onSubscription = (evt: CustomEvent<{ peerId: PeerId, subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => {
    if (!evt.detail.subscriptions.some(s => s.topic === c.topic && s.subscribe) || !c.isMember(evt.detail.peerId.toString())) return
    // pass on every record held, this node's own among them
    for (const r of held.values()) publish(r.wire)
  }

  async function restore (): Promise<void> {
    let stored: Record<string, string> = {}
    try {
      const raw = c.load()
      if (raw !== null) stored = JSON.parse(Buffer.from(raw).toString('utf8')).records ?? {}
    } catch (e) { c.log.warn(`stored address records unreadable, starting without them: ${(e as Error).message}`); return }
    for (const [peer, b64] of Object.entries(stored)) {
      try {
        const r = await openAddressRecord(Buffer.from(String(b64), 'base64'))
        if (r.peer !== peer || !c.isMember(peer)) continue
        if (peer === c.self) { if (r.seq > seq) seq = r.seq; continue }
        await keep(r)
      } catch (e) { c.log.warn({ peer }, `stored address record dropped: ${(e as Error).message}`) }
    }
  }

  return {
    async start () {
      running = true
      await restore()
      c.pubsub.topicValidators.set(c.topic, validate)
      c.pubsub.addEventListener('message', onMessage as never)
      c.pubsub.addEventListener('subscription-change', onSubscription as never)
      c.pubsub.subscribe(c.topic)
      unlisten = c.onOwnAddressesChanged(() => { void publishOwn().catch(e => c.log.warn(`address record not published: ${(e as Error).message}`)) })
      await publishOwn()
      for (const peer of held.keys()) if (peer !== c.self) c.learnt(peer)
    },
    stop () {
      running = false
      unlisten?.()
      c.pubsub.removeEventListener('message', onMessage as never)
      c.pubsub.removeEventListener('subscription-change', onSubscription as never)
      c.pubsub.topicValidators.delete(c.topic)
    },
    records: () => held
  }
}
