/** Federated recipe selection: the rungs, who is dropped and why, the parts of the state, and a whole selection run under secure aggregation. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MemNet, mulberry32 } from './harness.ts'
import { candidateRecipe, decodeCandidateFigures, keepParts, roundBaseState, roundCandidates, selectionAt, selectionFromFlags, selectionProblem, selectionRounds, selectionStartState, sizedCandidates, stateCandidates, widthOfWeights, type SelectionParams } from '../../src/protocol/selection.ts'
import { decodeValidation, encodeValidation, modelRoundOf, roundKind, validationCounts, validationHistory, type ValidationFigures } from '../../src/protocol/validation.ts'
import { statsLength } from '../../src/protocol/masked-input.ts'
import { hex } from '../../src/protocol/codec.ts'
import { initialState, stateHash } from '../../src/protocol/model.ts'
import { validateManifest } from '../../src/protocol/manifest.ts'
import type { LedgerEntry } from '../../src/protocol/ledger.ts'

const three: SelectionParams = { candidates: [{ learningRate: 1e-3, epochs: 1 }, { learningRate: 3e-3, epochs: 1 }, { learningRate: 3e-4, epochs: 1 }], rungRounds: 2 }
const figures = (auc: number, over: Partial<ValidationFigures> = {}): ValidationFigures => ({ auc, accuracy: auc - 0.1, n: 100, predictedClasses: 2, scoreBins: 40, conformal: [], ...over })

/** a ledger whose eval rounds judged the candidates alive then with these figures (one list per model round) */
function ledgerOf (perModelRound: ValidationFigures[][]): LedgerEntry[] {
  return perModelRound.flatMap((sets, i) => [
    { header: { kind: 'update', round: 2 * i + 1, extra: new Uint8Array(0) } },
    { header: { kind: 'eval', round: 2 * i + 2, extra: Uint8Array.from(sets.flatMap(f => [...encodeValidation(f)])) } }
  ]) as unknown as LedgerEntry[]
}

test('rungs: 3 candidates halve to 2 and then 1, taking 2 rungs of rungRounds; limits of the parameters', () => {
  assert.is(selectionRounds(three), 4)
  assert.is(selectionRounds({ ...three, candidates: [...three.candidates, { learningRate: 1e-2, epochs: 2 }, { learningRate: 1e-2, epochs: 1 }] }), 6) // 5 → 3 → 2 → 1
  assert.is(selectionProblem(three, { rounds: 10, dp: false }), null)
  assert.match(selectionProblem(three, { rounds: 4, dp: false }) ?? '', /takes 4 model rounds/)
  assert.match(selectionProblem(three, { rounds: 10, dp: true }) ?? '', /DP-SGD/)
  assert.match(selectionProblem({ ...three, candidates: [three.candidates[0]] }, { rounds: 10, dp: false }) ?? '', /2 to 8/)
  assert.match(selectionProblem({ ...three, candidates: [{ learningRate: 0.5, epochs: 1 }, three.candidates[0]] }, { rounds: 10, dp: false, weightDecay: 0.5 }) ?? '', /weightDecay/)
  assert.match(selectionProblem({ ...three, extra: 1 }, { rounds: 10, dp: false }) ?? '', /must be/)
})

