/**
 * What one round asks of its driver, in the order it asked (actions.ts): a round only appends
 * here, and its driver takes the list. Kept apart from round.ts so that the round reads as its
 * protocol steps, not as the shapes of the actions it emits.
 */
import type { Phase, RoundAction } from './actions.ts'
import type { RejectCode } from './errors.ts'
import type { Rejection } from './exchange.ts'

export class RoundOutbox {
  readonly #actions: RoundAction[] = []
  readonly #round: number

  constructor (round: number) { this.#round = round }

  /** everything asked since the last take, oldest first */
  take (): RoundAction[] { return this.#actions.splice(0) }

  broadcast (msgType: string, wire: Uint8Array): void { this.#actions.push({ type: 'broadcast', msgType, wire, round: this.#round }) }

  /** hold this round's masked vectors (or their slices) for the members to fetch */
  publish (blobs: ReadonlyArray<{ hash: string, data: Uint8Array }>): void {
    for (const b of blobs) this.#actions.push({ type: 'publish-blob', hash: b.hash, data: b.data, what: 'masked-vector', round: this.#round })
  }

  /** fetch masked vectors (or slices) this peer lacks, each from its owner first */
  fetch (wanted: Iterable<{ hash: string, owner: number }>): void {
    for (const { hash, owner } of wanted) this.#actions.push({ type: 'fetch-blob', hash, owner, what: 'masked-vector' })
  }

  reject (code: RejectCode, reason: string, peer: number): void { this.#actions.push({ type: 'reject', code, reason, peer }) }
  rejectAll (rejects: readonly Rejection[]): void { for (const r of rejects) this.reject(r.code, r.reason, r.peer) }

  phase (phase: Phase, detail: string): void { this.#actions.push({ type: 'phase', phase, detail, round: this.#round }) }

  certified (c: Omit<Extract<RoundAction, { type: 'certified' }>, 'type'>): void {
    this.phase('certified', `certified by ${c.certificate.signatures.length} signatures`)
    this.#actions.push({ type: 'certified', ...c })
  }

  aborted (reason: string): void {
    this.phase('aborted', reason)
    this.#actions.push({ type: 'aborted', reason })
  }
}
