/**
 * Blob exchange on /medmesh/blob/1.0.0: serves the blobs this node holds (masked vectors of recent
 * rounds, certified states on disk) to members that ask by hash, and fetches blobs by hash from
 * any member that holds one. Blobs are content-addressed: a fetched blob counts only if its
 * SHA-256 is the hash asked for, whoever served it, and once fetched this node serves it too.
 */
import type { Startable } from '@libp2p/interface'
import { sleep, type Clock } from '../clock.ts'
import type { Logger } from '../logger.ts'
import type { NodeMetrics } from '../metrics.ts'
import type { StreamNetwork } from '../network.ts'
import { BLOB_PROTOCOL, checkBlob, parseBlobHeader, parseBlobRequest, readFramed, sendFramed } from '../wire.ts'
import { hex } from '../../protocol/codec.ts'

export type BlobKind = 'masked-vector' | 'state'

export interface BlobExchangeComponents {
  network: StreamNetwork
  isMember: (peerId: string) => boolean
  /** a certified state kept in the data directory, by hash */
  storedState: (hashHex: string) => Uint8Array | null
  log: Logger
  metrics: Pick<NodeMetrics, 'sent'>
  clock: Clock
}

export interface BlobExchangeInit {
  /** pause between passes over the members when none served the blob (default 500 ms) */
  retryMs?: number
  /** how long opening a stream to a member may take (default 30 s) */
  dialTimeoutMs?: number
}

export interface FetchRequest {
  hash: string
  what: BlobKind
  round: number
  /** the member to ask first (the one that made or certified the blob) */
  preferred: string | undefined
  /** asked before each attempt: false ends the fetch (the round moved on, the node stops) */
  wanted: () => boolean
}

export interface BlobExchange extends Startable {
  publish: (hash: string, data: Uint8Array, what: BlobKind, round: number) => void
  /** forget blobs made before `round` (states stay on disk) */
  prune: (round: number) => void
  /** the blob, from whichever member holds it, its SHA-256 checked against the hash asked for (the node tells the protocol so: hashed once), retried until it comes or is no longer wanted (then null; null too when a fetch of it is already under way) */
  fetch: (request: FetchRequest) => Promise<Uint8Array | null>
}

export function createBlobExchange (c: BlobExchangeComponents, init: BlobExchangeInit = {}): BlobExchange {
  const retryMs = init.retryMs ?? 500
  const dialTimeoutMs = init.dialTimeoutMs ?? 30_000
  const held = new Map<string, { data: Uint8Array, what: BlobKind, round: number }>()
  const fetching = new Set<string>()
  let running = false

  async function serve (channel: Parameters<Parameters<StreamNetwork['handle']>[1]>[0], remote: string): Promise<void> {
    if (!c.isMember(remote)) { c.log.warn({ peer: remote }, 'blob request from a non-member refused'); channel.abort(new Error('not a member')); return }
    try {
      const { header: h } = await readFramed(channel, 1024, parseBlobRequest, () => 0)
      const key = hex(h)
      // a state served from the disk (after a restart) is counted in the total only: its round is not known by hash
      const blob = held.get(key) ?? { data: c.storedState(key), what: 'state' as const, round: -1 }
      if (blob.data === null) { await sendFramed(channel, { n: -1 }); return }
      c.metrics.sent(blob.what, blob.round, blob.data.length)
      await sendFramed(channel, { n: blob.data.length }, blob.data)
    } catch (e) {
      c.log.warn({ peer: remote }, `blob request failed: ${(e as Error).message}`)
      channel.abort(e as Error)
    }
  }

  /** one pass over the members, the preferred one first: the blob, or null */
  async function fetchOnce (r: FetchRequest): Promise<Uint8Array | null> {
    const members = c.network.connected().filter(p => c.isMember(p)).sort((a, b) => (a === r.preferred ? -1 : b === r.preferred ? 1 : 0))
    for (const p of members) {
      try {
        const channel = await c.network.open(p, BLOB_PROTOCOL, dialTimeoutMs)
        await sendFramed(channel, { h: Uint8Array.from(Buffer.from(r.hash, 'hex')) })
        const { header: n, body } = await readFramed(channel, 1024, parseBlobHeader, n => n)
        if (n < 0) continue
        if (!checkBlob(r.hash, body)) { c.log.warn({ peer: p }, 'a member served a blob that does not match its hash'); continue }
        return body
      } catch (e) {
        c.log.debug({ peer: p }, `blob fetch failed: ${(e as Error).message}`)
      }
    }
    return null
  }

  async function fetchLoop (r: FetchRequest): Promise<Uint8Array | null> {
    while (running && r.wanted()) {
      const body = await fetchOnce(r)
      if (body !== null) {
        // content-addressed: whoever holds a blob may serve it, this node included from now on
        held.set(r.hash, { data: body, what: r.what, round: r.round })
        return body
      }
      await sleep(c.clock, retryMs)
    }
    return null
  }

  return {
    async start () {
      running = true
      await c.network.handle(BLOB_PROTOCOL, serve, 64)
    },
    async stop () {
      running = false
      await c.network.unhandle(BLOB_PROTOCOL).catch(() => {})
      held.clear()
    },
    publish (hash, data, what, round) { held.set(hash, { data, what, round }) },
    prune (round) { for (const [h, b] of held) if (b.round < round) held.delete(h) },
    async fetch (r) {
      // one fetch per hash at a time: a second request for it gets null, the first one delivers
      if (fetching.has(r.hash)) return null
      fetching.add(r.hash)
      try { return await fetchLoop(r) } finally { fetching.delete(r.hash) }
    }
  }
}
