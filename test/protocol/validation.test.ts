/** Federated validation: counts, the AUC from summed histograms, the eval round, the best round, early stopping. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MemNet, mulberry32 } from './harness.ts'
import {
  validationCounts, validationFigures, validationLength, encodeValidation, decodeValidation, bestModel, noLongerImproving, roundKind, validationHistory, degenerateReason, chooseIndex, judgeSeries, stillChoosable, modelsToKeep, type ValidationFigures
} from '../../src/protocol/validation.ts'
import { rocAuc } from '../../src/training/metrics.ts'
import { encodeCounts } from '../../src/privacy/index.ts'
import type { LedgerEntry } from '../../src/protocol/ledger.ts'

/** Scores of `n` examples of `k` classes that separate the classes imperfectly (seeded). */
function site (n: number, k: number, seed: number, skill: number): { probs: Float32Array, labels: Int32Array } {
  const rand = mulberry32(seed)
  const labels = Int32Array.from({ length: n }, () => Math.floor(rand() * k))
  const probs = new Float32Array(n * k)
  for (let i = 0; i < n; i++) {
    const logits = Array.from({ length: k }, (_, c) => (c === labels[i] ? skill : 0) + 2 * (rand() + rand() + rand() - 1.5))
    const m = Math.max(...logits)
    const e = logits.map(x => Math.exp(x - m))
    const s = e.reduce((a, b) => a + b, 0)
    e.forEach((x, c) => { probs[i * k + c] = x / s })
  }
  return { probs, labels }
}

function pooledExactAuc (sites: Array<{ probs: Float32Array, labels: Int32Array }>, k: number): number {
  const probs = Float32Array.from(sites.flatMap(s => Array.from(s.probs)))
  const labels = Int32Array.from(sites.flatMap(s => Array.from(s.labels)))
  const scoredClasses = k === 2 ? [1] : Array.from({ length: k }, (_, c) => c)
  const aucs = scoredClasses.map(c => rocAuc(Float32Array.from({ length: labels.length }, (_, i) => probs[i * k + c]), Array.from(labels, l => l === c)))
  return aucs.reduce((a, b) => a + b, 0) / aucs.length
}

for (const k of [2, 5]) {
  test(`${k} classes: the AUC from summed 1,000-bin histograms is within 0.001 of the exact pooled AUC; accuracy is exact`, () => {
    const layout = { classes: k, bins: 1000 }
    const sites = [site(300, k, 1, 1.5), site(520, k, 2, 2), site(150, k, 3, 1)]
    const summed = new Float64Array(validationLength(layout))
    for (const s of sites) validationCounts(s.probs, s.labels, layout).forEach((v, i) => { summed[i] += v })
    const f = validationFigures(summed, layout)
    const exact = pooledExactAuc(sites, k)
    assert.ok(Math.abs(f.auc - exact) < 0.001, `histogram AUC ${f.auc} vs exact ${exact}`)
    assert.ok(exact > 0.6 && exact < 0.99, `a task neither trivial nor hopeless: ${exact}`)
    assert.is(f.n, 970)
    let correct = 0
    for (const s of sites) s.labels.forEach((l, i) => { let b = 0; for (let c = 1; c < k; c++) if (s.probs[i * k + c] > s.probs[i * k + b]) b = c; if (b === l) correct++ })
    assert.is(f.accuracy, correct / 970)
    assert.equal(decodeValidation(encodeValidation(f)), f)
  })
}

