/** The clock with a manual timer: a tick each interval, and one skipped after the thread was blocked. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createTicker } from '../../../src/node/services/ticker.ts'
import { ManualClock } from '../../../src/node/clock.ts'

test('ticks with the time; after a long gap one tick is skipped, then ticks resume', async () => {
  const manual = new ManualClock()
  // a thread blocked for 600 ms: the interval's next firing comes that much late
  let blocked = 0
  const clock = { ...manual, now: () => manual.now() + blocked }
  const ticks: number[] = []
  const ticker = createTicker({ clock, tick: now => ticks.push(now) }, { intervalMs: 100 })
  ticker.start()
  await manual.advance(200)
  blocked = 600
  await manual.advance(200)
  assert.equal(ticks, [100, 200, 1000], 'the tick after a 700 ms gap is skipped')
  ticker.stop()
  await manual.advance(1000)
  assert.is(ticks.length, 3, 'no tick after stop')
  assert.is(manual.pending, 0)
})

test('the manual clock fires timers in order of their due time, each at its time, and those set meanwhile', async () => {
  const clock = new ManualClock(1000)
  const fired: Array<[string, number]> = []
  clock.setTimeout(() => fired.push(['b', clock.now()]), 20)
  clock.setTimeout(() => { fired.push(['a', clock.now()]); clock.setTimeout(() => fired.push(['c', clock.now()]), 5) }, 10)
  const gone = clock.setTimeout(() => fired.push(['x', clock.now()]), 15)
  clock.clearTimeout(gone)
  const every = clock.setInterval(() => fired.push(['i', clock.now()]), 12)
  await clock.advance(25)
  assert.equal(fired, [['a', 1010], ['i', 1012], ['c', 1015], ['b', 1020], ['i', 1024]])
  assert.is(clock.now(), 1025)
  clock.clearInterval(every)
  assert.is(clock.pending, 0)
})

test.run()
