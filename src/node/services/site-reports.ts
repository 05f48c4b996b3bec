/**
 * Site reports: what each hospital agreed, by joining, to publish about itself for the model
 * card: how many images it trains and validates on (counts only) and, with DP, the ε it has
 * spent. The secure aggregation hides these (the ledger holds only sums), so each member signs
 * its own figures and publishes them on the consortium's report topic, again when its ε changes;
 * they are kept, checked and passed on like address records (record-board.ts). A report is what
 * its member says about itself, signed: the card says so.
 *
 * Wire: CBOR [payload, signature]; payload { v: 1, c: consortium id, p: peer id, q: sequence,
 * t: training images, va: validation images, e: ε spent in millionths, or null without DP };
 * signature: Ed25519 by p, purpose "site-report".
 */
import type { GossipSub } from '@libp2p/gossipsub'
import type { Startable } from '@libp2p/interface'
import { ed25519PublicKeyFromPeerId, verifySignature, type NodeIdentity } from '../../privacy/index.ts'
import { bytes, decodeBounded, encodeCanonical, equalBytes, obj, uint } from '../../protocol/codec.ts'
import type { Clock } from '../clock.ts'
import type { Logger } from '../logger.ts'
import { createRecordBoard, type BoardRecord } from './record-board.ts'

export const MAX_REPORT_BYTES = 1024
const PURPOSE = 'site-report'

export interface SiteFigures { trainImages: number, validationImages: number, epsilonSpent: number | null }
export interface SiteReport extends BoardRecord, SiteFigures {}

export function sealSiteReport (identity: NodeIdentity, consortium: Uint8Array, seq: bigint, f: SiteFigures): Uint8Array {
  const payload = encodeCanonical({
    v: 1, c: consortium, p: identity.peerId, q: Number(seq), t: f.trainImages, va: f.validationImages,
    e: f.epsilonSpent === null ? null : Math.round(f.epsilonSpent * 1e6)
  })
  return encodeCanonical([payload, identity.sign(PURPOSE, payload)])
}

/** Check and open a report: size, CBOR, schema, consortium, signature by the peer it names. Throws with the reason. */
export function openSiteReport (wire: Uint8Array, consortium: Uint8Array): SiteReport {
  const outer = decodeBounded(wire, MAX_REPORT_BYTES, 'site report')
  if (!Array.isArray(outer) || outer.length !== 2) throw new Error('site report must be [payload, signature]')
  const payload = bytes(outer[0], 'site report payload', undefined, MAX_REPORT_BYTES)
  const signature = bytes(outer[1], 'site report signature', 64)
  const p = obj(decodeBounded(payload, MAX_REPORT_BYTES, 'site report payload'), 'site report', ['v', 'c', 'p', 'q', 't', 'va', 'e'])
  if (p.v !== 1) throw new Error(`site report version ${String(p.v)}`)
  if (!equalBytes(bytes(p.c, 'consortium', 32), consortium)) throw new Error('site report of another consortium')
  if (typeof p.p !== 'string' || p.p.length > 100) throw new Error('site report: peer must be a peer id')
  let key: Uint8Array
  try { key = ed25519PublicKeyFromPeerId(p.p) } catch { throw new Error('site report: peer is not an Ed25519 peer id') }
  if (!verifySignature(key, PURPOSE, payload, signature)) throw new Error(`site report of ${p.p}: bad signature`)
  const e = p.e === null ? null : uint(p.e, 'epsilon', 1e15) / 1e6
  return { peer: p.p, seq: BigInt(uint(p.q, 'sequence')), trainImages: uint(p.t, 'training images', 1e9), validationImages: uint(p.va, 'validation images', 1e9), epsilonSpent: e, wire }
}

export interface SiteReportsComponents {
  identity: NodeIdentity
  consortium: Uint8Array
  isMember: (peer: string) => boolean
  pubsub: Pick<GossipSub, 'topicValidators' | 'subscribe' | 'unsubscribe' | 'publish' | 'addEventListener' | 'removeEventListener'>
  topic: string
  /** this site's figures now */
  figures: () => SiteFigures
  load: () => Uint8Array | null
  save: (data: string) => void
  log: Logger
  /** its time is the floor of this node's record numbers (they rise across restarts) */
  clock: Pick<Clock, 'now'>
}

export interface SiteReports extends Startable {
  records: () => ReadonlyMap<string, SiteReport>
  /** publish this site's figures again if they changed (after training: ε) */
  update: () => void
}

export function createSiteReports (c: SiteReportsComponents): SiteReports {
  const board = createRecordBoard<SiteReport>({
    kind: 'site report', self: c.identity.peerId, isMember: c.isMember, pubsub: c.pubsub, topic: c.topic, load: c.load, save: c.save, log: c.log, clock: c.clock,
    open: async wire => openSiteReport(wire, c.consortium),
    sealOwn: async seq => sealSiteReport(c.identity, c.consortium, seq, c.figures()),
    same: (a, b) => a.trainImages === b.trainImages && a.validationImages === b.validationImages && a.epsilonSpent === b.epsilonSpent,
    learnt: r => c.log.debug({ peer: r.peer }, `site report of a member: ${r.trainImages} training and ${r.validationImages} validation images${r.epsilonSpent === null ? '' : `, ε ${r.epsilonSpent}`}`)
  })
  return {
    start: async () => await board.start(),
    stop: () => board.stop(),
    records: () => board.records(),
    update: () => { void board.publishOwn().catch(e => c.log.warn(`site report not published: ${(e as Error).message}`)) }
  }
}

/** The reports a data directory keeps (sites.json), each checked again; peer → report. */
export function storedSiteReports (raw: Uint8Array | null, consortium: Uint8Array): Map<string, SiteReport> {
  const out = new Map<string, SiteReport>()
  if (raw === null) return out
  let records: Record<string, unknown> = {}
  try { records = JSON.parse(Buffer.from(raw).toString('utf8')).records ?? {} } catch { return out }
  for (const [peer, b64] of Object.entries(records)) {
    try {
      const r = openSiteReport(Buffer.from(String(b64), 'base64'), consortium)
      if (r.peer === peer) out.set(peer, r)
    } catch { /* a bad entry is left out */ }
  }
  return out
}