test('an eval round: the certificate carries the figures of the summed counts, and no site\'s counts appear outside its masked vector', () => {
  const layout = { classes: 2, bins: 50 }
  const n = 4
  const sites = Array.from({ length: n }, (_, i) => site(40 + 10 * i, 2, 10 + i, 1.5))
  const counts = sites.map(s => validationCounts(s.probs, s.labels, layout))
  const net = new MemNet({
    n, seed: 8, modelSize: 6, lastRound: 0, kindOf: () => 'eval',
    params: p => { p.validation = { bins: layout.bins, patience: 0 } },
    input: member => ({ values: counts[member], count: sites[member].labels.length })
  })
  net.startAll()
  net.run(() => net.peers.every(p => p.ledger.lastRound >= 0))
  const header = net.peers[0].ledger.entries[0].header
  assert.is(header.kind, 'eval')
  const summed = new Float64Array(validationLength(layout))
  counts.forEach(c => c.forEach((v, i) => { summed[i] += v }))
  assert.equal(decodeValidation(header.extra), validationFigures(summed, layout))
  assert.equal(header.survivors, [0, 1, 2, 3])
  // a site's encoded counts never travel in the clear: not in any message, not in any blob
  const sent = net.log.flatMap(l => l.action.type === 'broadcast' ? [l.action.wire] : l.action.type === 'publish-blob' ? [l.action.data] : [])
  for (const [i, c] of counts.entries()) {
    const plain = Buffer.from(encodeCounts(c, sites[i].labels.length, n).buffer).subarray(0, 64)
    assert.ok(sent.every(b => !Buffer.from(b.buffer, b.byteOffset, b.byteLength).includes(plain)), `site ${i}'s counts appear nowhere`)
  }
})

/** a ledger of model rounds each judged by an eval round with these AUCs */
function history (aucs: number[]): { entries: LedgerEntry[] } {
  const entries = aucs.flatMap((auc, i) => [
    { header: { kind: 'update', round: 2 * i + 1, stateHash: Uint8Array.of(i), extra: new Uint8Array(0) } },
    { header: { kind: 'eval', round: 2 * i + 2, stateHash: Uint8Array.of(i), extra: encodeValidation({ auc, accuracy: 0.5, n: 10, predictedClasses: 2, scoreBins: 10, conformal: [] }) } }
  ]) as unknown as LedgerEntry[]
  return { entries }
}

test('the chosen round is the best by validation AUC smoothed over its neighbours; patience ends training after that many without a better one', () => {
  const h = history([0.80, 0.86, 0.85, 0.84])
  assert.is(validationHistory(h).length, 4)
  // smoothed: 0.830, 0.837, 0.850, 0.845: round 3 (protocol round 5), not the single best round 2
  assert.is(bestModel(h)!.model.header.round, 5)
  assert.ok(Math.abs(bestModel(h)!.smoothedAuc - 0.85) < 1e-12)
  // one lucky evaluation between poor ones is not chosen over a stretch of good ones
  assert.is(bestModel(history([0.60, 0.90, 0.60, 0.80, 0.84, 0.82, 0.70]))!.model.header.round, 9)
  assert.not.ok(noLongerImproving(h, 3))
  assert.ok(noLongerImproving(h, 2))
  assert.not.ok(noLongerImproving(h, 0), 'patience 0: never early')
  assert.is(bestModel(history([NaN, 0.7]))!.model.header.round, 3, 'a round with nothing to judge by is never the best')
  assert.equal([0, 1, 2, 3, 4].map(roundKind), ['stats', 'update', 'eval', 'update', 'eval'])
})

/** a ledger whose eval rounds carry these figures */
function historyOf (figures: ValidationFigures[]): { entries: LedgerEntry[] } {
  const entries = figures.flatMap((f, i) => [
    { header: { kind: 'update', round: 2 * i + 1, stateHash: Uint8Array.of(i), extra: new Uint8Array(0) } },
    { header: { kind: 'eval', round: 2 * i + 2, stateHash: Uint8Array.of(i), extra: encodeValidation(f) } }
  ]) as unknown as LedgerEntry[]
  return { entries }
}

