/**
 * When a node is done: run for N model rounds (--rounds), N are in its ledger (signed here or
 * learnt by catching up) and the eval round after the last has had its turn; or the consortium's
 * validation AUC has not improved for `patience` eval rounds (early stopping, from the manifest).
 * Either way the last certified model must be on disk. Then the peer halts (it starts no further
 * round, not even its advertisement) and the node lingers a moment so that members still
 * finishing can fetch the certified model from it, then stops.
 */
import type { Startable } from '@libp2p/interface'
import type { Ledger } from '../../protocol/ledger.ts'
import { noLongerImproving, roundKind } from '../../protocol/validation.ts'
import type { Clock, Timer } from '../clock.ts'
import type { Logger } from '../logger.ts'

export interface StopPolicyComponents {
  ledger: () => Pick<Ledger, 'count' | 'entries' | 'lastRound'>
  /** the round under way (or the last one, once done), if any */
  round: () => { number: number, done: boolean } | null
  /** whether the last certified model is on disk */
  modelSaved: () => boolean
  halt: () => void
  stop: () => void
  log: Logger
  clock: Clock
}

export interface StopPolicyInit {
  /** model rounds to run; 0: run until stopped */
  rounds: number
  /** eval rounds without a better validation AUC that end training (0: never early) */
  patience: number
  /** how long a node that is done lingers before it stops (members still finishing fetch from it) */
  lingerMs?: number
}

export interface StopPolicy extends Startable {
  /** no round `round` for this node (the protocol peer asks before it starts one) */
  finished: (ledger: Pick<Ledger, 'count' | 'entries'>, round: number) => boolean
  /** stop if done (with the round that would come next); true once the stop is under way */
  check: () => boolean
}

/** Whether round `round` is one too many: a model round after the last (--rounds) or after `patience` rounds without improvement. */
export function roundsFinished (init: Pick<StopPolicyInit, 'rounds' | 'patience'>): StopPolicy['finished'] {
  // a model round is done with its eval round: stop before the next model round
  return (ledger, round) => roundKind(round) === 'update' &&
    ((init.rounds > 0 && ledger.count('update') >= init.rounds) || noLongerImproving(ledger, init.patience))
}

export function createStopPolicy (c: StopPolicyComponents, init: StopPolicyInit): StopPolicy {
  let lingering: Timer | null = null
  let done = false
  const finished = roundsFinished(init)
  return {
    start () {},
    stop () { c.clock.clearTimeout(lingering) },
    finished,
    check () {
      if (done) return true
      // a certificate learnt late arrives before its model: stop once the model is here and saved
      const ledger = c.ledger()
      // a round under way runs to its end (the eval round of the last model round); else the next one decides
      const current = c.round()
      const next = current === null ? ledger.lastRound + 1 : current.done ? current.number + 1 : current.number
      if (!finished(ledger, next) || !c.modelSaved()) return false
      done = true
      c.halt()
      if (init.rounds > 0 && ledger.count('update') >= init.rounds) c.log.info({ stop: 'rounds', rounds: init.rounds }, `${init.rounds} round(s) certified: stopping`)
      else c.log.info({ stop: 'patience', patience: init.patience }, `validation AUC has not improved for ${init.patience} round(s): stopping early`)
      lingering = c.clock.setTimeout(() => c.stop(), init.lingerMs ?? 3000)
      return true
    }
  }
}
