/** What a peer does with an opened message (src/protocol/routing.ts): a table of cases. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { route, type PeerView, type Route, type RoutedMessage } from '../../src/protocol/routing.ts'

const msg = (round: number, o: Partial<RoutedMessage> = {}): RoutedMessage => ({ round, isCommit: false, extendsAnotherHead: false, newStraggler: false, ...o })
const commit = (round: number, o: Partial<RoutedMessage> = {}): RoutedMessage => msg(round, { isCommit: true, ...o })
// in round 5, rounds up to 4 certified
const running: PeerView = { current: 5, lastCertified: 4 }
// in round 5 (aborted it earlier or jumped), only up to round 2 certified
const behind: PeerView = { current: 5, lastCertified: 2 }
// not started yet: round 5 is the next
const idle: PeerView = { current: null, lastCertified: 4 }
// restarted in round 7, waiting for the network to pass it; the ledger ends at round 4
const waiting: PeerView = { current: null, lastCertified: 4, waitingFor: 7 }

const cases: Array<[string, RoutedMessage, PeerView, Route]> = [
  ['a message of the round in progress', msg(5), running, 'this-round'],
  ['a commit of the round in progress, on this head', commit(5), running, 'this-round'],
  ['a commit of the round in progress that extends another head', commit(5, { extendsAnotherHead: true }), running, 'another-head'],
  ['a commit of a later round that extends another head', commit(8, { extendsAnotherHead: true }), running, 'another-head'],
  ['an older commit extending another head is no evidence (the ledger has that round)', commit(3, { extendsAnotherHead: true }), running, 'old'],
  ['the next round\'s message', msg(6), running, 'buffer'],
  ['a message far ahead (the buffer decides whether it fits)', msg(40), running, 'buffer'],
  ['this round\'s message before the peer has started it', msg(5), idle, 'buffer'],
  ['a later round\'s message before the peer has started', msg(6), idle, 'buffer'],
  ['a commit for a round the peer left but the ledger lacks', commit(4), behind, 'late-commit'],
  ['a straggler\'s first input for the round that just ended', msg(4, { newStraggler: true }), running, 'straggler'],
  ['a straggler\'s input for a recent round', msg(3, { newStraggler: true }), running, 'straggler'],
  ['the same straggler again, or another message of the round that just ended', msg(4), running, 'ignore'],
  ['a commit of the round just certified', commit(4), running, 'ignore'],
  ['a message two rounds old', msg(3), running, 'old'],
  ['a message far in the past', msg(0), running, 'old'],
  ['waiting: a commit for the next round, before the round it waits for: a certificate it may adopt', commit(5), waiting, 'late-commit'],
  ['waiting: a commit for the round it waits for is kept for then', commit(7), waiting, 'buffer'],
  ['waiting: a message of the next round', msg(5), waiting, 'buffer'],
  ['waiting: an old message', msg(2), waiting, 'old']
]

for (const [what, m, view, want] of cases) {
  test(`${what}: ${want}`, () => { assert.is(route(m, view), want) })
}

test('only a waiting peer takes a commit of the next round, which it does not run, as a late certificate\'s', () => {
  assert.is(route(commit(5), { current: null, lastCertified: 4, waitingFor: 7 }), 'late-commit')
  assert.is(route(commit(5), { current: null, lastCertified: 4 }), 'buffer')
  assert.is(route(commit(5), { current: 5, lastCertified: 4, waitingFor: 7 }), 'this-round')
})

test.run()