test('each rung keeps the better half by its last two eval rounds\' mean AUC; a degenerate candidate goes first; ties keep the manifest\'s order', () => {
  // rung 0 (model rounds 1-2): candidate 2 is best on average though candidate 0 has the best last round
  const entries = ledgerOf([
    [figures(0.60), figures(0.70), figures(0.80)],
    [figures(0.85), figures(0.70), figures(0.78)],
    // rung 1 (model rounds 3-4): 2 candidates alive, 0 and 2
    [figures(0.86), figures(0.80)],
    [figures(0.86), figures(0.90)]
  ])
  assert.equal(selectionAt(entries, three, 2, 1).live, [0, 1, 2])
  assert.equal(selectionAt(entries, three, 2, 2).live, [0, 1, 2], 'no drop inside a rung')
  const after0 = selectionAt(entries, three, 2, 3)
  assert.equal(after0.live, [0, 2])
  assert.equal(after0.decisions[0].scores.map(s => [s.candidate, Number(s.auc.toFixed(3)), s.kept]), [[0, 0.725, true], [1, 0.7, false], [2, 0.79, true]])
  const done = selectionAt(entries, three, 2, 5)
  assert.equal(done.live, [0], 'the higher mean of the last two: 0.86 against 0.85 (though candidate 2 had the best last round)')
  assert.is(done.winner, 0)
  assert.is(done.decisions.length, 2)
  // the candidate with the best AUC is dropped when it is degenerate
  const degenerate = ledgerOf([[figures(0.5), figures(0.9, { predictedClasses: 1 })], [figures(0.5), figures(0.9, { predictedClasses: 1 })]])
  const two = { ...three, candidates: three.candidates.slice(0, 2) }
  assert.equal(selectionAt(degenerate, two, 2, 3).live, [0])
  assert.match(selectionAt(degenerate, two, 2, 3).decisions[0].scores[1].degenerate ?? '', /one class/)
  // equal AUCs: the first listed stays
  assert.equal(selectionAt(ledgerOf([[figures(0.7), figures(0.7)], [figures(0.7), figures(0.7)]]), two, 2, 3).live, [0])
  // a rung with no certified eval round drops nobody; an eval of a state from before a drop (more parts) is not counted
  assert.equal(selectionAt(ledgerOf([]), three, 2, 3).live, [0, 1, 2])
  const stale = ledgerOf([[figures(0.6), figures(0.7), figures(0.8)], [figures(0.6), figures(0.7), figures(0.8)], [figures(0.9), figures(0.1), figures(0.1)]])
  assert.equal(selectionAt(stale, three, 2, 5).live, [1, 2], 'the third eval names 3 candidates while 2 were alive: ignored')
  assert.is(selectionAt(stale, three, 2, 5).decisions[1].evals, 0)
})

test('the state\'s parts: K copies of the initial weights; keepParts picks the kept candidates\' weights and optimiser state', () => {
  const initial = { weights: Float32Array.of(1, 2, 3), optimizer: [], step: 0 }
  const start = selectionStartState(initial, three)
  assert.equal([...start.weights], [1, 2, 3, 1, 2, 3, 1, 2, 3])
  assert.is(selectionStartState(initial, undefined), initial)
  const s = { weights: Float32Array.from({ length: 9 }, (_, i) => i), optimizer: [Float32Array.from({ length: 9 }, (_, i) => 10 * i)], step: 4 }
  const kept = keepParts(s, () => 3, [0, 1, 2], [0, 2])
  assert.equal([...kept.weights], [0, 1, 2, 6, 7, 8])
  assert.equal([...kept.optimizer[0]], [0, 10, 20, 60, 70, 80])
  assert.is(kept.step, 4)
  assert.throws(() => keepParts(s, () => 4, [0, 1, 2], [0]), /is not candidates 0, 1, 2 \(12 weights\)/)
  assert.throws(() => keepParts(s, () => 3, [0, 1, 2], [5]), /candidate 5/)
  assert.is(decodeCandidateFigures(encodeValidation(figures(0.7)), 2), null, 'one set of figures is not two')
  assert.is(decodeCandidateFigures(new Uint8Array(0), 2), null)
})

