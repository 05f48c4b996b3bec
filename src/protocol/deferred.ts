/**
 * The messages a round keeps because it cannot judge them yet: those that need the masking set
 * before it is agreed, and, in a consortium choosing its recipe (selection.ts), the masked inputs
 * and survivor proposals of a model round that starts a rung on a peer that began it without the
 * certificate ending the rung before: the state it trains from, and so the input length, may
 * still change with that certificate (the round is rebased), and judging inputs by a length that
 * may be wrong would reject honest members'. That wait lasts a phase at most: the round before may
 * have been aborted everywhere, and then no certificate comes (the input gate gives up at the
 * same time). Bounded: one member cannot crowd out the others. Pure.
 */
import type { OpenedMessage } from './messages.ts'

export class DeferredMessages {
  readonly #queue: OpenedMessage[] = []
  readonly #cap: number
  /** until when the input length may still change (null: it is known) */
  #lengthOpenUntil: number | null

  constructor (cap: number, lengthOpenUntil: number | null) {
    this.#cap = cap
    this.#lengthOpenUntil = lengthOpenUntil
  }

  get lengthUnknown (): boolean { return this.#lengthOpenUntil !== null }

  /** Keep a message for later; false when the queue is full. While the length is unknown, one of each kind per sender (another is dropped, not kept). */
  keep (msg: OpenedMessage): boolean {
    if (this.lengthUnknown && this.#queue.some(m => m.env.type === msg.env.type && m.env.sender === msg.env.sender && m.env.attempt === msg.env.attempt)) return true
    if (this.#queue.length >= this.#cap) return false
    this.#queue.push(msg)
    return true
  }

  /** Every message kept, to be taken in now (the masking set was agreed). */
  takeAll (): OpenedMessage[] { return this.#queue.splice(0) }

  /** The input length is known (the round was rebased, or `now` is past the wait): the messages to take in; none while it is still open. */
  settle (now?: number): OpenedMessage[] {
    if (this.#lengthOpenUntil === null || (now !== undefined && now < this.#lengthOpenUntil)) return []
    this.#lengthOpenUntil = null
    return this.takeAll()
  }
}
