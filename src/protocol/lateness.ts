/**
 * How late the other members' messages came in one round, for the adaptive waits of later rounds
 * (ProtocolPeer.advertiseWaitMs, inputWaitMs): the latest arrival of another member's
 * advertisement after the round began here, and of another member's masked input after this
 * peer sent its own. Arrivals after the round ended count too: a straggler is still a straggler.
 */
import { MSG } from './messages.ts'

export class Lateness {
  readonly #startedAt: number
  #inputSentAt = -1
  #lastInputAt = -1
  #lastAdvertAt = -1

  constructor (startedAt: number) { this.#startedAt = startedAt }

  inputSent (at: number): void { this.#inputSentAt = at }
  advertArrived (at: number): void { this.#lastAdvertAt = Math.max(this.#lastAdvertAt, at) }
  inputArrived (at: number): void { this.#lastInputAt = Math.max(this.#lastInputAt, at) }
  /** Another member's message of type `type` arrived: advertisements and masked inputs count. */
  arrived (type: number, at: number): void {
    if (type === MSG.maskedInput) this.inputArrived(at)
    if (type === MSG.advertise) this.advertArrived(at)
  }

  /** How long after this round began here the last other member's advertisement came. */
  get advertise (): number { return Math.max(0, this.#lastAdvertAt - this.#startedAt) }

  /** How long after this peer's own masked input the last other one came (null: no input sent). */
  get input (): number | null { return this.#inputSentAt < 0 ? null : Math.max(0, this.#lastInputAt - this.#inputSentAt) }
}

/**
 * Adaptive waits from the lateness of recent rounds (ProtocolPeer.inputWaitMs, advertiseWaitMs):
 * half again the latest lateness, so that a member that is regularly slow (a straggler: less
 * compute, more data) is waited for, within [floor, 4·phase]; one that drops costs only what the
 * others' pace warrants. With no history: the phase timeout.
 */
export function adaptiveWait (lateness: number[], phaseMs: number, floor = phaseMs / 4): number {
  if (lateness.length === 0) return phaseMs
  return Math.round(Math.min(4 * phaseMs, Math.max(floor, 1.5 * Math.max(...lateness) + 100)))
}
