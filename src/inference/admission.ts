/**
 * Who may ask a holder, how often, and for how long their keys are kept. Pure bookkeeping over a
 * clock: sessions expire, each client holds at most one (a new one replaces it), the holder keeps
 * at most `maxSessions` (keys are tens of megabytes), and each client has a token bucket of
 * `perMinute` queries (opening a session costs ten).
 */
export interface AdmissionOptions {
  perMinute: number
  sessionMs: number
  maxSessions: number
  now?: () => number
}

export interface SessionEntry { id: string, client: string, expires: number }

export type Verdict = { ok: true } | { ok: false, reason: string }

export const SESSION_COST = 10

export class Admission {
  readonly perMinute: number
  readonly sessionMs: number
  readonly maxSessions: number
  private readonly now: () => number
  private readonly buckets = new Map<string, { tokens: number, at: number }>()
  private readonly sessions = new Map<string, SessionEntry>()

  constructor (o: AdmissionOptions) {
    this.perMinute = o.perMinute
    this.sessionMs = o.sessionMs
    this.maxSessions = o.maxSessions
    this.now = o.now ?? Date.now
  }

  /** Takes `cost` tokens from the client's bucket, or says when it may ask again. */
  charge (client: string, cost = 1): Verdict {
    const t = this.now()
    const b = this.buckets.get(client) ?? { tokens: this.perMinute, at: t }
    b.tokens = Math.min(this.perMinute, b.tokens + (t - b.at) * this.perMinute / 60_000)
    b.at = t
    this.buckets.set(client, b)
    if (b.tokens < cost) {
      const waitMs = Math.ceil((cost - b.tokens) * 60_000 / this.perMinute)
      return { ok: false, reason: `over the rate of ${this.perMinute} queries a minute: ask again in ${Math.ceil(waitMs / 1000)} s` }
    }
    b.tokens -= cost
    return { ok: true }
  }

  /**
   * Records a new session for `client`; returns the ids of sessions to free (the client's previous
   * one, expired ones, and the oldest when the holder is full).
   */
  open (id: string, client: string): { entry: SessionEntry, evicted: string[] } {
    const evicted = this.expire()
    for (const s of this.sessions.values()) if (s.client === client) { this.sessions.delete(s.id); evicted.push(s.id) }
    while (this.sessions.size >= this.maxSessions) {
      const oldest = [...this.sessions.values()].sort((a, b) => a.expires - b.expires)[0]
      this.sessions.delete(oldest.id)
      evicted.push(oldest.id)
    }
    const entry = { id, client, expires: this.now() + this.sessionMs }
    this.sessions.set(id, entry)
    return { entry, evicted }
  }

  /** The session if it exists, belongs to `client` and has not expired; else why not. */
  session (id: string, client: string): { ok: true, entry: SessionEntry } | { ok: false, reason: string } {
    const s = this.sessions.get(id)
    if (s === undefined || s.client !== client) return { ok: false, reason: 'no such session: open one with your keys' }
    if (s.expires <= this.now()) return { ok: false, reason: 'the session has expired: open a new one with your keys' }
    return { ok: true, entry: s }
  }

  /** Removes expired sessions; their ids, to free. */
  expire (): string[] {
    const t = this.now()
    const gone = [...this.sessions.values()].filter(s => s.expires <= t).map(s => s.id)
    for (const id of gone) this.sessions.delete(id)
    return gone
  }

  get count (): number { return this.sessions.size }
}
