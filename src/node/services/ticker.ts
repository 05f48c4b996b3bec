/**
 * The protocol's clock: the peer is told the time every TICK_MS so that its deadlines fire. After
 * the thread was blocked (training a round, in this thread), one tick is skipped: the network
 * input that queued up meanwhile goes in first, before any deadline counts it late.
 */
import type { Startable } from '@libp2p/interface'

export const TICK_MS = 100

export interface TickerOptions {
  intervalMs?: number
  /** the clock and the timer (tests give their own) */
  now?: () => number
  every?: (ms: number, fn: () => void) => () => void
}

const everyMs = (ms: number, fn: () => void): () => void => { const t = setInterval(fn, ms); return () => clearInterval(t) }

export function createTicker (tick: (now: number) => void, o: TickerOptions = {}): Startable {
  const intervalMs = o.intervalMs ?? TICK_MS
  const now = o.now ?? Date.now
  let cancel: (() => void) | null = null
  return {
    start () {
      let last = now()
      cancel = (o.every ?? everyMs)(intervalMs, () => {
        const t = now()
        const blocked = t - last > 5 * intervalMs
        last = t
        if (!blocked) tick(t)
      })
    },
    stop () { cancel?.() }
  }
}
