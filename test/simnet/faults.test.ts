/** The fault plan: drawn from the seed alone, the same in every run, and what the report lists. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { faultsOfRound, CRASH_VICTIM, type FaultSettings } from '../../scripts/simnet/faults.ts'
import { compareReports } from '../../scripts/simnet/compare.ts'

const base: FaultSettings = { n: 10, dropout: 0.2, killAt: null, malicious: false, seed: 7 }
const offline = (s: FaultSettings, r: number): number[] => faultsOfRound(s, r).filter(f => f.fault === 'offline').map(f => f.hospital)

test('dropouts: floor(dropout · n) distinct hospitals per round, the same for the same seed, others for another seed', () => {
  const plan = Array.from({ length: 20 }, (_, r) => offline(base, r + 1))
  for (const o of plan) { assert.is(o.length, 2); assert.is(new Set(o).size, 2); assert.ok(o.every(h => h >= 0 && h < 10)) }
  assert.equal(Array.from({ length: 20 }, (_, r) => offline({ ...base }, r + 1)), plan)
  const other = Array.from({ length: 20 }, (_, r) => offline({ ...base, seed: 8 }, r + 1))
  assert.not.equal(other, plan)
  // not the same hospitals every round
  assert.ok(new Set(plan.map(o => o.join())).size > 5)
  assert.equal(faultsOfRound({ ...base, dropout: 0 }, 3), [])
})

test('a crash at round K: down for K and K + 1 (never also drawn offline), restarted at K + 2; malicious in every round', () => {
  const s = { ...base, dropout: 0.5, killAt: 2, malicious: true }
  const r2 = faultsOfRound(s, 2)
  assert.ok(r2.some(f => f.fault === 'crash' && f.hospital === CRASH_VICTIM))
  for (const r of [2, 3]) assert.not.ok(offline(s, r).includes(CRASH_VICTIM))
  assert.ok(faultsOfRound(s, 4).some(f => f.fault === 'restart' && f.hospital === CRASH_VICTIM))
  assert.ok(faultsOfRound(s, 3).every(f => f.fault !== 'crash' && f.fault !== 'restart'))
  for (let r = 1; r <= 6; r++) assert.ok(faultsOfRound(s, r).some(f => f.fault === 'malicious' && f.hospital === 9))
  // the other hospitals' draws are those of the run without the crash
  for (let r = 1; r <= 6; r++) assert.equal(offline(s, r).filter(h => h !== CRASH_VICTIM), offline({ ...s, killAt: null }, r).filter(h => h !== CRASH_VICTIM))
})

test('compare: two runs that met different faults differ there first', () => {
  const round = (k: number, faults: unknown[]) => ({ round: k, stateHash: 'aa', participants: [0, 1], validation: null, faults })
  const a = { rounds: [round(1, faultsOfRound(base, 1))] }
  const b = { rounds: [round(1, faultsOfRound({ ...base, seed: 9 }, 1))] }
  assert.ok(compareReports(a, structuredClone(a)).agree)
  assert.is(compareReports(a, b).firstDifference?.what, 'faults')
})

test.run()
