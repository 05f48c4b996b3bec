/**
 * The protocol's clock: the peer is told the time every TICK_MS so that its deadlines fire. After
 * the thread was blocked (training a round, in this thread), one tick is skipped: the network
 * input that queued up meanwhile goes in first, before any deadline counts it late.
 */
import type { Startable } from '@libp2p/interface'

export const TICK_MS = 100

export function createTicker (tick: (now: number) => void, intervalMs = TICK_MS): Startable {
  let timer: NodeJS.Timeout | null = null
  return {
    start () {
      let last = Date.now()
      timer = setInterval(() => {
        const now = Date.now()
        const blocked = now - last > 5 * intervalMs
        last = now
        if (!blocked) tick(now)
      }, intervalMs)
    },
    stop () { if (timer !== null) clearInterval(timer) }
  }
}
