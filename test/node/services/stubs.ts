/** Stubbed components for the node's services: a network in memory, a logger that keeps what it is told. */
import type { Logger } from '../../../src/node/logger.ts'
import type { StreamNetwork } from '../../../src/node/network.ts'
import type { Channel } from '../../../src/node/wire.ts'

type Chunk = Uint8Array | { subarray: () => Uint8Array }

/** An async queue: what one end's sink writes, the other end's source yields. */
class Pipe {
  readonly #items: Uint8Array[] = []
  #waiting: ((r: IteratorResult<Uint8Array>) => void) | null = null
  #ended: Error | null | false = false
  push (x: Uint8Array): void {
    if (this.#waiting !== null) { const w = this.#waiting; this.#waiting = null; w({ value: x, done: false }) } else this.#items.push(x)
  }
  end (err: Error | null = null): void {
    if (this.#ended !== false) return
    this.#ended = err
    if (this.#waiting !== null) { const w = this.#waiting; this.#waiting = null; w({ value: undefined, done: true }) }
  }
  async * [Symbol.asyncIterator] (): AsyncGenerator<Uint8Array> {
    for (;;) {
      if (this.#items.length > 0) { yield this.#items.shift()!; continue }
      if (this.#ended !== false) { if (this.#ended !== null) throw this.#ended; return }
      const r = await new Promise<IteratorResult<Uint8Array>>(resolve => { this.#waiting = resolve })
      if (r.done === true) { if (this.#ended !== null && this.#ended !== false) throw this.#ended; return }
      yield r.value
    }
  }
}

/** Two channels, each end writing into the other's source. */
export function channelPair (): [Channel, Channel] {
  const ab = new Pipe()
  const ba = new Pipe()
  const end = (out: Pipe, into: Pipe): Channel => ({
    source: into,
    sink: async (src) => {
      for await (const chunk of src as AsyncIterable<Chunk>) out.push(chunk instanceof Uint8Array ? chunk.slice() : chunk.subarray().slice())
      out.end()
    },
    abort: (err) => { out.end(err); into.end(err) }
  })
  return [end(ab, ba), end(ba, ab)]
}

/** Peers in one process: each gets a StreamNetwork; all are connected to all. */
export class MemoryHub {
  readonly #handlers = new Map<string, Map<string, (channel: Channel, remote: string) => Promise<void>>>()
  readonly #peers: string[] = []
  network (self: string): StreamNetwork {
    this.#peers.push(self)
    this.#handlers.set(self, new Map())
    return {
      handle: async (protocol, handler) => { this.#handlers.get(self)!.set(protocol, handler) },
      unhandle: async protocol => { this.#handlers.get(self)!.delete(protocol) },
      open: async (peer, protocol) => {
        const handler = this.#handlers.get(peer)?.get(protocol)
        if (handler === undefined) throw new Error(`${peer} does not serve ${protocol}`)
        const [mine, theirs] = channelPair()
        void handler(theirs, self).catch(() => {})
        return mine
      },
      connected: () => this.#peers.filter(p => p !== self)
    }
  }
}

export interface LogLine { level: string, msg: string, fields: Record<string, unknown> }

/** A logger with pino's calls (a fields object first, or a message alone) that keeps every line. */
export function recordingLogger (): { log: Logger, lines: LogLine[] } {
  const lines: LogLine[] = []
  const at = (level: string) => (a: unknown, b?: unknown): void => {
    if (typeof a === 'string') lines.push({ level, msg: a, fields: {} })
    else lines.push({ level, msg: String(b ?? ''), fields: (a ?? {}) as Record<string, unknown> })
  }
  const log = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger
  return { log, lines }
}

/** Let pending promise callbacks, and what they start in turn, run (no timer: a stubbed service's work is promises only). */
export async function settle (turns = 10): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise(resolve => setImmediate(resolve))
}

/** Wait until `cond()` holds (polling), or fail after `ms`. */
export async function until (cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting')
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}
