/**
 * What a ProtocolPeer is given (its options) and what a driver may see of the round it runs:
 * the peer's contract with the node and the simulator, apart from its mechanics (peer.ts).
 */
import type { NodeIdentity, RandomSource } from '../privacy/index.ts'
import type { Ledger } from './ledger.ts'
import type { GlobalState } from './model.ts'
import type { Phase, RoundKind } from './actions.ts'
import type { Manifest } from './manifest.ts'

/** What a driver may know of the round in progress. */
export interface RoundView {
  readonly number: number, readonly kind: RoundKind, readonly phase: Phase, readonly done: boolean
  /** the masking set is agreed and includes this peer: its input is due */
  readonly inputExpected: boolean
}

export interface PeerOptions {
  manifest: Manifest
  identity: NodeIdentity
  rng: RandomSource
  initialState: GlobalState
  /** a ledger restored from disk (verified), and the state it certifies */
  ledger?: Ledger
  state?: GlobalState
  /** which kind each round is (default: all 'update') */
  kindOf?: (round: number) => RoundKind
  /** this peer's input for a round, or null to give it later with setInput */
  inputFor?: (round: number, kind: RoundKind, state: GlobalState) => { values: ArrayLike<number>, count: number } | null
  /** stop starting rounds after this one */
  lastRound?: number
  /**
   * never start a round below this one: a restarted node passes one more than the last round it
   * took part in, since running that round again (new keys, perhaps another commit) would be
   * equivocation; it waits for the others' next round instead, or, when no certificate of that
   * round comes within roundMs (every member then has aborted it, or all of them stopped in it, as
   * in a consortium-wide outage), starts the next round itself
   */
  firstRound?: number
  /**
   * this peer's work is done (a node run for N rounds): it starts no further round once this
   * holds. Checked before a round starts, so nothing is sent for a round it will not finish.
   */
  finished?: (ledger: Ledger, round: number) => boolean
  /** adapt the advertisement and input waits to how late members came lately (default true) */
  adaptiveTimeouts?: boolean
  /** sliced consortia: check everything, fetching every survivor's whole masked vector as in the all-to-all mode (round.ts) */
  checkAll?: boolean
}
