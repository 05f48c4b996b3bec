import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { throwsA } from '../helpers/assert.ts'
import {
  seal, open, sealForPeer, openFromPeer, generateX25519KeyPair, seededRandom, DecryptionError, InvalidArgumentError, NONCE_BYTES, TAG_BYTES
} from '../../src/privacy/index.ts'
import { toHex, testSeed } from '../helpers/bytes.ts'

const key = testSeed(1)
const aad = new TextEncoder().encode('from A to B, round 3')
const msg = new TextEncoder().encode('shares of b_u and s_u^SK')

test('seal/open round trip, nonce || ciphertext || tag', () => {
  const box = seal(key, msg, aad)
  assert.is(box.length, NONCE_BYTES + msg.length + TAG_BYTES)
  assert.is(new TextDecoder().decode(open(key, box, aad)), 'shares of b_u and s_u^SK')
  assert.is(open(key, seal(key, new Uint8Array(0), aad), aad).length, 0)
})

test('a wrong key, wrong aad, or any flipped bit fails authentication', () => {
  const box = seal(key, msg, aad)
  throwsA(() => open(testSeed(2), box, aad), DecryptionError)
  throwsA(() => open(key, box, new Uint8Array(0)), DecryptionError)
  for (const i of [0, NONCE_BYTES, box.length - 1]) {
    const bad = Uint8Array.from(box); bad[i] ^= 0x80
    throwsA(() => open(key, bad, aad), DecryptionError)
  }
  throwsA(() => open(key, box.subarray(0, 20), aad), DecryptionError)
})

test('nonces are fresh per message; a seeded generator makes boxes reproducible', () => {
  assert.is.not(toHex(seal(key, msg, aad)), toHex(seal(key, msg, aad)))
  assert.is(toHex(seal(key, msg, aad, seededRandom(testSeed(5)))), toHex(seal(key, msg, aad, seededRandom(testSeed(5)))))
})

test('sealForPeer: only the intended peer opens the box', () => {
  const rng = seededRandom(testSeed(6))
  const a = generateX25519KeyPair(rng)
  const b = generateX25519KeyPair(rng)
  const eve = generateX25519KeyPair(rng)
  const ctx = Uint8Array.of(1, 2)
  const box = sealForPeer(a.secretKey, b.publicKey, ctx, msg, aad)
  assert.is(toHex(openFromPeer(b.secretKey, a.publicKey, ctx, box, aad)), toHex(msg))
  throwsA(() => openFromPeer(eve.secretKey, a.publicKey, ctx, box, aad), DecryptionError)
  throwsA(() => openFromPeer(b.secretKey, a.publicKey, Uint8Array.of(1, 3), box, aad), DecryptionError)
})

test('bad arguments are typed errors', () => {
  throwsA(() => seal(key.subarray(0, 16), msg, aad), InvalidArgumentError)
  throwsA(() => seal(key, 'text' as never, aad), InvalidArgumentError)
})

test.run()