test('roundBaseState drops the parts of the candidates dropped since the last certified state, once', () => {
  const p = { selection: three, model: { size: 2, classes: 2 } }
  const entries = ledgerOf([[figures(0.6), figures(0.7), figures(0.8)], [figures(0.6), figures(0.7), figures(0.8)]])
  const state = { weights: Float32Array.of(0, 0, 1, 1, 2, 2), optimizer: [], step: 2 }
  assert.equal([...roundBaseState(entries, p, 5, state).weights], [1, 1, 2, 2])
  assert.is(roundBaseState(entries, p, 3, state), state, 'model round 2 is within rung 0')
  const afterDrop = [...entries, { header: { kind: 'update', round: 5, extra: new Uint8Array(0) } }] as unknown as LedgerEntry[]
  const pruned = { weights: Float32Array.of(1, 1, 2, 2), optimizer: [], step: 3 }
  assert.is(roundBaseState(afterDrop, p, 7, pruned), pruned, 'a state made after the drop is already pruned')
  assert.is(roundBaseState(entries, { model: p.model }, 5, state), state, 'no selection: as it is')
})

/** scores separating two classes with this much skill (seeded) */
function scores (n: number, seed: number, skill: number): { probs: Float32Array, labels: Int32Array } {
  const rand = mulberry32(seed)
  const labels = Int32Array.from({ length: n }, (_, i) => i % 2)
  const probs = new Float32Array(2 * n)
  for (let i = 0; i < n; i++) {
    const p1 = 1 / (1 + Math.exp(-(skill * (labels[i] - 0.5) + 2 * (rand() - 0.5))))
    probs[2 * i] = 1 - p1
    probs[2 * i + 1] = p1
  }
  return { probs, labels }
}

const SIZE = 6
const LAYOUT = { classes: 2, bins: 50 }
const RUN: SelectionParams = { ...three, rungRounds: 1 }
// candidate 1 learns best, candidate 2 next, candidate 0 worst: its validation scores say so
const SKILL = [0.5, 3, 1.5]
const deltaOf = (c: number): number => 0.01 * (c + 1)

/** a consortium of n choosing among RUN's candidates, each member's inputs what its candidates would give */
function selectionNet (n: number, seed: number, lastRound: number, silentRounds: number[] = []): MemNet {
  const net: MemNet = new MemNet({
    n, seed, modelSize: SIZE, kindOf: roundKind, lastRound,
    params: p => { p.validation = { bins: LAYOUT.bins, patience: 0 }; p.training.rounds = 4; p.selection = RUN },
    input: (member, round, kind): { values: ArrayLike<number>, count: number } | null => {
      if (silentRounds.includes(round)) return null
      const peer = net.peers[member]
      if (kind === 'stats') return { values: new Float64Array(statsLength(1, 2)).fill(0.5), count: 10 }
      const parts = peer.roundState.weights.length / SIZE
      const live = selectionAt(peer.ledger.entries, RUN, 2, modelRoundOf(round)).live
      assert.is(parts, live.length, `round ${round}: the state holds one part per live candidate`)
      // (a large sample count: the quantised weighted update then keeps the delta to 1e-6)
      if (kind === 'update') return { values: Float32Array.from({ length: parts * SIZE }, (_, i) => deltaOf(live[Math.floor(i / SIZE)])), count: 20_000 }
      // an eval round judges the state of the model round before: its candidates
      return { values: Float64Array.from(live.flatMap(c => [...validationCounts(...Object.values(scores(40, 100 * member + c + round, SKILL[c])) as [Float32Array, Int32Array], LAYOUT)])), count: 40 }
    }
  })
  return net
}

/** every member holds the winner's model: the initial weights plus candidate 1's update in each model round */
function assertWinner (net: MemNet, modelRounds: number): void {
  const initial = net.initial.weights.slice(0, SIZE)
  const final = net.peers[0].state
  assert.is(final.weights.length, SIZE)
  for (let i = 0; i < SIZE; i++) assert.ok(Math.abs(final.weights[i] - initial[i] - modelRounds * deltaOf(1)) < 1e-4, `weight ${i}: ${final.weights[i] - initial[i]}`)
  assert.ok(net.peers.every(p => hex(stateHash(p.state)) === hex(stateHash(final))), 'every member holds the same state')
}

