/**
 * Whether other members can dial this node, found by asking them (/medmesh/dialback/1): a member
 * that is asked opens a new connection to the addresses the asker lists and says which one
 * answered. libp2p's AutoNAT does the same for the open network, but it wants several unrelated
 * peers to agree and ignores private addresses, which a consortium of a few hospitals on private
 * links does not have; here any member's word is enough, and only members ask or are asked.
 *
 * A node that no member could dial back listens through relays (circuit relay v2 on the members
 * that are reachable; see host.ts), and its address record then names the relayed addresses. It
 * refuses to be a relay itself once it knows that it is not reachable.
 */
import type { Startable } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { Clock, Timer } from '../clock.ts'
import type { Logger } from '../logger.ts'
import type { StreamNetwork } from '../network.ts'
import { readFramed, sendFramed, type Channel } from '../wire.ts'

export const DIALBACK_PROTOCOL = '/medmesh/dialback/1'
/** addresses one request may name, and the longest one */
const MAX_ADDRESSES = 8
const MAX_ADDRESS_CHARS = 256

export type Reachable = 'public' | 'relayed' | 'unknown'

export interface ReachabilityComponents {
  network: Pick<StreamNetwork, 'handle' | 'unhandle' | 'open'>
  isMember: (peer: string) => boolean
  /** members connected to this node directly (not through a relay) */
  directMembers: () => string[]
  /** this node's own direct addresses (TCP, no relay), to be dialled back */
  ownAddresses: () => string[]
  /** this node's relayed addresses now (after reservations on relays) */
  relayedAddresses: () => string[]
  /** dial `address` of `peer` on a new connection (not one that exists), then close it */
  dialBack: (peer: string, address: string, timeoutMs: number) => Promise<void>
  /** start listening through relays (circuit relay v2 reservations on two members) */
  listenRelayed: () => Promise<void>
  /** fired when a peer connects or disconnects: a first member connected is the time to ask */
  onConnectionChange: (listener: (peer: string, connected: boolean) => void) => () => void
  log: Logger
  clock: Clock
}

export interface ReachabilityInit {
  /** how often to check again (default 5 min) */
  intervalMs?: number
  /** how long a dial-back may take (default 3 s) */
  dialBackMs?: number
  /** how long after a member connects it is asked (identify runs first; default 500 ms) */
  askDelayMs?: number
  /** a member may ask this node again only after this long (asking costs the asked a few dials; default 10 s) */
  askAgainMs?: number
}

export interface Reachability extends Startable {
  /** public: a member dialled this node back; relayed: none could, and it listens through relays; unknown: not found out yet */
  reachable: () => Reachable
  /** whether this node relays for others: not once it knows that members cannot reach it */
  relaying: () => boolean
  /** ask now (a member connected, or the addresses changed) */
  check: () => Promise<void>
}

/** The request: the asker's own addresses, each a TCP multiaddr without a relay hop. */
export function parseDialBackRequest (v: unknown): string[] {
  const addrs = (v as { a?: unknown })?.a
  if (!Array.isArray(addrs) || addrs.length === 0 || addrs.length > MAX_ADDRESSES) throw new Error(`a dial-back request names 1 to ${MAX_ADDRESSES} addresses`)
  return addrs.map(a => {
    if (typeof a !== 'string' || a.length > MAX_ADDRESS_CHARS) throw new Error('a dial-back address must be a short string')
    const ma = multiaddr(a)
    const names = ma.getComponents().map(c => c.name)
    if (!names.includes('tcp') || names.includes('p2p-circuit') || names.includes('p2p')) throw new Error(`not a direct TCP address: ${a}`)
    return ma.toString()
  })
}

/**
 * The asked member's side: dial the asker back on the addresses it names, and say which one
 * answered. `served` holds when each member last asked.
 */
