/**
 * How late the other members' messages came in one round, for the adaptive waits of later rounds
 * (ProtocolPeer.advertiseWaitMs, inputWaitMs): the latest arrival of another member's
 * advertisement after the round began here, and of another member's masked input after this
 * peer sent its own. Arrivals after the round ended count too: a straggler is still a straggler.
 */
export class Lateness {
  readonly #startedAt: number
  #inputSentAt = -1
  #lastInputAt = -1
  #lastAdvertAt = -1

  constructor (startedAt: number) { this.#startedAt = startedAt }

  inputSent (at: number): void { this.#inputSentAt = at }
  advertArrived (at: number): void { this.#lastAdvertAt = Math.max(this.#lastAdvertAt, at) }
  inputArrived (at: number): void { this.#lastInputAt = Math.max(this.#lastInputAt, at) }

  /** How long after this round began here the last other member's advertisement came. */
  get advertise (): number { return Math.max(0, this.#lastAdvertAt - this.#startedAt) }

  /** How long after this peer's own masked input the last other one came (null: no input sent). */
  get input (): number | null { return this.#inputSentAt < 0 ? null : Math.max(0, this.#lastInputAt - this.#inputSentAt) }
}
