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
  const r = sliceRankings(seed, members, 40, 2)
  assert.equal(r, sliceRankings(seed, members, 40, 2), 'deterministic')
  for (const ranking of r) assert.equal([...ranking].sort((a, b) => a - b), members.map((_, i) => i))
  assert.not.equal(sliceRankings(assignmentSeed(new Uint8Array(32).fill(1), 8, new Uint8Array(32).fill(2)), members, 40, 2), r, 'another round, another assignment')
  assert.not.equal(sliceRankings(assignmentSeed(new Uint8Array(32).fill(1), 7, new Uint8Array(32).fill(3)), members, 40, 2), r, 'another chain, another assignment')
  const agg = sliceAggregators(r, 2, new Set(members.map((_, i) => i)))
  const load = new Array<number>(members.length).fill(0)
  for (const a of agg) { assert.is(new Set(a).size, 2); for (const i of a) load[i]++ }
  // 80 places among 20 members, dealt out in blocks of 10 slices: exactly 4 each
  assert.equal(load, new Array<number>(members.length).fill(4))
  // the order members are listed in does not change who aggregates what
  const reversed = [...members].reverse()
  const again = sliceAggregators(sliceRankings(seed, reversed, 40, 2), 2, new Set(members.map((_, i) => i)))
  assert.equal(again.map(a => a.map(i => reversed[i])), agg.map(a => a.map(i => members[i])))
})

test('balance: with everyone present no member aggregates more than one slice of each block of ⌊n / A⌋, and no pair shares many slices', () => {
  for (const [n, slices, perSlice] of [[5, 64, 2], [7, 64, 3], [10, 64, 2], [20, 64, 2], [50, 64, 2], [64, 256, 2], [3, 10, 3]]) {
    const ids = Array.from({ length: n }, (_, i) => `peer-${i}`)
    const r = sliceRankings(assignmentSeed(new Uint8Array(32).fill(n), n, new Uint8Array(32).fill(slices)), ids, slices, perSlice)
    for (const ranking of r) assert.equal([...ranking].sort((a, b) => a - b), ids.map((_, i) => i), 'each ranking a permutation')
    const agg = sliceAggregators(r, perSlice, new Set(ids.map((_, i) => i)))
    const load = new Array<number>(n).fill(0)
    const pairs = new Map<string, number>()
    for (const a of agg) {
      assert.is(new Set(a).size, perSlice)
      for (const i of a) load[i]++
      for (const i of a) for (const k of a) if (i < k) pairs.set(`${i},${k}`, (pairs.get(`${i},${k}`) ?? 0) + 1)
    }
    const perBlock = Math.floor(n / perSlice)
    assert.ok(Math.max(...load) <= Math.ceil(slices / perBlock), `n=${n}: load ${load.join(',')}`)
    // a fresh permutation each block: a fixed pairing would give one pair every block
    if (n >= 10) assert.ok(Math.max(...pairs.values()) < Math.ceil(slices / perBlock), `n=${n}: a pair shares ${Math.max(...pairs.values())} slices`)
  }
  assert.throws(() => sliceRankings(seed, members, 4, 0), /perSlice/)
  assert.throws(() => sliceRankings(seed, members, 4, members.length + 1), /perSlice/)
})

test('a member that drops is replaced by the next in each of its slices\' rankings; no other slice moves', () => {
  const r = sliceRankings(seed, members, 40, 2)
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
