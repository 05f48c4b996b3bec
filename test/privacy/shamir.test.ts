import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { throwsA } from '../helpers/assert.ts'
import { checkPrimeSync } from 'node:crypto'
import {
  splitSecret, reconstructSecret, secretCommitment, encodeShare, decodeShare, x25519PublicKey, seededRandom,
  TooFewSharesError, InconsistentSharesError, InvalidArgumentError, SHARE_BYTES, FIELD_PRIME, type Share
} from '../../src/privacy/index.ts'
import { toHex, testSeed } from '../helpers/bytes.ts'

function * subsets<T> (items: T[], k: number, start = 0, acc: T[] = []): Generator<T[]> {
  if (acc.length === k) { yield acc.slice(); return }
  for (let i = start; i < items.length; i++) { acc.push(items[i]); yield * subsets(items, k, i + 1, acc); acc.pop() }
}

test('every t-subset reconstructs the secret, for every t <= n <= 7', () => {
  const rng = seededRandom(testSeed(1))
  let checked = 0
  for (let n = 1; n <= 7; n++) {
    for (let t = 1; t <= n; t++) {
      const secret = testSeed(n * 10 + t)
      const shares = splitSecret(secret, t, n, rng)
      for (const s of subsets(shares, t)) {
        assert.is(toHex(reconstructSecret(s, t)), toHex(secret))
        checked++
      }
    }
  }
  assert.ok(checked > 200, `${checked} subsets`)
})

test('fewer than t shares: a clear error; t-1 shares interpolate to something else', () => {
  const secret = testSeed(2)
  const shares = splitSecret(secret, 4, 6, seededRandom(testSeed(3)))
  throwsA(() => reconstructSecret(shares.slice(0, 3), 4), TooFewSharesError, /3 share\(s\) given, 4 needed/)
  // pretending the threshold were 3 gives garbage, not the secret (the 4th coefficient is random)
  let wrong: Uint8Array | undefined
  try { wrong = reconstructSecret(shares.slice(0, 3), 3) } catch (e) { assert.instance(e, InconsistentSharesError) }
  if (wrong !== undefined) assert.is.not(toHex(wrong), toHex(secret))
})

test('the field is the smallest prime above 2^256: every 256-bit secret fits, and a share is 2 + 33 bytes', () => {
  assert.ok(checkPrimeSync(FIELD_PRIME, { checks: 64 }), 'prime')
  for (let k = 1n; (1n << 256n) + k < FIELD_PRIME; k += 2n) assert.not.ok(checkPrimeSync((1n << 256n) + k, { checks: 8 }), `2^256 + ${k} is prime too`)
  assert.ok(FIELD_PRIME > (1n << 256n) && FIELD_PRIME < (1n << 264n))
  assert.is(SHARE_BYTES, 35)
  const max = new Uint8Array(32).fill(255)
  assert.is(toHex(reconstructSecret(splitSecret(max, 2, 3, seededRandom(testSeed(9))).slice(1), 2)), toHex(max))
})

test('extra shares are checked against the polynomial; a bad one is named when a commitment is given', () => {
  const secret = testSeed(4)
  const shares = splitSecret(secret, 3, 6, seededRandom(testSeed(5)))
  const bad: Share[] = shares.map(s => ({ x: s.x, y: Uint8Array.from(s.y) }))
  bad[1].y[bad[1].y.length - 1] ^= 1 // share at x=2 is corrupted
  throwsA(() => reconstructSecret(bad, 3), InconsistentSharesError)
  const commitment = secretCommitment(secret)
  const verify = (s: Uint8Array) => toHex(secretCommitment(s)) === toHex(commitment)
  try {
    reconstructSecret(bad, 3, { verify })
    assert.unreachable('should have thrown')
  } catch (e) {
    assert.instance(e, InconsistentSharesError)
    assert.equal((e as InconsistentSharesError).suspects, [2])
  }
  // leaving the bad share out, the rest reconstruct and verify
  assert.is(toHex(reconstructSecret(bad.filter(s => s.x !== 2), 3, { verify })), toHex(secret))
})

test('exactly t shares with one corrupted are caught by the commitment', () => {
  const secret = testSeed(6)
  const shares = splitSecret(secret, 3, 3, seededRandom(testSeed(7)))
  shares[0].y[30] ^= 4
  throwsA(() => reconstructSecret(shares, 3, { verify: s => toHex(secretCommitment(s)) === toHex(secretCommitment(secret)) }), InconsistentSharesError)
})

test('a shared X25519 secret key can be verified against its public key', () => {
  const sk = testSeed(8)
  const pk = x25519PublicKey(sk)
  const shares = splitSecret(sk, 2, 3, seededRandom(testSeed(9)))
  const out = reconstructSecret(shares.slice(1), 2, { verify: s => toHex(x25519PublicKey(s)) === toHex(pk) })
  assert.is(toHex(out), toHex(sk))
})

test('custom share points, encoding round trip, determinism with a seeded generator', () => {
  const secret = testSeed(10)
  const shares = splitSecret(secret, 2, [5, 9, 300], seededRandom(testSeed(11)))
  assert.equal(shares.map(s => s.x), [5, 9, 300])
  const encoded = shares.map(encodeShare)
  assert.ok(encoded.every(e => e.length === SHARE_BYTES))
  assert.is(toHex(reconstructSecret([decodeShare(encoded[2]), decodeShare(encoded[0])], 2)), toHex(secret))
  const again = splitSecret(secret, 2, [5, 9, 300], seededRandom(testSeed(11)))
  assert.equal(again.map(s => toHex(s.y)), shares.map(s => toHex(s.y)))
})

test('bad arguments are typed errors', () => {
  const secret = testSeed(12)
  throwsA(() => splitSecret(secret.subarray(1), 2, 3), InvalidArgumentError)
  throwsA(() => splitSecret(secret, 4, 3), InvalidArgumentError)
  throwsA(() => splitSecret(secret, 0, 3), InvalidArgumentError)
  throwsA(() => splitSecret(secret, 2, [1, 1, 2]), InvalidArgumentError)
  throwsA(() => splitSecret(secret, 2, [0, 1]), InvalidArgumentError)
  const shares = splitSecret(secret, 2, 3)
  throwsA(() => reconstructSecret([shares[0], shares[0]], 2), InvalidArgumentError)
  throwsA(() => reconstructSecret([shares[0], { x: 2, y: new Uint8Array(33).fill(255) }], 2), InvalidArgumentError)
  throwsA(() => decodeShare(new Uint8Array(SHARE_BYTES)), InvalidArgumentError)
  throwsA(() => decodeShare(new Uint8Array(10)), InvalidArgumentError)
})

test.run()
