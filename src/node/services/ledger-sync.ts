/**
 * Ledger sync on /medmesh/ledger/1.0.0: serves a member the certificates after the round it names
 * (and the last certified state, so that it can go on from there), and catches this node up from
 * connected members when it was away: the certificates and the state it receives are adopted only
 * after the protocol peer has verified them (hash chain, quorum signatures, state hash).
 */
import type { Startable } from '@libp2p/interface'
import type { Ledger, Certificate } from '../../protocol/ledger.ts'
import { decodeCertificate, encodeCertificate } from '../../protocol/ledger.ts'
import { hex } from '../../protocol/codec.ts'
import type { Logger } from '../logger.ts'
import type { NodeMetrics } from '../metrics.ts'
import type { StreamNetwork } from '../network.ts'
import { LEDGER_PROTOCOL, parseLedgerHeader, parseLedgerRequest, readFramed, sendFramed, type Channel } from '../wire.ts'

export interface LedgerSyncComponents {
  network: StreamNetwork
  isMember: (peerId: string) => boolean
  ledger: () => Ledger
  /** a certified state kept in the data directory, by hash */
  storedState: (hashHex: string) => Uint8Array | null
  /** verify and take the certificates (and the state the last one certifies); throws if they do not verify */
  adopt: (certificates: Certificate[], state: Uint8Array | null) => void
  /** the round in progress, which the bytes served are counted towards */
  round: () => number
  log: Logger
  metrics: Pick<NodeMetrics, 'sent'>
}

export interface LedgerSync extends Startable {
  /** ask connected members (those in `prefer` first) for certificates after this node's last one; adopt the first that verify */
  catchUp: (prefer?: string[]) => Promise<void>
}

export interface LedgerSyncInit {
  /** how long opening a stream to a member may take (default 10 s) */
  dialTimeoutMs?: number
}

const MAX_RESPONSE_BYTES = 64 * 1024 * 1024

export function createLedgerSync (c: LedgerSyncComponents, init: LedgerSyncInit = {}): LedgerSync {
  const dialTimeoutMs = init.dialTimeoutMs ?? 10_000
  let syncing = false

  async function serve (channel: Channel, remote: string): Promise<void> {
    if (!c.isMember(remote)) { channel.abort(new Error('not a member')); return }
    try {
      const { header: from } = await readFramed(channel, 1024, parseLedgerRequest, () => 0)
      const ledger = c.ledger()
      const entries = ledger.after(from)
      const lastModel = ledger.lastOf('update')
      const state = lastModel !== undefined && entries.length > 0 ? (c.storedState(hex(lastModel.header.stateHash)) ?? new Uint8Array(0)) : new Uint8Array(0)
      const certificates = entries.map(e => encodeCertificate(e.certificate))
      c.metrics.sent('ledger', c.round(), state.length + certificates.reduce((n, x) => n + x.length, 0))
      await sendFramed(channel, { c: certificates, n: state.length }, state)
    } catch (e) {
      c.log.warn({ peer: remote }, `ledger request failed: ${(e as Error).message}`)
      channel.abort(e as Error)
    }
  }

  async function catchUpFrom (prefer: string[]): Promise<void> {
    const preferred = new Set(prefer)
    const members = c.network.connected().filter(p => c.isMember(p)).sort((a, b) => Number(preferred.has(b)) - Number(preferred.has(a)))
    for (const p of members) {
      try {
        const channel = await c.network.open(p, LEDGER_PROTOCOL, dialTimeoutMs)
        await sendFramed(channel, { from: c.ledger().lastRound })
        const { header, body } = await readFramed(channel, MAX_RESPONSE_BYTES, parseLedgerHeader, h => h.n)
        if (header.certs.length === 0) continue
        c.adopt(header.certs.map(decodeCertificate), body.length > 0 ? body : null)
        c.log.info({ peer: p }, `caught up to round ${c.ledger().lastRound} from a member (certificates and state verified)`)
        return
      } catch (e) {
        c.log.warn({ peer: p }, `catch-up from this member failed: ${(e as Error).message}`)
      }
    }
  }

  return {
    async start () { await c.network.handle(LEDGER_PROTOCOL, serve, 16) },
    async stop () { await c.network.unhandle(LEDGER_PROTOCOL).catch(() => {}) },
    async catchUp (prefer = []) {
      if (syncing) return
      syncing = true
      try { await catchUpFrom(prefer) } finally { syncing = false }
    }
  }
}
