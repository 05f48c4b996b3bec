/**
 * The node's links to the other members: it re-dials missing members at a steady pace (libp2p
 * re-dials a lost member with growing backoff, which after a long outage can mean minutes of
 * waiting once the network is back), counts the members connected, and keeps the deny list: a
 * member on it is disconnected and refused until it is taken off (operators quarantine a member
 * with it; tests partition the network with it).
 */
import type { Startable } from '@libp2p/interface'
import { sleep, type Clock, type Timer } from '../clock.ts'
import type { Logger } from '../logger.ts'
import type { NodeMetrics } from '../metrics.ts'

export interface MembershipComponents {
  /** the other members' peer ids */
  members: readonly string[]
  connected: () => string[]
  dial: (peer: string, timeoutMs: number) => Promise<void>
  hangUp: (peer: string) => Promise<void>
  /** fired by the host when a peer connects or disconnects */
  onConnectionChange: (listener: (peer: string, connected: boolean) => void) => () => void
  /** the deny list as configured now (re-read on reload) */
  readDenyList: () => string[]
  /** the members refused now, as configured at start; shared with the connection gater, which refuses them */
  denied: Set<string>
  /** a member's name, and how it is connected now (direct, relayed, none), for the log */
  describe?: (peer: string) => { name: string, link: string }
  log: Logger
  metrics: Pick<NodeMetrics, 'peers'>
  clock: Clock
}

export interface MembershipInit {
  /** how often missing members are dialled (default 3 s) */
  redialMs?: number
  /** how often waitFor counts again (default 200 ms) */
  waitPollMs?: number
}

export interface Membership extends Startable {
  connectedMembers: () => string[]
  /** re-read the deny list: members added are cut off, members removed are dialled again */
  reloadDenyList: () => void
  /** dial a member now if it is not connected (its addresses were just learnt) */
  reach: (peer: string) => void
  /** resolves once `count()` reaches `want`, or after `timeoutMs` (with a warning), or when stopped */
  waitFor: (want: number, count: () => number, timeoutMs: number) => Promise<void>
}

export function createMembership (c: MembershipComponents, init: MembershipInit = {}): Membership {
  const redialMs = init.redialMs ?? 3000
  const waitPollMs = init.waitPollMs ?? 200
  // a dial may try a member's addresses one after another (a private one first, a relayed one last)
  const dialMs = Math.max(redialMs, 10_000)
  const others = new Set(c.members)
  let watchdog: Timer | null = null
  let unlisten: (() => void) | null = null
  let running = false

  const connectedMembers = (): string[] => c.connected().filter(p => others.has(p))
  async function dialMissing (): Promise<void> {
    if (!running) return
    const connected = new Set(c.connected())
    // in parallel: one member that does not answer must not delay the dials to the others
    await Promise.all(c.members.filter(m => !connected.has(m) && !c.denied.has(m)).map(async m => {
      try { await c.dial(m, dialMs) } catch { /* not reachable yet */ }
    }))
  }

  return {
    start () {
      running = true
      unlisten = c.onConnectionChange((peer, connected) => {
        const d = c.describe?.(peer)
        c.log.info({ peer, ...d, connected }, connected ? `member connected${d === undefined ? '' : `: ${d.name} (${d.link})`}` : `member disconnected${d === undefined ? '' : `: ${d.name}`}`)
        c.metrics.peers.set(connectedMembers().length)
      })
      watchdog = c.clock.setInterval(() => { void dialMissing() }, redialMs)
    },
    stop () {
      running = false
      c.clock.clearInterval(watchdog)
      unlisten?.()
    },
    connectedMembers,
    reach (peer) {
      if (!running || !others.has(peer) || c.denied.has(peer) || c.connected().includes(peer)) return
      void c.dial(peer, dialMs).catch(() => { /* the watchdog tries again */ })
    },
    reloadDenyList () {
      let deny: string[]
      try { deny = c.readDenyList() } catch (e) { c.log.error(`deny list not reloaded: ${(e as Error).message}`); return }
      const next = new Set(deny)
      const added = deny.filter(id => !c.denied.has(id))
      const removed = [...c.denied].filter(id => !next.has(id))
      c.denied.clear()
      for (const id of next) c.denied.add(id)
      for (const id of added) void c.hangUp(id).catch(() => {})
      c.log.info({ denied: deny.length }, `deny list reloaded: ${added.length} member(s) added, ${removed.length} removed`)
      if (removed.length > 0) void dialMissing()
    },
    async waitFor (want, count, timeoutMs) {
      const deadline = c.clock.now() + timeoutMs
      while (running && c.clock.now() < deadline) {
        if (count() >= want) return
        await sleep(c.clock, waitPollMs)
      }
      if (running) c.log.warn(`fewer than ${want} members reachable after waiting; starting anyway`)
    }
  }
}
