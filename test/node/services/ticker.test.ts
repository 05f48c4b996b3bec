/** The clock with a stubbed timer: a tick each interval, and one skipped after the thread was blocked. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createTicker } from '../../../src/node/services/ticker.ts'

test('ticks with the time; after a long gap one tick is skipped, then ticks resume', () => {
  let t = 0
  let fire: (() => void) | null = null
  let cancelled = false
  const ticks: number[] = []
  const ticker = createTicker(now => ticks.push(now), { intervalMs: 100, now: () => t, every: (_ms, fn) => { fire = fn; return () => { cancelled = true } } })
  ticker.start()
  for (const at of [100, 200, 900, 1000]) { t = at; fire!() }
  assert.equal(ticks, [100, 200, 1000], 'the tick after a 700 ms gap is skipped')
  ticker.stop()
  assert.ok(cancelled)
})

test.run()
