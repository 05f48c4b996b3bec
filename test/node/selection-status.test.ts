/** What a node says of recipe selection: each candidate's figures, each rung's decision, /status's summary, all from the ledger. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MemNet } from '../protocol/harness.ts'
import { candidateFiguresLine, decisionAt, decisionLine, selectionStatus, selectionSummary } from '../../src/node/selection-status.ts'
import { encodeValidation, type ValidationFigures } from '../../src/protocol/validation.ts'
import type { Ledger, LedgerEntry } from '../../src/protocol/ledger.ts'

const figures = (auc: number, over: Partial<ValidationFigures> = {}): ValidationFigures => ({ auc, accuracy: 0.8, n: 120, predictedClasses: 2, scoreBins: 40, conformal: [], ...over })
const evalEntry = (round: number, sets: ValidationFigures[]): LedgerEntry => ({ header: { kind: 'eval', round, extra: Uint8Array.from(sets.flatMap(f => [...encodeValidation(f)])) } }) as unknown as LedgerEntry
const update = (round: number): LedgerEntry => ({ header: { kind: 'update', round, extra: new Uint8Array(0) } }) as unknown as LedgerEntry

test('the candidates\' figures, the decision at the rung\'s end, and the status replayed from the ledger', () => {
  const net = new MemNet({ n: 3, seed: 1, modelSize: 4, params: p => { p.training.rounds = 5; p.selection = { candidates: [{ learningRate: 1e-3, epochs: 1 }, { learningRate: 3e-3, epochs: 1 }], rungRounds: 1 } } })
  const m = net.manifest
  const entries = [update(1), evalEntry(2, [figures(0.7), figures(0.9, { predictedClasses: 1 })]), update(3), evalEntry(4, [figures(0.8)])]
  assert.match(candidateFiguresLine(m, entries, entries[1]) ?? '', /#1 \(lr 0\.001, 1 epoch\(s\)\) AUC 0\.700 ACC 0\.800; #2 \(lr 0\.003, 1 epoch\(s\)\) AUC 0\.900 ACC 0\.800 DEGENERATE/)
  assert.is(candidateFiguresLine(m, entries, entries[3]), null, 'after selection, one model: the usual line')
  assert.is(candidateFiguresLine(m, entries, entries[0]), null)
  const d = decisionAt(m, entries, entries[1])
  assert.ok(d !== null)
  assert.equal(d.live, [0], 'the degenerate candidate is dropped though its AUC is higher')
  assert.match(decisionLine(m.params.selection!, d), /rung 1 \(model rounds 1-1\).*#1 .*kept; #2 .*degenerate dropped; #1 \(lr 0\.001, 1 epoch\(s\)\) is the consortium's recipe from now on/)
  assert.is(decisionAt(m, entries, entries[3]), null, 'no rung ends there once one is left')
  const status = selectionStatus(m, { entries, lastRound: 4 } as unknown as Ledger)!
  assert.equal(status.live, [1])
  assert.equal(status.winner, { candidate: 1, learningRate: 1e-3, epochs: 1 })
  assert.equal(status.decisions[0].scores.map(s => [s.candidate, s.kept]), [[1, true], [2, false]])
  const lines = selectionSummary(status)
  assert.match(lines[0], /#1 \(lr 0\.001, 1 epoch\(s\)\) chosen/)
  assert.match(lines[1], /rung 1 \(model rounds 1-1, 1 eval round\(s\)\): #1 AUC 0\.700 kept, #2 AUC 0\.900 degenerate dropped/)
  const none = new MemNet({ n: 3, seed: 1, modelSize: 4 })
  assert.is(selectionStatus(none.manifest, { entries, lastRound: 4 } as unknown as Ledger), null)
})

test.run()
