/**
 * Authenticated encryption of a message for one peer: ChaCha20-Poly1305 (RFC 8439) from
 * node:crypto, with a random 96-bit nonce per message.
 *
 * Wire format of a sealed box: nonce (12 bytes) || ciphertext || tag (16 bytes).
 * The key comes from `agreeKey(mySecret, theirPublic, 'share-encryption', context)`; the caller
 * puts sender, recipient, consortium and round into `aad`, so a box cannot be moved elsewhere.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto'
import { DecryptionError, InvalidArgumentError, assertBytes } from './errors.ts'
import { systemRandom, randomBytes, type RandomSource } from './random.ts'
import { agreeKey } from './keys.ts'

export const NONCE_BYTES = 12
export const TAG_BYTES = 16
export const MAX_PLAINTEXT_BYTES = 64 * 1024 * 1024

export function seal (key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, rng: RandomSource = systemRandom): Uint8Array {
  assertBytes(key, 'key', 32)
  assertBytes(plaintext, 'plaintext')
  assertBytes(aad, 'aad')
  if (plaintext.length > MAX_PLAINTEXT_BYTES) throw new InvalidArgumentError(`plaintext must be at most ${MAX_PLAINTEXT_BYTES} bytes`)
  const nonce = randomBytes(rng, NONCE_BYTES)
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES })
  cipher.setAAD(aad, { plaintextLength: plaintext.length })
  const body = cipher.update(plaintext)
  cipher.final()
  const out = new Uint8Array(NONCE_BYTES + body.length + TAG_BYTES)
  out.set(nonce, 0)
  out.set(body, NONCE_BYTES)
  out.set(cipher.getAuthTag(), NONCE_BYTES + body.length)
  return out
}

export function open (key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array {
  assertBytes(key, 'key', 32)
  assertBytes(sealed, 'sealed')
  assertBytes(aad, 'aad')
  if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new DecryptionError(`sealed box too short: ${sealed.length} bytes`)
  if (sealed.length > NONCE_BYTES + TAG_BYTES + MAX_PLAINTEXT_BYTES) throw new DecryptionError(`sealed box too long: ${sealed.length} bytes`)
  const nonce = sealed.subarray(0, NONCE_BYTES)
  const body = sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)
  const tag = sealed.subarray(sealed.length - TAG_BYTES)
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES })
  decipher.setAAD(aad, { plaintextLength: body.length })
  decipher.setAuthTag(tag)
  const out = decipher.update(body)
  try {
    decipher.final()
  } catch {
    throw new DecryptionError('authentication failed: wrong key, wrong aad or tampered box')
  }
  return new Uint8Array(out)
}

/** Encrypt `plaintext` so that only the holder of `peerPublicKey`'s secret can read it. */
export function sealForPeer (mySecretKey: Uint8Array, peerPublicKey: Uint8Array, context: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, rng: RandomSource = systemRandom): Uint8Array {
  return seal(agreeKey(mySecretKey, peerPublicKey, 'share-encryption', context), plaintext, aad, rng)
}

export function openFromPeer (mySecretKey: Uint8Array, peerPublicKey: Uint8Array, context: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array {
  return open(agreeKey(mySecretKey, peerPublicKey, 'share-encryption', context), sealed, aad)
}
