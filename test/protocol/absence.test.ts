/**
 * A member that is gone costs the others nothing after the round it left: proposers come first
 * from the last certified round's survivors, and a round waits only for the advertisements of
 * those who may come (src/protocol/presence.ts). In simulated time.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MemNet, mulberry32 } from './harness.ts'
import { Ledger } from '../../src/protocol/ledger.ts'
import { Presence, absentMembers, proposerOf, proposingAttempt } from '../../src/protocol/presence.ts'

test('proposers: one per attempt, by rotation; in the first attempt the first one who is there proposes at once; nobody proposes in an attempt not its own', () => {
  for (let round = 0; round < 20; round++) {
    for (let a = 0; a < 6; a++) assert.is(proposerOf(1, round, a, 5), (round + a) % 5)
  }
  const rand = mulberry32(7)
  for (let trial = 0; trial < 300; trial++) {
    const n = 3 + Math.floor(rand() * 10)
    const survivors = Array.from({ length: n }, (_, i) => i).filter(() => rand() < 0.7)
    if (survivors.length === 0) continue
    const away = (u: number): boolean => !survivors.includes(u)
    const start = Math.floor(rand() * 1000)
    for (const set of [1, 2] as const) {
      const first = new Map<number, number>()
      for (let r = start; r < start + n; r++) {
        for (const attempt of [0, 1, 2]) {
          const proposing = Array.from({ length: n }, (_, me) => [me, proposingAttempt(set, r, attempt, n, me, away)] as const).filter(([, a]) => a !== null)
          assert.is(proposing.length, 1, `round ${r}, attempt ${attempt}: one proposer`)
          const [me, a] = proposing[0]
          assert.is(proposerOf(set, r, a!, n), me, 'under its own attempt number')
          if (attempt > 0) assert.is(a, attempt, 'after a timeout: the plain rotation')
          else {
            assert.ok(survivors.includes(me), `round ${r}: the first proposer is one who is there`)
            first.set(me, (first.get(me) ?? 0) + 1)
          }
        }
        assert.is(proposingAttempt(set, r, 0, n, proposerOf(set, r, 0, n), null), 0, 'with nothing known of who is away: the plain rotation')
      }
      // over n rounds a survivor goes first on its own turn and on those of the absent members just before it
      for (const [m, turns] of first) {
        let gap = 1
        while (!survivors.includes((m - gap + n) % n)) gap++
        assert.is(turns, gap, `member ${m}: its own first turn and the ${gap - 1} of the absent member(s) before it`)
      }
    }
  }
})

test('expected advertisements: the last survivors and whoever was heard in the round before or since; the others are absent since the round after the last they survived', () => {
  const p = new Presence()
  assert.is(p.expected(0, undefined), null, 'no certificate: wait for everyone')
  p.heard(3, 4)
  p.heard(2, 7)
  assert.equal(p.expected(8, [0, 1]), [0, 1, 2])
  assert.equal(p.expected(5, [0, 1]), [0, 1, 2, 3])
  const certified = [{ round: 0, survivors: [0, 1, 2, 3] }, { round: 1, survivors: [0, 1, 2] }, { round: 2, survivors: [0, 1] }]
  assert.equal(absentMembers(4, [0, 1], certified), [{ member: 2, since: 2 }, { member: 3, since: 1 }])
  assert.equal(absentMembers(4, null, certified), [])
})

/** When each round was certified (peer 0's view), by round. */
function certifiedAt (net: MemNet): Map<number, number> {
  const at = new Map<number, number>()
  for (const l of net.log) if (l.peer === 0 && l.action.type === 'certified') at.set(l.action.header.round, l.at)
  return at
}

test('four members, one stopped for ten rounds: the rounds without it take no longer than before, and it takes part again within two rounds of coming back', () => {
  const n = 4
  const net = new MemNet({ n, seed: 41, modelSize: 12, lastRound: 19, latencyMs: 40, params: p => { p.timeouts = { phaseMs: 5000, roundMs: 60_000 } } })
  for (let i = 0; i < n; i++) net.slow.set(i, 2000) // each member trains for 2 s
  net.startAll()
  net.run(() => net.peers.every(p => p.ledger.lastRound >= 2), 600_000)
  // member 3 stops before it advertises in round 4 (it took part in round 3)
  net.dropBefore.set(3, 'advertise')
  net.run(() => net.peers[3].ledger.lastRound >= 3 && !net.online[3], 600_000)
  assert.not.ok(net.online[3], 'member 3 stopped')
  net.run(() => net.peers[0].ledger.lastRound >= 13, 600_000)
  const absent = net.peers[0].absent
  assert.equal(absent, [{ member: 3, since: 4 }], 'member 0 names member 3 absent since round 4')
  // back after ten rounds without it (4 to 13), with the ledger it syncs from the others
  const source = net.peers[0]
  net.dropBefore.delete(3)
  net.online[3] = true
  net.peers[3] = net.makePeer(3, { ledger: Ledger.verify(net.manifest, source.ledger.entries.map(e => e.certificate)), state: source.state, firstRound: source.ledger.lastRound + 1 })
  const backAt = source.ledger.lastRound + 1
  net.peers[3].start(net.now)
  net.flush(3)
  net.run(() => net.peers[0].ledger.lastRound >= 19, 600_000)

  const at = certifiedAt(net)
  const took = (r: number): number => at.get(r)! - at.get(r - 1)!
  const mean = (rs: number[]): number => rs.reduce((s, r) => s + took(r), 0) / rs.length
  const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, i) => a + i)
  const before = mean(range(1, 3))
  const away = range(5, 13)
  console.log(`absence.test.ts: round times (s): before ${range(1, 3).map(r => (took(r) / 1000).toFixed(1)).join(' ')}; the round it left (4) ${(took(4) / 1000).toFixed(1)}; away ${away.map(r => (took(r) / 1000).toFixed(1)).join(' ')}; back ${range(backAt, 19).map(r => (took(r) / 1000).toFixed(1)).join(' ')}`)
  console.log(`absence.test.ts: mean before ${(before / 1000).toFixed(2)} s, away (5-13) ${(mean(away) / 1000).toFixed(2)} s, ratio ${(mean(away) / before).toFixed(2)}; with round 4 ${(mean(range(4, 13)) / before).toFixed(2)}`)
  for (const r of away) assert.ok(took(r) <= 1.2 * before, `round ${r} took ${took(r)} ms, before ${before.toFixed(0)} ms`)
  const survivors = (r: number): number[] => net.peers[0].ledger.entries.find(e => e.header.round === r)!.header.survivors
  for (const r of range(4, 13)) assert.not.ok(survivors(r).includes(3), `member 3 not in round ${r}`)
  const rejoined = range(backAt, backAt + 1).find(r => survivors(r).includes(3))
  assert.ok(rejoined !== undefined, `member 3 takes part within two rounds of coming back (round ${backAt}): ${range(backAt, 19).map(r => survivors(r).join(''))}`)
  assert.equal(net.peers[0].absent, [], 'nobody absent at the end')
  assert.is(net.actions('reject').filter(a => a.code === 'wrong-proposer').length, 0, 'every peer agreed on every proposer')
})

test.run()
