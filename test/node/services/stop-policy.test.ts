/** The stop policy of a node run for N rounds, with a stubbed ledger. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createStopPolicy } from '../../../src/node/services/stop-policy.ts'
import type { Ledger } from '../../../src/protocol/ledger.ts'
import { MemNet } from '../../protocol/harness.ts'
import { recordingLogger } from './stubs.ts'
import { ManualClock } from '../../../src/node/clock.ts'
import { encodeValidation } from '../../../src/protocol/validation.ts'
import type { LedgerEntry } from '../../../src/protocol/ledger.ts'

function policy (rounds: number, ledger: () => Pick<Ledger, 'count' | 'entries' | 'lastRound'>, saved: () => boolean, patience = 0) {
  const events: string[] = []
  const { log } = recordingLogger()
  const clock = new ManualClock()
  const p = createStopPolicy({ ledger, round: () => null, modelSaved: saved, halt: () => events.push('halt'), stop: () => events.push('stop'), log, clock }, { rounds, patience, lingerMs: 10 })
  return { p, events, clock }
}

/** a ledger stub: `models` model rounds, each followed by its eval round when `judged` */
const stub = (models: () => number, judged = true) => () => ({
  count: (k: string) => k === 'update' ? models() : k === 'eval' && judged ? models() : 1,
  entries: [],
  lastRound: judged ? 2 * models() : 2 * models() - 1
})

test('stops only once N model rounds are certified and the last model is on disk; halts first, stops after lingering', async () => {
  let models = 2
  let saved = false
  const { p, events, clock } = policy(3, stub(() => models), () => saved)
  assert.not.ok(p.finished(stub(() => models)(), 5))
  assert.not.ok(p.check())
  models = 3
  assert.not.ok(p.finished(stub(() => models)(), 6), 'the eval round of the last model round still runs')
  assert.ok(p.finished(stub(() => models)(), 7), 'no model round after the last')
  assert.not.ok(p.check(), 'the model is not on disk yet')
  saved = true
  assert.ok(p.check())
  assert.equal(events, ['halt'])
  assert.ok(p.check(), 'once under way, it stays so')
  await clock.advance(9)
  assert.equal(events, ['halt'], 'lingering')
  await clock.advance(1)
  assert.equal(events, ['halt', 'stop'], 'halted once, stopped once, after lingering')
})

test('the eval round of the last model round runs to its end, certified or aborted, before the node stops', () => {
  let current: { number: number, done: boolean } | null = { number: 4, done: false }
  const events: string[] = []
  const { log } = recordingLogger()
  const ledger = { count: (k: string) => k === 'update' ? 2 : 0, entries: [], lastRound: 3 }
  const clock = new ManualClock()
  const p = createStopPolicy({ ledger: () => ledger, round: () => current, modelSaved: () => true, halt: () => events.push('halt'), stop: () => events.push('stop'), log, clock }, { rounds: 2, patience: 0, lingerMs: 10 })
  assert.not.ok(p.check(), 'eval round 4 under way')
  current = { number: 4, done: true } // aborted: the ledger still ends at round 3
  assert.ok(p.check())
  p.stop()
  current = null
  const again = createStopPolicy({ ledger: () => ({ ...ledger, lastRound: 4 }), round: () => current, modelSaved: () => true, halt: () => {}, stop: () => {}, log, clock }, { rounds: 2, patience: 0 })
  assert.ok(again.check(), 'no round under way: the next (5, a model round) is not for this node')
  again.stop()
})

test('early stopping: after `patience` eval rounds without a better validation AUC, the node stops before the next model round', () => {
  // model rounds judged 0.80, 0.86, 0.85, 0.84: round 2 (protocol round 3) stays the best
  const aucs = [0.80, 0.86, 0.85]
  const ledger = () => {
    const entries = aucs.flatMap((auc, i) => [
      { header: { kind: 'update', round: 2 * i + 1, stateHash: Uint8Array.of(i), extra: new Uint8Array(0) } },
      { header: { kind: 'eval', round: 2 * i + 2, stateHash: Uint8Array.of(i), extra: encodeValidation({ auc, accuracy: 0.5, n: 10, predictedClasses: 2, scoreBins: 10, conformal: [] }) } }
    ]) as unknown as LedgerEntry[]
    return { entries, count: (k: string) => entries.filter(e => e.header.kind === k).length, lastRound: entries.length }
  }
  const events: string[] = []
  const { log, lines } = recordingLogger()
  const p = createStopPolicy({ ledger, round: () => null, modelSaved: () => true, halt: () => events.push('halt'), stop: () => events.push('stop'), log, clock: new ManualClock() }, { rounds: 10, patience: 2, lingerMs: 10 })
  assert.not.ok(p.check(), 'one round without improvement is within patience 2')
  aucs.push(0.84)
  assert.not.ok(p.finished(ledger(), 8), 'an eval round is never cut')
  assert.ok(p.check(), 'two rounds without improvement: stop before model round 5')
  assert.equal(events, ['halt'])
  assert.ok(lines.some(l => /has not improved for 2 round\(s\): stopping early/.test(l.msg)), lines.map(l => l.msg).join("\n"))
  p.stop()
})

test('rounds 0 runs until stopped', () => {
  const { p, events } = policy(0, stub(() => 1000), () => true)
  assert.not.ok(p.finished(stub(() => 1000)(), 2001))
  assert.not.ok(p.check())
  assert.equal(events, [])
})

test('certificates learnt by catching up count as much as those signed', () => {
  // a member that was away adopts the others' certificates without having signed any of them
  const net = new MemNet({ n: 3, seed: 9, modelSize: 4, lastRound: 2 })
  net.online[2] = false
  net.startAll()
  net.run(() => net.peers[0].ledger.lastRound >= 2 && net.peers[1].ledger.lastRound >= 2)
  const away = net.peers[2]
  const { p, events } = policy(3, () => away.ledger, () => true)
  assert.not.ok(p.check())
  net.online[2] = true
  net.serveLedger(0, 2)
  assert.is(away.ledger.count('update'), 3)
  assert.ok(away.ledger.entries.every(e => !e.certificate.signatures.some(([signer]) => signer === 2)), 'it signed none of them')
  assert.ok(p.check())
  assert.equal(events, ['halt'])
  p.stop()
})

test.run()
