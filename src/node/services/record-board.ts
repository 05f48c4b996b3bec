/**
 * A board of signed records, one per member, on a gossip topic: what members publish about
 * themselves for the others to keep (their addresses, their site's figures). Each member
 * publishes its own record, again when it changes; every record that arrives is checked like any
 * network input (by `open`: size, signature, signer; then: from and about a member, newer than
 * the one held) before it is kept; the newest per member is kept on disk and passed on to any
 * member that subscribes, so that a member that knows only one other learns them all from it.
 */
import type { PeerId, Startable } from '@libp2p/interface'
import { TopicValidatorResult, type GossipSub, type GossipSubEvents } from '@libp2p/gossipsub'
import type { Clock } from '../clock.ts'
import type { Logger } from '../logger.ts'

export interface BoardRecord { peer: string, seq: bigint, wire: Uint8Array }

export interface RecordBoardComponents<R extends BoardRecord> {
  /** what the records are, for the log: 'address record', 'site report' */
  kind: string
  self: string
  isMember: (peer: string) => boolean
  pubsub: Pick<GossipSub, 'topicValidators' | 'subscribe' | 'unsubscribe' | 'publish' | 'addEventListener' | 'removeEventListener'>
  topic: string
  /** check a record's bytes (size first) and open it; throws with the reason */
  open: (wire: Uint8Array) => Promise<R>
  /** this node's own record now, with sequence number `seq` */
  sealOwn: (seq: bigint) => Promise<Uint8Array>
  /** whether two of this node's records say the same (then the new one is not published) */
  same: (a: R, b: R) => boolean
  /** a newer record of another member was kept (before it is saved) */
  kept?: (r: R) => Promise<void>
  /** ... and saved: log it, act on it */
  learnt?: (r: R) => void
  /** the stored records (the file's contents), or null; and writing them (atomically) */
  load: () => Uint8Array | null
  save: (data: string) => void
  log: Logger
  /** its time is the floor of this node's record numbers (they rise across restarts) */
  clock: Pick<Clock, 'now'>
}

export interface RecordBoard<R extends BoardRecord> extends Startable {
  /** the newest record held for each member (this node's own included) */
  records: () => ReadonlyMap<string, R>
  /** seal and publish this node's record again (if it changed) */
  publishOwn: () => Promise<void>
}

/** The board as stored: every record held, base64, by member. */
export function encodeBoard (held: ReadonlyMap<string, BoardRecord>): string {
  const records = Object.fromEntries([...held].map(([peer, r]) => [peer, Buffer.from(r.wire).toString('base64')]))
  return JSON.stringify({ version: 1, records }) + '\n'
}

/** The stored records by member (none if nothing was stored); throws if the file is not JSON. */
export function decodeBoard (raw: Uint8Array | null): Record<string, string> {
  if (raw === null) return {}
  return JSON.parse(Buffer.from(raw).toString('utf8')).records ?? {}
}

/** keep a checked record of another member if it is newer than the one held; true if kept */
async function keepIfNewer<R extends BoardRecord> (c: RecordBoardComponents<R>, held: Map<string, R>, r: R): Promise<boolean> {
  const old = held.get(r.peer)
  if (old !== undefined && old.seq >= r.seq) return false
  held.set(r.peer, r)
  try { await c.kept?.(r) } catch (e) { c.log.warn({ peer: r.peer }, `${c.kind} not taken: ${(e as Error).message}`) }
  return true
}

/** The gossip validator's verdict on a record passed on by `via`, and the record if it is accepted. */
async function judgeIncoming<R extends BoardRecord> (c: RecordBoardComponents<R>, held: ReadonlyMap<string, R>, via: string, data: Uint8Array): Promise<{ verdict: TopicValidatorResult, record?: R }> {
  if (!c.isMember(via)) { c.log.warn({ peer: via }, `${c.kind} from a non-member dropped`); return { verdict: TopicValidatorResult.Reject } }
  let r: R
  try { r = await c.open(data) } catch (e) {
    c.log.warn({ peer: via }, `${c.kind} rejected: ${(e as Error).message}`)
    return { verdict: TopicValidatorResult.Reject }
  }
  if (!c.isMember(r.peer)) { c.log.warn({ peer: via }, `${c.kind} of a non-member (${r.peer}) rejected`); return { verdict: TopicValidatorResult.Reject } }
  // our own, or one we hold already (passed on again): not an offence, but not forwarded either
  if (r.peer === c.self || (held.get(r.peer)?.seq ?? -1n) >= r.seq) return { verdict: TopicValidatorResult.Ignore }
  return { verdict: TopicValidatorResult.Accept, record: r }
}

