/**
 * The node's one clock. Every service reads the time and sets its timers through the Clock it is
 * given in its components (its timings come in its init), so that a test can drive them all with
 * a ManualClock instead of sleeping: `advance(ms)` fires the timers that fall due, in order.
 */

/** A timer that may be told not to keep the process alive (Node's Timeout is one). */
export interface Timer { unref: () => unknown }

export interface Clock {
  /** milliseconds since the epoch */
  now: () => number
  setTimeout: (fn: () => void, ms: number) => Timer
  clearTimeout: (timer: Timer | null | undefined) => void
  setInterval: (fn: () => void, ms: number) => Timer
  clearInterval: (timer: Timer | null | undefined) => void
}

/** The system's clock: Date.now and Node's timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: t => { if (t != null) clearTimeout(t as NodeJS.Timeout) },
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: t => { if (t != null) clearInterval(t as NodeJS.Timeout) }
}

/** Resolves after `ms` on `clock`. */
export async function sleep (clock: Clock, ms: number): Promise<void> {
  await new Promise<void>(resolve => { clock.setTimeout(resolve, ms) })
}

/** `p` settled, or `ms` passed on `clock`, whichever comes first (a rejection counts as settled). */
export async function within (clock: Clock, ms: number, p: Promise<unknown> | undefined): Promise<void> {
  let timer: Timer | undefined
  const settled = (p ?? Promise.resolve()).then(() => {}, () => {})
  await Promise.race([settled, new Promise<void>(resolve => { timer = clock.setTimeout(resolve, ms) })]).finally(() => clock.clearTimeout(timer))
}

interface Scheduled extends Timer { due: number, seq: number, fn: () => void, every: number | null }

/**
 * A clock for tests: time stands still until `advance(ms)`, which fires every timer that falls
 * due within those ms in the order of its due time (then of its setting), each at its own time,
 * letting what each one started run before the next; a timer set meanwhile fires too if it falls
 * due within the window.
 */
export class ManualClock implements Clock {
  #now: number
  #seq = 0
  #timers: Scheduled[] = []

  constructor (start = 0) { this.#now = start }

  now = (): number => this.#now
  setTimeout = (fn: () => void, ms: number): Timer => this.#add(fn, ms, null)
  setInterval = (fn: () => void, ms: number): Timer => this.#add(fn, ms, Math.max(1, ms))
  clearTimeout = (t: Timer | null | undefined): void => { this.#timers = this.#timers.filter(x => x !== t) }
  clearInterval = (t: Timer | null | undefined): void => { this.clearTimeout(t) }

  /** timers set and not yet fired (or cleared) */
  get pending (): number { return this.#timers.length }

  /** Move time on by `ms`, firing the timers that fall due on the way. */
  async advance (ms: number): Promise<void> {
    const until = this.#now + ms
    await settle()
    for (;;) {
      const next = this.#timers.reduce<Scheduled | null>((a, t) => a === null || t.due < a.due || (t.due === a.due && t.seq < a.seq) ? t : a, null)
      if (next === null || next.due > until) break
      this.#now = Math.max(this.#now, next.due)
      if (next.every === null) this.clearTimeout(next); else { next.due += next.every; next.seq = this.#seq++ }
      next.fn()
      await settle()
    }
    this.#now = until
  }

  #add (fn: () => void, ms: number, every: number | null): Timer {
    const t: Scheduled = { due: this.#now + Math.max(0, ms), seq: this.#seq++, fn, every, unref: () => t }
    this.#timers.push(t)
    return t
  }
}

/** Let promise callbacks and whatever they start (short of real timers) run. */
async function settle (): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve))
}