test('a model that predicts one class for every image, or ties every score, is degenerate and never chosen while a better round exists', () => {
  const layout = { classes: 3, bins: 100 }
  // 30 images, 10 per class; a dead model: probability 1 for class 0 on every image
  const labels = Array.from({ length: 30 }, (_, i) => i % 3)
  const dead = validationFigures(validationCounts(labels.flatMap(() => [1, 0, 0]), labels, layout), layout)
  assert.is(dead.predictedClasses, 1)
  assert.is(dead.scoreBins, 1)
  assert.is(degenerateReason(dead, 3), 'every validation score is tied')
  // one class everywhere but scores that vary: degenerate by its predictions
  const oneClass = validationFigures(validationCounts(labels.flatMap((_, i) => [0.5 + i / 100, 0.3, 0.2 - i / 100]), labels, layout), layout)
  assert.is(oneClass.predictedClasses, 1)
  assert.ok(oneClass.scoreBins! > 1)
  assert.is(degenerateReason(oneClass, 3), 'it predicts one class for every validation image')
  // a model that learnt something
  const good = validationFigures(validationCounts(labels.flatMap(y => [0, 1, 2].map(c => c === y ? 0.6 : 0.2)), labels, layout), layout)
  assert.is(degenerateReason(good, 3), null)
  assert.is(good.auc, 1)
  // the figures survive the certificate's encoding, and old 24-byte certificates still decode
  assert.equal(decodeValidation(encodeValidation(dead)), dead)
  const old = decodeValidation(new Uint8Array(Float64Array.of(0.7, 0.6, 10).buffer))!
  assert.equal([old.auc, old.predictedClasses, old.scoreBins, old.conformal], [0.7, null, null, []])
  // a degenerate round with the higher AUC is not chosen; degenerate everywhere: the best of them, flagged
  const h = historyOf([{ ...dead, auc: 0.9 }, good, dead])
  assert.is(bestModel(h, 3)!.model.header.round, 3)
  assert.is(bestModel(h, 3)!.degenerate, null)
  const allDead = bestModel(historyOf([dead, dead]), 3)!
  assert.is(allDead.degenerate, 'every validation score is tied')
})

test('the states a node keeps always include the round that will be chosen, however later rounds turn out', () => {
  const rand = mulberry32(5)
  const fig = (auc: number, dead: boolean): ValidationFigures => ({ auc, accuracy: 0.5, n: 20, predictedClasses: dead ? 1 : 2, scoreBins: dead ? 1 : 30, conformal: [] })
  for (let trial = 0; trial < 300; trial++) {
    const series = Array.from({ length: 2 + Math.floor(rand() * 12) }, () => fig(Math.round(rand() * 20) / 20, rand() < 0.2))
    let kept = new Set<number>()
    for (let k = 0; k < series.length; k++) {
      // model round k is certified before its eval round: its state is saved, and of the others
      // only those still choosable by what is validated so far (rounds 0..k-1) are kept
      kept = new Set([...stillChoosable(judgeSeries(series.slice(0, k), 2)).filter(i => kept.has(i)), k])
      // then round k is validated: the round chosen now must be at hand
      const chosen = chooseIndex(judgeSeries(series.slice(0, k + 1), 2))
      assert.ok(chosen < 0 || kept.has(chosen), `trial ${trial}, after ${k + 1} rounds: round ${chosen} chosen but not kept (${[...kept]})`)
    }
  }
})

test('a model whose eval round aborted is not kept forever: only those certified since the last eval round are', () => {
  const f = { auc: 0.8, accuracy: 0.7, n: 20, predictedClasses: 2, scoreBins: 30, conformal: [] }
  const update = (round: number) => ({ header: { kind: 'update', round, stateHash: Uint8Array.of(round), extra: new Uint8Array(0) } })
  const evalOf = (round: number) => ({ header: { kind: 'eval', round, stateHash: Uint8Array.of(round - 1), extra: encodeValidation(f) } })
  // round 3's model was certified, its eval round 4 aborted, the next model round is 5
  const entries = [update(1), evalOf(2), update(3), update(5), evalOf(6), update(7)] as unknown as LedgerEntry[]
  assert.equal(modelsToKeep({ entries }, 2).map(e => e.header.round).sort((a, b) => a - b), [1, 5, 7])
})

test.run()
