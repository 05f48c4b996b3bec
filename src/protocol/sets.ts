/**
 * The two sets a round agrees on (docs/PROTOCOL.md): the masking set (members that shared keys
 * with each other's advertisements) and the survivor set (members of it whose masked vectors
 * everyone can fetch). Who proposes each, how a proposer picks the masking set, and the checks
 * every peer makes of a proposal, as pure functions.
 */
import { equalBytes } from './codec.ts'
import { ProtocolError } from './errors.ts'
import { MSG, type AdvertiseBody, type OpenedMessage, type ShareKeysBody } from './messages.ts'

/** A member's share-keys message: which advertisement it saw from each member, and its sealed boxes. */
export interface ShareKeys { id: Uint8Array, wire: Uint8Array, view: Map<number, Uint8Array>, boxes: Map<number, Uint8Array> }

/** Check a share-keys message against the consortium's n members: each listed once, a box for each but itself, its own advertisement seen. */
export function parseShareKeys (msg: OpenedMessage<ShareKeysBody>, n: number): ShareKeys {
  const sender = msg.env.sender
  const view = new Map<number, Uint8Array>()
  for (const [idx, id] of msg.env.body.advertsSeen) {
    if (idx >= n || view.has(idx)) throw new ProtocolError('invalid', `share keys from ${sender} list member ${idx} twice or out of range`)
    view.set(idx, id)
  }
  const boxes = new Map<number, Uint8Array>()
  for (const [idx, box] of msg.env.body.boxes) {
    if (!view.has(idx) || idx === sender || boxes.has(idx)) throw new ProtocolError('invalid', `share keys from ${sender} hold a bad box for ${idx}`)
    boxes.set(idx, box)
  }
  if (!view.has(sender)) throw new ProtocolError('invalid', `share keys from ${sender} omit its own advertisement`)
  return { id: msg.id, wire: msg.wire, view, boxes }
}

/** Whether u's share keys name v's advertisement `advertId` and (for v ≠ u) hold a box for v. */
function sharedWith (u: number, keys: ShareKeys, v: number, advertId: Uint8Array): boolean {
  const seen = keys.view.get(v)
  return seen !== undefined && equalBytes(seen, advertId) && (u === v || keys.boxes.has(v))
}

/**
 * The proposer's masking set: the largest pairwise-consistent set among `candidates`, found by
 * removing the most inconsistent member until none is. Between equally inconsistent members it
 * removes one that was not among `lastSurvivors` (the previous round's), and of those the one
 * whose share keys came last: when a member rejoins, it and a member that stayed up are often
 * inconsistent (one missed the other's advertisement), and the one that stayed up keeps its place.
 */
export function largestConsistentSet (candidates: readonly number[], shareKeys: ReadonlyMap<number, ShareKeys>, advertIds: ReadonlyMap<number, Uint8Array>, lastSurvivors: readonly number[] = []): number[] {
  let members = [...candidates]
  const consistent = (u: number, v: number): boolean => sharedWith(u, shareKeys.get(u)!, v, advertIds.get(v)!)
  const stayed = new Set(lastSurvivors)
  for (;;) {
    const bad = members.map(u => members.filter(v => !consistent(u, v) || !consistent(v, u)).length)
    const most = Math.max(...bad)
    if (members.length === 0 || most === 0) return members
    const worst = members.map((u, i) => ({ u, i })).filter(({ i }) => bad[i] === most)
    const { i } = worst.findLast(({ u }) => !stayed.has(u)) ?? worst[worst.length - 1]
    members = members.filter((_, j) => j !== i)
  }
}

/**
 * Check a masking-set proposal's contents: at least `minSet` members, each with its advertisement,
 * each having shared keys with every other one's advertisement. Returns the members, sorted.
 */
export function checkMaskingSet (advertIds: ReadonlyMap<number, Uint8Array>, shareKeys: ReadonlyMap<number, ShareKeys>, minSet: number): number[] {
  const members = [...shareKeys.keys()].sort((a, b) => a - b)
  if (members.length < minSet) throw new ProtocolError('invalid', `masking set of ${members.length} is below the minimum`)
  for (const u of members) {
    if (!advertIds.has(u)) throw new ProtocolError('invalid', `masking set lacks member ${u}'s advertisement`)
  }
  for (const u of members) {
    const keys = shareKeys.get(u)!
    for (const v of members) {
      const seen = keys.view.get(v)
      if (seen === undefined || !equalBytes(seen, advertIds.get(v)!)) throw new ProtocolError('invalid', `member ${u} did not share keys with ${v}'s advertisement`)
      if (v !== u && !keys.boxes.has(v)) throw new ProtocolError('invalid', `member ${u} holds no box for ${v}`)
    }
  }
  return members
}

/** A masking-set proposal's messages (opened): each member's advertisement and share keys, at most one of each. */
export function splitMaskingProposal (messages: readonly OpenedMessage[], n: number): { adverts: Map<number, OpenedMessage<AdvertiseBody>>, shares: Map<number, ShareKeys> } {
  const adverts = new Map<number, OpenedMessage<AdvertiseBody>>()
  const shares = new Map<number, ShareKeys>()
  for (const m of messages) {
    if (m.env.type === MSG.advertise && !adverts.has(m.env.sender)) adverts.set(m.env.sender, m as OpenedMessage<AdvertiseBody>)
    else if (m.env.type === MSG.shareKeys && !shares.has(m.env.sender)) shares.set(m.env.sender, parseShareKeys(m as OpenedMessage<ShareKeysBody>, n))
    else throw new ProtocolError('invalid', 'masking-set proposal holds a duplicate or foreign message')
  }
  return { adverts, shares }
}
