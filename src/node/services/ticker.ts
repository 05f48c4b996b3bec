/**
 * The protocol's clock: the peer is told the time every `intervalMs` so that its deadlines fire.
 * After the thread was blocked (training a round, in this thread), one tick is skipped: the network
 * input that queued up meanwhile goes in first, before any deadline counts it late.
 */
import type { Startable } from '@libp2p/interface'
import type { Clock, Timer } from '../clock.ts'

export const TICK_MS = 100

export interface TickerComponents {
  clock: Clock
  /** tell the protocol peer the time */
  tick: (now: number) => void
}

export interface TickerInit { intervalMs?: number }

export function createTicker (c: TickerComponents, init: TickerInit = {}): Startable {
  const intervalMs = init.intervalMs ?? TICK_MS
  let timer: Timer | null = null
  return {
    start () {
      let last = c.clock.now()
      timer = c.clock.setInterval(() => {
        const t = c.clock.now()
        const blocked = t - last > 5 * intervalMs
        last = t
        if (!blocked) c.tick(t)
      }, intervalMs)
    },
    stop () { c.clock.clearInterval(timer); timer = null }
  }
}
