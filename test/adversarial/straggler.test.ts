/**
 * Stragglers and adaptive timeouts (in-process, simulated time): a member that trains three
 * phase-timeouts slower than the others is left out under fixed timeouts every round, but is
 * waited for once the peers have seen how late it comes; and a member that is simply gone costs
 * less time per round under adaptive timeouts than under fixed ones.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MemNet } from '../protocol/harness.ts'

const phaseMs = 500
const rounds = 10

function run (adaptive: boolean, setup: (net: MemNet) => void): MemNet {
  const net = new MemNet({ n: 5, seed: 41, modelSize: 12, lastRound: rounds, adaptiveTimeouts: adaptive, params: p => { p.timeouts = { phaseMs, roundMs: 40 * phaseMs } } })
  setup(net)
  net.startAll()
  net.run(() => net.honest().every(i => net.peers[i].ledger.lastRound >= rounds), 400_000)
  return net
}

test('a straggler (training 1.4 s; phase timeout 0.5 s) is left out under fixed timeouts, and waited for under adaptive ones', () => {
  const slow = (net: MemNet): void => { for (let i = 0; i < 5; i++) net.slow.set(i, i === 3 ? 1400 : 50) }
  const fixed = run(false, slow)
  const adaptive = run(true, slow)
  const with3 = (net: MemNet): number[] => net.peers[0].ledger.entries.filter(e => e.header.u.includes(3)).map(e => e.header.r)
  for (const net of [fixed, adaptive]) assert.is(net.peers[0].ledger.lastRound, rounds, 'every round certified')
  assert.equal(with3(fixed), [], 'fixed timeouts: the straggler never makes it')
  const included = with3(adaptive)
  assert.ok(included.length >= rounds - 4 && included.includes(rounds), `adaptive timeouts: the straggler takes part from the first rounds on: ${included}`)
  assert.ok(adaptive.peers[0].inputWaitMs > phaseMs, `the input wait grew to ${adaptive.peers[0].inputWaitMs} ms`)
})

test('a member that is gone costs less time per round under adaptive timeouts', () => {
  const gone = (net: MemNet): void => { net.online[4] = false }
  const fixed = run(false, gone)
  const adaptive = run(true, gone)
  for (const net of [fixed, adaptive]) assert.is(net.peers[0].ledger.lastRound, rounds)
  assert.ok(adaptive.now < 0.7 * fixed.now, `${rounds} rounds took ${adaptive.now} ms adaptive, ${fixed.now} ms fixed (simulated)`)
  assert.ok(adaptive.peers[0].advertiseWaitMs < phaseMs, `the advertisement wait shrank to ${adaptive.peers[0].advertiseWaitMs} ms`)
})

test.run()
