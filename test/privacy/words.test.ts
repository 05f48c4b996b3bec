import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { webcrypto } from 'node:crypto'
import { addWords, ChunkSum, CHUNK_WORDS, WORDS_SIMD, useSimd } from '../../src/privacy/words.ts'
import { addMasks, expandMask } from '../../src/privacy/index.ts'
import { testSeed } from '../helpers/bytes.ts'

function randomWords (n: number): Uint32Array {
  const out = new Uint32Array(n)
  for (let off = 0; off < n; off += 16384) webcrypto.getRandomValues(out.subarray(off, Math.min(n, off + 16384)))
  return out
}

/** The arithmetic spelled out on numbers: (a ± b) mod 2^32, nothing borrowed from typed-array wrapping. */
function reference (a: Uint32Array, b: Uint32Array, sign: 1 | -1): number[] {
  return Array.from(a, (x, i) => ((x + sign * b[i]) % 2 ** 32 + 2 ** 32) % 2 ** 32)
}

test('the SIMD kernel loads on this runtime (Node 22 has WebAssembly SIMD)', () => {
  assert.ok(WORDS_SIMD())
})

for (const simd of [true, false]) {
  const mode = simd ? 'SIMD' : 'plain loops'
  test(`${mode}: addWords adds and subtracts modulo 2^32 at every length, tails and chunk edges included`, () => {
    useSimd(simd)
    try {
      for (const n of [0, 1, 3, 4, 15, 16, 17, 63, CHUNK_WORDS - 1, CHUNK_WORDS, CHUNK_WORDS + 5, 3 * CHUNK_WORDS + 13]) {
        const a = randomWords(n)
        const b = randomWords(n)
        // the extremes, where wrapping happens
        if (n > 2) { a[0] = 0xffffffff; b[0] = 1; a[1] = 0; b[1] = 0xffffffff }
        for (const sign of [1, -1] as const) {
          const acc = a.slice()
          addWords(acc, b, sign)
          assert.equal(Array.from(acc), reference(a, b, sign), `n=${n} sign=${sign}`)
        }
      }
    } finally { useSimd(true) }
  })

  test(`${mode}: ChunkSum folds many operands, bytes at any alignment or words, and writes back once`, () => {
    useSimd(simd)
    try {
      const n = 1000 + 7
      const start = randomWords(n)
      const ops = [randomWords(n), randomWords(n), randomWords(n)]
      const expected = start.slice()
      for (let i = 0; i < n; i++) expected[i] = expected[i] + ops[0][i] - ops[1][i] + ops[2][i]
      // an operand as bytes one past a 4-byte boundary, as a Node Buffer may be
      const unaligned = new Uint8Array(4 * n + 1).subarray(1)
      unaligned.set(new Uint8Array(ops[1].buffer))
      const acc = start.slice()
      const sum = new ChunkSum()
      sum.begin(acc)
      sum.add(new Uint8Array(ops[0].buffer))
      sum.sub(unaligned)
      sum.add(ops[2])
      sum.end()
      assert.equal(Array.from(acc), Array.from(expected))
      assert.throws(() => { sum.add(ops[0]) }, /without begin/)
      sum.begin(acc.subarray(0, 10))
      assert.throws(() => { sum.add(ops[0]) }, /operand has 1007 words, the chunk 10/)
      sum.end()
      assert.throws(() => { sum.begin(new Uint32Array(CHUNK_WORDS + 1)) }, /at most/)
      // sums share the kernel's accumulator: a second one may not open inside the first
      sum.begin(acc.subarray(0, 4))
      assert.throws(() => { new ChunkSum().begin(acc.subarray(4, 8)) }, /already open/)
      assert.throws(() => { addWords(acc.subarray(4, 8), acc.subarray(8, 12)) }, /already open/)
      sum.end()
      addWords(acc.subarray(4, 8), acc.subarray(8, 12)) // and once it is closed, they may
    } finally { useSimd(true) }
  })

  test(`${mode}: addMasks gives the masks expandMask spells out, at an offset too`, () => {
    useSimd(simd)
    try {
      const n = 2 * CHUNK_WORDS + 21
      const seeds = [testSeed(1), testSeed(2), testSeed(3)]
      const base = randomWords(n)
      const acc = base.slice()
      addMasks(acc, [{ seed: seeds[0], sign: 1 }, { seed: seeds[1], sign: -1 }, { seed: seeds[2], sign: 1 }])
      const m = seeds.map(s => expandMask(s, n))
      const expected = base.slice()
      for (let i = 0; i < n; i++) expected[i] = expected[i] + m[0][i] - m[1][i] + m[2][i]
      assert.equal(Array.from(acc), Array.from(expected))
      const from = CHUNK_WORDS - 3
      const slice = base.slice(from, from + 100)
      addMasks(slice, [{ seed: seeds[0], sign: -1 }], from)
      assert.equal(Array.from(slice), Array.from(base.subarray(from, from + 100), (x, i) => (x - m[0][from + i]) >>> 0))
    } finally { useSimd(true) }
  })
}

test.run()
