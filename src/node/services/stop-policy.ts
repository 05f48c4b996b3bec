/**
 * When a node run for N rounds (--rounds) is done: N model rounds are in its ledger, whether it
 * signed them or learnt them by catching up, and the last certified model is on disk. Then the
 * peer halts (it starts no further round, not even its advertisement) and the node lingers a
 * moment so that members still finishing can fetch the certified model from it, then stops.
 */
import type { Startable } from '@libp2p/interface'
import type { Ledger } from '../../protocol/ledger.ts'
import type { Logger } from '../logger.ts'

export interface StopPolicyComponents {
  /** model rounds to run; 0: run until stopped */
  rounds: number
  ledger: () => Ledger
  /** whether the last certified model is on disk */
  modelSaved: () => boolean
  halt: () => void
  stop: () => void
  log: Logger
  lingerMs?: number
}

export interface StopPolicy extends Startable {
  /** N model rounds are certified (the protocol peer asks this before it starts a round) */
  finished: () => boolean
  /** stop if done; true once the stop is under way */
  check: () => boolean
}

export function createStopPolicy (c: StopPolicyComponents): StopPolicy {
  let lingering: NodeJS.Timeout | null = null
  let done = false
  const finished = (): boolean => c.rounds > 0 && c.ledger().count('update') >= c.rounds
  return {
    start () {},
    stop () { if (lingering !== null) clearTimeout(lingering) },
    finished,
    check () {
      if (done) return true
      // a certificate learnt late arrives before its model: stop once the model is here and saved
      if (!finished() || !c.modelSaved()) return false
      done = true
      c.halt()
      c.log.info(`${c.rounds} round(s) certified: stopping`)
      lingering = setTimeout(() => c.stop(), c.lingerMs ?? 3000)
      return true
    }
  }
}
