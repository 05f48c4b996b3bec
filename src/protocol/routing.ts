/**
 * Where a peer sends an opened message, as one pure function of the message and the peer's view
 * (ProtocolPeer carries the route out). Tested by a table of cases in test/protocol/routing.test.ts.
 */

/** What a peer does with an opened message. */
export type Route =
  /** a commit extending a ledger head this peer lacks: evidence that it must catch up */
  | 'another-head'
  /** the round in progress takes it */
  | 'this-round'
  /** a later round's, or this one's before it started: kept until then (if the buffer has room) */
  | 'buffer'
  /** a commit for a round this peer left: a late certificate may form from it */
  | 'late-commit'
  /** a straggler's first advertisement or masked input for a round that ended: how late they come */
  | 'straggler'
  /** anything else of the round that just ended: nothing to do */
  | 'ignore'
  /** an older round's: rejected */
  | 'old'

export interface RoutedMessage {
  round: number
  isCommit: boolean
  /** a commit whose header extends another ledger head than this peer's (decoded and checked by the caller; false if unreadable) */
  extendsAnotherHead: boolean
  /** an advertisement or masked input that a recent ended round has not yet noted (Round.isNewStraggler) */
  newStraggler: boolean
}

export interface PeerView {
  /** the round this peer is in or last ran; null before its first */
  current: number | null
  /** the last certified round in its ledger (-1 before the first) */
  lastCertified: number
  /** set while a restarted peer waits for the network to pass the round it stopped in (firstRound) */
  waitingFor?: number
}

export function route (m: RoutedMessage, v: PeerView): Route {
  const cur = v.current ?? v.lastCertified + 1
  const r = m.round
  if (m.isCommit && r >= v.lastCertified + 1 && m.extendsAnotherHead) return 'another-head'
  if (v.current !== null && r === cur) return 'this-round'
  if (v.waitingFor !== undefined && m.isCommit && r < v.waitingFor && r === cur) return 'late-commit'
  if (r > cur || (v.current === null && r === cur)) return 'buffer'
  if (m.isCommit && r > v.lastCertified) return 'late-commit'
  if (m.newStraggler) return 'straggler'
  if (r === cur - 1) return 'ignore'
  return 'old'
}
