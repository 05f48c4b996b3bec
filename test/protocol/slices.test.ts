import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { sliceBounds, assignmentSeed, sliceRankings, sliceAggregators } from '../../src/protocol/slices.ts'
import { addMasks, sumVectors, type MaskTerm } from '../../src/privacy/index.ts'
import { testSeed } from '../helpers/bytes.ts'

const members = Array.from({ length: 20 }, (_, i) => `12D3KooWpeer${String(i).padStart(2, '0')}`)
const seed = assignmentSeed(new Uint8Array(32).fill(1), 7, new Uint8Array(32).fill(2))

test('slice bounds cover the vector exactly, in order, sizes within one word', () => {
  for (const [d, s] of [[1, 1], [10, 3], [1_000_000, 20], [1_000_003, 7], [5, 5]]) {
    const b = sliceBounds(d, s)
    assert.is(b.length, s)
    assert.is(b[0].from, 0)
    assert.is(b[s - 1].to, d)
    for (let j = 1; j < s; j++) assert.is(b[j].from, b[j - 1].to)
    const sizes = b.map(x => x.to - x.from)
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `${d}/${s}: ${sizes.join(',')}`)
  }
  assert.throws(() => sliceBounds(4, 5), /slices/)
  assert.throws(() => sliceBounds(0, 1), /at least one word/)
})

test('assignment: fixed by consortium, round and previous certificate; every ranking a permutation; aggregators distinct and spread', () => {
  const r = sliceRankings(seed, members, 40)
  assert.equal(r, sliceRankings(seed, members, 40), 'deterministic')
  for (const ranking of r) assert.equal([...ranking].sort((a, b) => a - b), members.map((_, i) => i))
  assert.not.equal(sliceRankings(assignmentSeed(new Uint8Array(32).fill(1), 8, new Uint8Array(32).fill(2)), members, 40), r, 'another round, another assignment')
  assert.not.equal(sliceRankings(assignmentSeed(new Uint8Array(32).fill(1), 7, new Uint8Array(32).fill(3)), members, 40), r, 'another chain, another assignment')
  const agg = sliceAggregators(r, 2, new Set(members.map((_, i) => i)))
  const load = new Array<number>(members.length).fill(0)
  for (const a of agg) { assert.is(new Set(a).size, 2); for (const i of a) load[i]++ }
  // 80 places among 20 members: each aggregates some, none very many
  assert.ok(Math.max(...load) <= 12, `load ${load.join(',')}`)
  // the order members are listed in does not change who aggregates what
  const reversed = [...members].reverse()
  const again = sliceAggregators(sliceRankings(seed, reversed, 40), 2, new Set(members.map((_, i) => i)))
  assert.equal(again.map(a => a.map(i => reversed[i])), agg.map(a => a.map(i => members[i])))
})

test('a member that drops is replaced by the next in each of its slices\' rankings; no other slice moves', () => {
  const r = sliceRankings(seed, members, 40)
  const all = new Set(members.map((_, i) => i))
  const before = sliceAggregators(r, 2, all)
  const gone = before[0][0]
  const after = sliceAggregators(r, 2, new Set([...all].filter(i => i !== gone)))
  for (let j = 0; j < r.length; j++) {
    if (!before[j].includes(gone)) { assert.equal(after[j], before[j], `slice ${j} kept`); continue }
    const rest = before[j].filter(i => i !== gone)
    const next = r[j].filter(i => i !== gone && !rest.includes(i)).find(i => !before[j].includes(i))!
    assert.equal(new Set(after[j]), new Set([...rest, next]), `slice ${j}`)
  }
  assert.throws(() => sliceAggregators(r, 2, new Set([3])), /needs 2 aggregators, only 1/)
})

test('slices unmasked apart add up to the vector unmasked whole', () => {
  const d = 50_001
  const inputs = [1, 2, 3].map(k => Uint32Array.from({ length: d }, (_, i) => (i * 2654435761 + k * 97) >>> 0))
  const terms: MaskTerm[][] = [[{ seed: testSeed(1), sign: 1 }, { seed: testSeed(12), sign: 1 }], [{ seed: testSeed(2), sign: 1 }, { seed: testSeed(12), sign: -1 }], [{ seed: testSeed(3), sign: 1 }]]
  const masked = inputs.map((x, u) => { const y = x.slice(); addMasks(y, terms[u]); return y })
  const expected = sumVectors(inputs)
  const unmasked = new Uint32Array(d)
  for (const b of sliceBounds(d, 6)) {
    const part = sumVectors(masked.map(y => y.subarray(b.from, b.to)))
    addMasks(part, [1, 2, 3].map(k => ({ seed: testSeed(k), sign: -1 as const })), b.from)
    unmasked.set(part, b.from)
  }
  assert.equal(unmasked, expected)
})

test.run()