test('a selection run under secure aggregation: every member drops the same candidates at each rung; the winner\'s model goes on alone', () => {
  const net = selectionNet(4, 3, 6)
  assert.is(net.initial.weights.length, 3 * SIZE)
  net.startAll()
  net.run(() => net.peers.every(p => p.ledger.lastRound >= 6))
  const entries = net.peers[0].ledger.entries
  assert.equal(entries.map(e => e.header.kind), ['stats', 'update', 'eval', 'update', 'eval', 'update', 'eval'])
  assert.is(decodeCandidateFigures(entries[2].header.extra, 3)?.length, 3, 'the first eval certificate judges 3 candidates')
  assert.is(decodeCandidateFigures(entries[4].header.extra, 2)?.length, 2, 'the second judges the 2 kept')
  assert.ok(decodeValidation(entries[6].header.extra) !== null, 'after selection, one model and one set of figures')
  const progress = selectionAt(entries, RUN, 2, 4)
  assert.equal(progress.decisions.map(d => d.live), [[1, 2], [1]])
  assert.is(progress.winner, 1)
  assertWinner(net, 3)
  assert.is(validationHistory(net.peers[0].ledger).length, 1, 'only the winner\'s rounds are choosable models')
})

test('members away for a round come back and fetch states of another length: nobody\'s input is refused for its length, and all agree', () => {
  for (const seed of [5, 6]) {
    const net = selectionNet(5, seed, 8)
    net.startAll()
    for (let r = 1; r <= 8; r++) {
      const absent = (r + seed) % 5
      const present = net.peers.map((_, i) => i).filter(i => i !== absent)
      net.online[absent] = false
      net.run(() => present.some(i => net.peers[i].ledger.lastRound >= r), 25_000)
      net.online[absent] = true
    }
    net.run(() => net.peers.every(p => p.ledger.lastRound >= 8 && p.stateCurrent), 60_000)
    const lengths = net.actions('reject').filter(a => /words, expected/.test(a.reason))
    assert.is(lengths.length, 0, `seed ${seed}: ${lengths.map(a => a.reason).join('; ')}`)
    assert.is(new Set(net.peers.map(p => hex(p.ledger.head))).size, 1, 'one ledger')
    const kinds = net.peers[0].ledger.entries.map(e => e.header.kind)
    assertWinner(net, kinds.filter(k => k === 'update').length)
  }
})

test('an eval round that ends a rung aborts everywhere: the next model round (every member behind) goes on after a phase; nobody is dropped for want of figures', () => {
  const net = selectionNet(4, 7, 6, [2])
  net.startAll()
  net.run(() => net.peers.every(p => p.ledger.lastRound >= 6), 120_000)
  const entries = net.peers[0].ledger.entries
  assert.equal(entries.map(e => `${e.header.round}:${e.header.kind}`), ['0:stats', '1:update', '3:update', '4:eval', '5:update', '6:eval'])
  const progress = selectionAt(entries, RUN, 2, 4)
  assert.equal(JSON.stringify(progress.decisions.map(d => [d.evals, d.live])), JSON.stringify([[0, [0, 1, 2]], [1, [1, 2]], [1, [1]]]), 'rung 1 had no certified eval round: all three went on to rung 2')
  assert.is(net.peers[0].state.weights.length, 2 * SIZE, 'round 5 (model round 3) trained the two kept after rung 2')
  assert.is(new Set(net.peers.map(p => hex(p.ledger.head))).size, 1)
})

// the model (6 weights) and two other widths of it: 3 and 12 weights, each from its own initial weights
const WIDE: SelectionParams = sizedCandidates({ candidates: [{ learningRate: 1e-3, epochs: 1 }, { learningRate: 1e-3, epochs: 1, width: 0.5 }, { learningRate: 1e-3, epochs: 1, width: 2 }], rungRounds: 1 }, w => Float32Array.from({ length: w === 0.5 ? 3 : 12 }, (_, i) => w * 100 + i))
const widthInitial = (w: number): Float32Array => Float32Array.from({ length: w === 0.5 ? 3 : 12 }, (_, i) => w * 100 + i)

