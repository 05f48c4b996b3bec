import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { seededRandom, systemRandom, randomBytes, uniformDoubles, InvalidArgumentError } from '../../src/privacy/index.ts'
import { toHex, testSeed } from '../helpers/bytes.ts'

test('seededRandom is the ChaCha20 keystream (RFC 8439 appendix A.1, test vector 1)', () => {
  const out = randomBytes(seededRandom(new Uint8Array(32)), 64)
  assert.is(toHex(out), '76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586')
})

test('seededRandom: same seed, same stream, however it is read; another seed, another stream', () => {
  const whole = randomBytes(seededRandom(testSeed(1)), 200_000)
  const rng = seededRandom(testSeed(1))
  const parts = [randomBytes(rng, 7), randomBytes(rng, 70_000), randomBytes(rng, 129_993)]
  assert.is(toHex(Buffer.concat(parts)), toHex(whole))
  assert.is.not(toHex(randomBytes(seededRandom(testSeed(2)), 32)), toHex(whole.subarray(0, 32)))
})

test('seededRandom rejects a seed of the wrong size', () => {
  assert.throws(() => seededRandom(new Uint8Array(31)), (e: unknown) => e instanceof InvalidArgumentError && /seed must be 32 bytes/.test(e.message))
})

test('systemRandom fills buffers with distinct random bytes', () => {
  const a = randomBytes(systemRandom, 32)
  const b = randomBytes(systemRandom, 32)
  assert.is.not(toHex(a), toHex(b))
})

test('uniformDoubles lie in [0, 1) and have mean near 1/2', () => {
  const u = uniformDoubles(seededRandom(testSeed(3)), 100_000)
  let sum = 0
  for (const x of u) { assert.ok(x >= 0 && x < 1); sum += x }
  assert.ok(Math.abs(sum / u.length - 0.5) < 0.005, `mean ${sum / u.length}`)
})

test.run()
