/**
 * When a peer hands its input to the round under way. An update trains on the last certified
 * state and an eval judges it, so neither may run on a stale model: a peer still fetching the
 * state (certified by the others' signatures before its own sum was done, as happens in sliced
 * mode) waits for it. A peer that began an update without the previous round's certificate (it
 * timed out of that round while the others certified it) waits up to a phase for that late
 * certificate, with the statistics or state it carries, before it trains on what it holds: the
 * round may have been aborted everywhere, and then nothing will come. Statistics need no state.
 */
import type { RoundKind } from './actions.ts'

export interface InputGate {
  kind: RoundKind
  round: number
  /** the last round this peer holds a certificate of */
  lastCertified: number
  /** a certified state is being fetched */
  fetchingState: boolean
  /** the state held is the certified one of the round before this one */
  stateCurrent: boolean
  /** milliseconds since this round began here */
  sinceStart: number
  phaseMs: number
}

export function inputMayGo (g: InputGate): boolean {
  if (g.kind === 'eval') return g.stateCurrent
  if (g.kind === 'update') return !g.fetchingState && (g.lastCertified >= g.round - 1 || g.sinceStart >= g.phaseMs)
  return true
}