function dialBackHandler (c: Pick<ReachabilityComponents, 'isMember' | 'dialBack' | 'log' | 'clock'>, served: Map<string, number>, askAgainMs: number, dialBackMs: number): (channel: Channel, remote: string) => Promise<void> {
  return async (channel, remote) => {
    if (!c.isMember(remote)) { channel.abort(new Error('not a member')); return }
    try {
      // one request per member per askAgainMs: asking costs the asked a few dials
      const last = served.get(remote) ?? -Infinity
      if (c.clock.now() - last < askAgainMs) throw new Error('asked again too soon')
      served.set(remote, c.clock.now())
      const { header: addrs } = await readFramed(channel, 4096, parseDialBackRequest, () => 0)
      let ok: string | null = null
      for (const a of addrs) {
        try { await c.dialBack(remote, a, dialBackMs); ok = a; break } catch { /* not reachable there */ }
      }
      await sendFramed(channel, { ok })
    } catch (e) {
      c.log.warn({ peer: remote }, `dial-back request refused: ${(e as Error).message}`)
      channel.abort(e as Error)
    }
  }
}

/** Ask `peer` to dial this node back on `addrs`: whether it could, or null if it did not answer. */
async function askDialBack (network: Pick<StreamNetwork, 'open'>, peer: string, addrs: string[], dialBackMs: number): Promise<boolean | null> {
  try {
    const channel = await network.open(peer, DIALBACK_PROTOCOL, dialBackMs)
    await sendFramed(channel, { a: addrs })
    const { header } = await readFramed(channel, 1024, v => (v as { ok?: unknown })?.ok, () => 0)
    return typeof header === 'string'
  } catch { return null }
}

export function createReachability (c: ReachabilityComponents, init: ReachabilityInit = {}): Reachability {
  const intervalMs = init.intervalMs ?? 5 * 60_000
  const dialBackMs = init.dialBackMs ?? 3000
  const askDelayMs = init.askDelayMs ?? 500
  const askAgainMs = init.askAgainMs ?? 10_000
  let state: 'public' | 'private' | 'unknown' = 'unknown'
  let relayListening = false
  let timer: Timer | null = null
  let unlisten: (() => void) | null = null
  let checking: Promise<void> | null = null
  const serve = dialBackHandler(c, new Map<string, number>(), askAgainMs, dialBackMs)

  async function checkOnce (): Promise<void> {
    const addrs = c.ownAddresses().slice(0, MAX_ADDRESSES)
    const asked = c.directMembers().slice(0, 3)
    if (addrs.length === 0 || asked.length === 0) return
    const answers = (await Promise.all(asked.map(async p => await askDialBack(c.network, p, addrs, dialBackMs)))).filter((x): x is boolean => x !== null)
    if (answers.length === 0) return
    const next = answers.includes(true) ? 'public' : 'private'
    if (next !== state) {
      state = next
      c.log.info({ reachable: next === 'public' ? 'public' : 'relayed' }, next === 'public'
        ? `reachable: members can dial this node directly (${answers.filter(Boolean).length} of ${answers.length} asked)`
        : `not reachable from other members (${answers.length} asked): listening through relays on reachable members`)
    }
    if (state === 'private' && !relayListening) {
      relayListening = true
      await c.listenRelayed().catch(e => { relayListening = false; c.log.warn(`relay listening failed: ${(e as Error).message}`) })
    }
  }

  return {
    async start () {
      await c.network.handle(DIALBACK_PROTOCOL, serve, 4)
      timer = c.clock.setInterval(() => { void this.check() }, intervalMs)
      timer.unref()
      // until it is known, ask whenever a member connects (after a moment: identify runs first)
      unlisten = c.onConnectionChange((peer, connected) => {
        if (connected && state === 'unknown' && c.isMember(peer)) c.clock.setTimeout(() => { void this.check() }, askDelayMs).unref()
      })
    },
    async stop () {
      unlisten?.()
      c.clock.clearInterval(timer)
      await c.network.unhandle(DIALBACK_PROTOCOL)
    },
    reachable: () => state === 'public' ? 'public' : state === 'private' && c.relayedAddresses().length > 0 ? 'relayed' : 'unknown',
    // a node relays unless it knows members cannot reach it (while unknown, only members that
    // reach it directly could ask, so relaying for them costs nothing wrong)
    relaying: () => state !== 'private',
    async check () {
      checking ??= checkOnce().finally(() => { checking = null })
      await checking
    }
  }
}
