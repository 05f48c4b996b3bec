/**
 * Key agreement and key derivation.
 *
 * X25519 (RFC 7748) through node:crypto (OpenSSL; about 20x faster than @noble/curves here, and
 * a round does tens of agreements per peer); the tests pin it to RFC 7748's vectors and to
 * @noble/curves on random keys. HKDF-SHA256 (RFC 5869) through node:crypto. Every
 * derived key names its purpose in HKDF's info, so that no two uses ever share a key:
 *   info = "medmesh/v1/" || purpose || 0x00 || context
 * with an empty salt. The context binds the key to where it is used (consortium, round, peers).
 */
import { createPrivateKey, createPublicKey, diffieHellman, hkdfSync, type KeyObject } from 'node:crypto'
import { InvalidArgumentError, assertBytes, assertInteger } from './errors.ts'
import { systemRandom, randomBytes, type RandomSource } from './random.ts'

export const KEY_PURPOSES = [
  'pairwise-mask-seed', // s_uv: seed of the pairwise mask between two peers
  'share-encryption', // key that encrypts one peer's Shamir shares for another
  'mask-prg-key', // AES-128 key of the mask generator, from a 32-byte seed
  'seeded-random' // deterministic random streams derived from a master seed
] as const
export type KeyPurpose = typeof KEY_PURPOSES[number]

const textEncoder = new TextEncoder()

export function hkdfInfo (purpose: KeyPurpose, context: Uint8Array): Uint8Array {
  if (!(KEY_PURPOSES as readonly string[]).includes(purpose)) {
    throw new InvalidArgumentError(`unknown key purpose: ${String(purpose)}`)
  }
  assertBytes(context, 'context')
  const label = textEncoder.encode(`medmesh/v1/${purpose}`)
  const info = new Uint8Array(label.length + 1 + context.length)
  info.set(label, 0)
  info.set(context, label.length + 1)
  return info
}

/** HKDF-SHA256 with an empty salt and a purpose label; `length` bytes (at most 255*32). */
export function deriveKey (ikm: Uint8Array, purpose: KeyPurpose, context: Uint8Array = new Uint8Array(0), length = 32): Uint8Array {
  assertBytes(ikm, 'ikm')
  if (ikm.length < 16) throw new InvalidArgumentError(`ikm must be at least 16 bytes, got ${ikm.length}`)
  assertInteger(length, 'length', 1, 255 * 32)
  return new Uint8Array(hkdfSync('sha256', ikm, new Uint8Array(0), hkdfInfo(purpose, context), length))
}

export interface X25519KeyPair {
  secretKey: Uint8Array
  publicKey: Uint8Array
}

// DER wrappers of a raw 32-byte X25519 key (RFC 8410): OpenSSL takes keys in these forms
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')
const privateKeyObject = (secretKey: Uint8Array): KeyObject => createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, secretKey]), format: 'der', type: 'pkcs8' })

export function generateX25519KeyPair (rng: RandomSource = systemRandom): X25519KeyPair {
  const secretKey = randomBytes(rng, 32)
  return { secretKey, publicKey: x25519PublicKey(secretKey) }
}

/** The public key of a 32-byte secret (RFC 7748: the secret is clamped, as every X25519 does). */
export function x25519PublicKey (secretKey: Uint8Array): Uint8Array {
  assertBytes(secretKey, 'secretKey', 32)
  const spki = createPublicKey(privateKeyObject(secretKey)).export({ format: 'der', type: 'spki' })
  return new Uint8Array(spki.subarray(SPKI_PREFIX.length))
}

/**
 * The raw X25519 shared secret. Throws InvalidArgumentError for a low-order public key (the
 * all-zero output of RFC 7748 section 6.1), which a malicious peer could send to force a known key.
 */
export function x25519SharedSecret (secretKey: Uint8Array, peerPublicKey: Uint8Array): Uint8Array {
  assertBytes(secretKey, 'secretKey', 32)
  assertBytes(peerPublicKey, 'peerPublicKey', 32)
  let shared: Uint8Array
  try {
    const publicKey = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, peerPublicKey]), format: 'der', type: 'spki' })
    shared = new Uint8Array(diffieHellman({ privateKey: privateKeyObject(secretKey), publicKey }))
  } catch {
    throw new InvalidArgumentError('peerPublicKey is a low-order or invalid X25519 point')
  }
  if (shared.every(b => b === 0)) throw new InvalidArgumentError('peerPublicKey is a low-order X25519 point')
  return shared
}

/** X25519 then HKDF: a 32-byte key for `purpose`, the same on both sides of the pair. */
export function agreeKey (secretKey: Uint8Array, peerPublicKey: Uint8Array, purpose: KeyPurpose, context: Uint8Array): Uint8Array {
  return deriveKey(x25519SharedSecret(secretKey, peerPublicKey), purpose, context, 32)
}