/** Keep the stored records of other members; this node's own stored record only raises its sequence number. */
async function restoreBoard<R extends BoardRecord> (c: RecordBoardComponents<R>, keep: (r: R) => Promise<boolean>, ownSeq: (seq: bigint) => void): Promise<void> {
  let stored: Record<string, string>
  try { stored = decodeBoard(c.load()) } catch (e) { c.log.warn(`stored ${c.kind}s unreadable, starting without them: ${(e as Error).message}`); return }
  for (const [peer, b64] of Object.entries(stored)) {
    try {
      const r = await c.open(Buffer.from(String(b64), 'base64'))
      if (r.peer !== peer || !c.isMember(peer)) continue
      if (peer === c.self) { ownSeq(r.seq); continue }
      await keep(r)
    } catch (e) { c.log.warn({ peer }, `stored ${c.kind} dropped: ${(e as Error).message}`) }
  }
}

export function createRecordBoard<R extends BoardRecord> (c: RecordBoardComponents<R>): RecordBoard<R> {
  const held = new Map<string, R>()
  /** records the validator opened, for the message listener (gossipsub hands both the same data) */
  const opened = new WeakMap<Uint8Array, R>()
  const now = c.clock.now
  let seq = 0n
  let running = false

  const persist = (): void => {
    try { c.save(encodeBoard(held)) } catch (e) { c.log.warn(`${c.kind}s not saved: ${(e as Error).message}`) }
  }
  const keep = async (r: R): Promise<boolean> => await keepIfNewer(c, held, r)
  const publish = (wire: Uint8Array): void => { void c.pubsub.publish(c.topic, wire).catch(() => { /* no member subscribed yet: passed on when one does */ }) }
  const publishOwn = async (): Promise<void> => {
    // strictly increasing, and above what a previous run of this node used (its clock moved on)
    seq = seq >= BigInt(now()) ? seq + 1n : BigInt(now())
    const r = await c.open(await c.sealOwn(seq))
    const before = held.get(c.self)
    if (!running || (before !== undefined && c.same(before, r))) return
    held.set(c.self, r)
    persist()
    c.log.debug(`${c.kind} published`)
    publish(r.wire)
  }

  const validate = async (from: PeerId, msg: { data: Uint8Array }): Promise<TopicValidatorResult> => {
    const { verdict, record } = await judgeIncoming(c, held, from.toString(), msg.data)
    if (record !== undefined) opened.set(msg.data, record)
    return verdict
  }
  const onMessage = (evt: GossipSubEvents['message']): void => {
    if (evt.detail.topic !== c.topic) return
    const r = opened.get(evt.detail.data)
    if (r === undefined) return
    opened.delete(evt.detail.data)
    void keep(r).then(kept => {
      if (!kept) return
      persist()
      c.learnt?.(r)
    })
  }
  const onSubscription = (evt: GossipSubEvents['subscription-change']): void => {
    if (!evt.detail.subscriptions.some(s => s.topic === c.topic && s.subscribe) || !c.isMember(evt.detail.peerId.toString())) return
    // pass on every record held, this node's own among them
    for (const r of held.values()) publish(r.wire)
  }

  return {
    async start () {
      running = true
      await restoreBoard(c, keep, own => { if (own > seq) seq = own })
      c.pubsub.topicValidators.set(c.topic, validate)
      c.pubsub.addEventListener('message', onMessage)
      c.pubsub.addEventListener('subscription-change', onSubscription)
      c.pubsub.subscribe(c.topic)
      await publishOwn()
    },
    stop () {
      running = false
      c.pubsub.removeEventListener('message', onMessage)
      c.pubsub.removeEventListener('subscription-change', onSubscription)
      c.pubsub.topicValidators.delete(c.topic)
    },
    records: () => held,
    publishOwn
  }
}