test('candidates of other widths: sized from their initial weights, validated, parsed from --select, their parts of unequal length', () => {
  assert.equal(WIDE.candidates.map(c => c.size), [undefined, 3, 12])
  assert.is(WIDE.candidates[1].initialHash, hex(stateHash(initialState(widthInitial(0.5)))))
  const ok = { rounds: 10, dp: false, model: { size: 6 } }
  assert.is(selectionProblem(WIDE, ok), null)
  const withOne = (c: object): SelectionParams => ({ ...WIDE, candidates: [WIDE.candidates[0], { ...WIDE.candidates[1], ...c }] })
  assert.match(selectionProblem(withOne({ width: 0.3 }), ok) ?? '', /multiple of 0\.25/)
  assert.match(selectionProblem(withOne({ width: 1 }), ok) ?? '', /other than 1/)
  assert.match(selectionProblem(withOne({ size: undefined }), ok) ?? '', /size must be/)
  assert.match(selectionProblem(withOne({ initialHash: 'ab' }), ok) ?? '', /initialHash/)
  assert.match(selectionProblem({ ...WIDE, candidates: [WIDE.candidates[0], { learningRate: 1e-3, epochs: 1, size: 3 }] }, ok) ?? '', /go with a width/)
  assert.match(selectionProblem(withOne({ size: 6 }), ok) ?? '', /two widths give models of the same size/)
  assert.match(selectionProblem({ ...WIDE, candidates: [...WIDE.candidates, { ...WIDE.candidates[1], size: 4 }] }, ok) ?? '', /two candidates of width 0\.5 give different sizes/)
  assert.match(selectionProblem(WIDE, { ...ok, model: { size: 6, init: 'weights from w.bin' } }) ?? '', /cannot try other widths/)
  // a state of the model and the half width (6 + 3) would have as many weights as a width of 9
  assert.match(selectionProblem({ ...WIDE, candidates: [WIDE.candidates[0], WIDE.candidates[1], { ...WIDE.candidates[2], size: 9 }] }, ok) ?? '', /2 candidates' models together have 9 weights, as many as one width's model/)
  assert.match(selectionProblem(withOne({ width: 4, size: 2 ** 25 }), ok) ?? '', /more than a state may hold/)
  assert.is(selectionProblem({ candidates: [{ learningRate: 1e-3, epochs: 1 }, { learningRate: 1e-3, epochs: 1, width: 2 }], rungRounds: 1 }, { ...ok, unsized: true }), null, 'before sizing (the flags)')
  const flags = selectionFromFlags('1e-3,3e-3:2,1e-3::0.5,1e-3:1:2', undefined, { learningRate: 1e-3, epochs: 3 })
  assert.equal('selection' in flags ? flags.selection?.candidates : flags, [{ learningRate: 1e-3, epochs: 3 }, { learningRate: 3e-3, epochs: 2 }, { learningRate: 1e-3, epochs: 3, width: 0.5 }, { learningRate: 1e-3, epochs: 1, width: 2 }])
  assert.ok('error' in selectionFromFlags('1e-3:1:x', undefined, { learningRate: 1e-3, epochs: 1 }))
  // the start: each candidate's own initial weights, side by side
  const start = selectionStartState({ weights: Float32Array.of(1, 2, 3, 4, 5, 6), optimizer: [], step: 0 }, WIDE, widthInitial)
  assert.equal([...start.weights], [1, 2, 3, 4, 5, 6, 50, 51, 52, ...widthInitial(2)])
  assert.throws(() => selectionStartState({ weights: new Float32Array(6), optimizer: [], step: 0 }, WIDE), /needs that width's initial weights/)
  assert.throws(() => selectionStartState({ weights: new Float32Array(6), optimizer: [], step: 0 }, WIDE, () => new Float32Array(5)), /the manifest says 3/)
  const p = { selection: WIDE, model: { size: 6, classes: 2 } }
  const kept = keepParts(start, c => [6, 3, 12][c], [0, 1, 2], [1, 2])
  assert.equal([...kept.weights], [50, 51, 52, ...widthInitial(2)])
  assert.equal(candidateRecipe(p, 2), { candidate: 2, learningRate: 1e-3, epochs: 1, widthFactor: 2, size: 12 })
  assert.is(widthOfWeights(p, 6), 1)
  assert.is(widthOfWeights(p, 12), 2)
  assert.is(widthOfWeights(p, 21), null, 'three models side by side are no one model')
})

test('a selection among widths under secure aggregation: every part its own length, the parts dropped by their sizes, the winner of another width goes on alone', () => {
  const skill = [1, 0.3, 3] // the widest learns best
  const p = { selection: WIDE, model: { size: 6, classes: 2 } }
  const net: MemNet = new MemNet({
    n: 4, seed: 11, modelSize: 6, kindOf: roundKind, lastRound: 6, initialOf: widthInitial,
    params: q => { q.validation = { bins: LAYOUT.bins, patience: 0 }; q.training.rounds = 4; q.selection = WIDE },
    input: (member, round, kind): { values: ArrayLike<number>, count: number } | null => {
      const peer = net.peers[member]
      if (kind === 'stats') return { values: new Float64Array(statsLength(1, 2)).fill(0.5), count: 10 }
      const live = roundCandidates(peer.ledger.entries, p, round, kind)!
      const sizes = live.map(c => [6, 3, 12][c])
      assert.is(peer.roundState.weights.length, sizes.reduce((a, b) => a + b, 0), `round ${round}: the state is the live candidates' parts`)
      if (kind === 'update') return { values: Float32Array.from(live.flatMap((c, i) => Array.from({ length: sizes[i] }, () => deltaOf(c)))), count: 20_000 }
      return { values: Float64Array.from(live.flatMap(c => [...validationCounts(...Object.values(scores(40, 100 * member + c + round, skill[c])) as [Float32Array, Int32Array], LAYOUT)])), count: 40 }
    }
  })
  assert.is(net.initial.weights.length, 21)
  net.startAll()
  net.run(() => net.peers.every(q => q.ledger.lastRound >= 6))
  const entries = net.peers[0].ledger.entries
  assert.equal(entries.map(e => e.header.kind), ['stats', 'update', 'eval', 'update', 'eval', 'update', 'eval'])
  const progress = selectionAt(entries, WIDE, 2, 4)
  assert.is(progress.winner, 2)
  assert.equal(stateCandidates(entries, p), [2])
  const final = net.peers[0].state
  assert.is(final.weights.length, 12, 'the width ×2 model alone')
  for (let i = 0; i < 12; i++) assert.ok(Math.abs(final.weights[i] - widthInitial(2)[i] - 3 * deltaOf(2)) < 1e-3, `weight ${i}: ${final.weights[i]}`)
  assert.ok(net.peers.every(q => hex(stateHash(q.state)) === hex(stateHash(final))), 'every member holds the same state')
  assert.is(widthOfWeights(p, final.weights.length), 2)
})

test('a manifest with selection under DP is refused, and with selection that fits its rounds accepted', () => {
  const net = new MemNet({ n: 3, seed: 1, modelSize: 4, params: p => { p.training.rounds = 10; p.selection = three } })
  assert.equal(net.manifest.params.selection, three)
  assert.throws(() => validateManifest({ ...net.manifest, params: { ...net.manifest.params, dp: { ...net.manifest.params.dp, enabled: true } } }), /DP-SGD/)
})

test.run()
