import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { throwsA } from '../helpers/assert.ts'
import { webcrypto } from 'node:crypto'
import { expandMask, addMask, addMasks, prgKey, InvalidArgumentError } from '../../src/privacy/index.ts'
import { toHex, testSeed } from '../helpers/bytes.ts'

const SEED = Uint8Array.from({ length: 32 }, (_, i) => i) // 00 01 .. 1f

/** The construction of src/privacy/prg.ts, rebuilt from its description on WebCrypto alone. */
async function webcryptoMask (seed: Uint8Array, n: number): Promise<Uint32Array> {
  const ikm = await webcrypto.subtle.importKey('raw', seed, 'HKDF', false, ['deriveBits'])
  const info = new Uint8Array([...new TextEncoder().encode('medmesh/v1/mask-prg-key'), 0])
  const keyBits = await webcrypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info }, ikm, 128)
  const key = await webcrypto.subtle.importKey('raw', keyBits, 'AES-CTR', false, ['encrypt'])
  const ks = await webcrypto.subtle.encrypt({ name: 'AES-CTR', counter: new Uint8Array(16), length: 128 }, key, new Uint8Array(4 * n))
  const view = new DataView(ks)
  return Uint32Array.from({ length: n }, (_, i) => view.getUint32(4 * i, true))
}

test('pinned vector: seed 00..1f', () => {
  assert.is(toHex(prgKey(SEED)), '4a9accb5d59475e05cd6d064d98ce77c')
  const words = Array.from(expandMask(SEED, 8), w => w.toString(16).padStart(8, '0')).join(' ')
  assert.is(words, 'c83aa5b9 49408f9d c3306794 4bd20bba b689e845 4a836672 14b97765 23f4265d')
})

test('an independent implementation (WebCrypto HKDF + AES-CTR) reproduces the mask bit for bit', async () => {
  for (const n of [1, 5, 16384, 16385, 50_001]) {
    const seed = testSeed(n & 0xff)
    assert.equal(Array.from(expandMask(seed, n)), Array.from(await webcryptoMask(seed, n)), `n=${n}`)
  }
})

test('expandMask writes into a preallocated array and equals addMask on zeros', () => {
  const n = 70_000 // several chunks and a partial one
  const out = new Uint32Array(n)
  assert.is(expandMask(SEED, n, out), out)
  const acc = new Uint32Array(n)
  addMask(acc, SEED, 1)
  assert.equal(acc, out)
  throwsA(() => expandMask(SEED, n, new Uint32Array(n - 1)), InvalidArgumentError)
  assert.is(expandMask(SEED, 0).length, 0)
})

test('a prefix of a longer mask is the shorter mask', () => {
  const long = expandMask(SEED, 40_000)
  assert.equal(expandMask(SEED, 17_000), long.subarray(0, 17_000))
})

test('adding then subtracting a mask restores the vector; masks of different seeds differ', () => {
  const v = Uint32Array.from({ length: 33_333 }, (_, i) => (i * 2654435761) >>> 0)
  const copy = Uint32Array.from(v)
  addMask(v, SEED, 1)
  assert.not.equal(v, copy)
  addMask(v, SEED, -1)
  assert.equal(v, copy)
  assert.not.equal(expandMask(testSeed(1), 8), expandMask(testSeed(2), 8))
})

test('seeking: the masks of a slice starting at any word equal that part of the whole masks (counter carries included)', () => {
  const n = 300_000 // 75,000 counter blocks: the big-endian counter carries into its third byte
  const seeds = [SEED, testSeed(9), testSeed(10)]
  const whole = new Uint32Array(n)
  addMasks(whole, [{ seed: seeds[0], sign: 1 }, { seed: seeds[1], sign: -1 }, { seed: seeds[2], sign: 1 }])
  for (const [from, length] of [[0, 5], [1, 7], [3, 1], [4, 4], [5, 16_384], [16_383, 3], [16_384, 16_385], [1025, 70_000], [262_145, 37_855], [299_999, 1]]) {
    const slice = new Uint32Array(length)
    addMasks(slice, [{ seed: seeds[0], sign: 1 }, { seed: seeds[1], sign: -1 }, { seed: seeds[2], sign: 1 }], from)
    assert.equal(slice, whole.subarray(from, from + length), `from ${from}, ${length} words`)
  }
  throwsA(() => addMasks(new Uint32Array(2), [{ seed: SEED, sign: 1 }], -1), InvalidArgumentError)
  throwsA(() => addMasks(new Uint32Array(2), [{ seed: SEED, sign: 1 }], 1.5), InvalidArgumentError)
})

test('arguments are checked', () => {
  throwsA(() => expandMask(SEED.subarray(1), 4), InvalidArgumentError)
  throwsA(() => expandMask(SEED, -1), InvalidArgumentError)
  throwsA(() => expandMask(SEED, 1.5), InvalidArgumentError)
  throwsA(() => addMask(new Uint32Array(4), SEED, 2 as never), InvalidArgumentError)
  throwsA(() => addMask(new Int32Array(4) as never, SEED, 1), InvalidArgumentError)
})

test.run()
