/**
 * What one round has seen of the members' messages: the first of each kind per sender (a second,
 * different one is equivocation), and the messages it has opened, by the hash of their bytes (a
 * proposal carries members' messages that every peer has mostly received already: the same bytes
 * need not have their signature checked twice). Bounded: a round has a few messages per member and attempt.
 */
import { equalBytes, hash, hex } from './codec.ts'
import { ProtocolError } from './errors.ts'
import { MSG, MSG_NAME, openMessage, type MessageContext, type OpenedMessage } from './messages.ts'

export class RoundMessages {
  readonly #seen = new Map<string, Uint8Array>() // replay / equivocation: key -> message id
  readonly #opened = new Map<string, OpenedMessage>()
  readonly #context: MessageContext
  readonly #round: number
  readonly #n: number

  constructor (context: MessageContext, round: number, members: number) {
    this.#context = context
    this.#round = round
    this.#n = members
  }

  /**
   * First message under `key` (its kind and sender): true; the same again: false; a different one:
   * `onEquivocation(sender)` then a ProtocolError.
   */
  firstOf (key: string, msg: OpenedMessage, onEquivocation: (sender: number) => void): boolean {
    const prior = this.#seen.get(key)
    if (prior === undefined) { this.#seen.set(key, msg.id); return true }
    if (equalBytes(prior, msg.id)) return false
    onEquivocation(msg.env.sender)
    throw new ProtocolError('equivocation', `member ${msg.env.sender} sent two different ${MSG_NAME[msg.env.type]} messages (${key})`)
  }

  has (key: string): boolean { return this.#seen.has(key) }

  /** One of many messages of a kind a sender may send (slice sums): false if seen; a ProtocolError past the round's bound. */
  another (key: string, msg: OpenedMessage): boolean {
    if (this.#seen.has(key)) return false
    if (this.#seen.size > 64 * this.#n) throw new ProtocolError('invalid', `too many messages in round ${this.#round}; ${MSG_NAME[msg.env.type]} from ${msg.env.sender} dropped`)
    this.#seen.set(key, msg.id)
    return true
  }

  /** The key under which a straggler's advertisement or masked input is noted after the round ended (null for other kinds). */
  static lateKey (msg: OpenedMessage): string | null {
    return msg.env.type === MSG.advertise ? `adv:${msg.env.sender}` : msg.env.type === MSG.maskedInput ? `mi:${msg.env.sender}` : null
  }

  /** Whether a straggler's message is the first of its kind from its sender; `note` records it. */
  isNewLate (msg: OpenedMessage, note = false): boolean {
    const key = RoundMessages.lateKey(msg)
    if (key === null || this.#seen.has(key)) return false
    if (note) this.#seen.set(key, msg.id)
    return true
  }

  remember (msg: OpenedMessage): void {
    if (this.#opened.size < 16 * this.#n) this.#opened.set(hex(hash(msg.wire)), msg)
  }

  /** A member's message carried inside a proposal: opened (or found opened) and of this round. */
  open (wire: Uint8Array): OpenedMessage {
    const m = this.#opened.get(hex(hash(wire))) ?? openMessage(wire, this.#context)
    if (m.env.round !== this.#round) throw new ProtocolError('invalid', 'proposal carries a message of another round')
    return m
  }
}
