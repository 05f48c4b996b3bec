/**
 * A node's identity: one Ed25519 key per node.
 *
 * The same 32-byte seed is the node's libp2p private key (so its peer id is the libp2p peer id)
 * and the key that signs medmesh protocol messages. Signing uses Node's native Ed25519 (about
 * 15x faster than a pure-JS one here); the tests pin it to RFC 8032 and to @noble/curves.
 *
 * Every signature is domain-separated: it covers "medmesh/v1/<purpose>" || 0x00 || message, so
 * a signature made for one kind of message can never be replayed as another kind, nor collide
 * with what libp2p itself signs with the same key (gossipsub signs "libp2p-pubsub:" || ...).
 */
import { createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto'
import { privateKeyFromRaw, publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { ed25519 } from '@noble/curves/ed25519.js'
import { InvalidArgumentError, assertBytes } from './errors.ts'
import { systemRandom, randomBytes, type RandomSource } from './random.ts'

const PKCS8_ED25519_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20])
const SPKI_ED25519_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00])

const textEncoder = new TextEncoder()
const PURPOSE_RE = /^[a-z0-9][a-z0-9-]{0,62}$/

/** The exact bytes an Ed25519 signature covers for a given purpose and message. */
export function signedPayload (purpose: string, message: Uint8Array): Uint8Array {
  if (typeof purpose !== 'string' || !PURPOSE_RE.test(purpose)) {
    throw new InvalidArgumentError('purpose must be 1-63 characters of [a-z0-9-], starting with a letter or digit')
  }
  assertBytes(message, 'message')
  const prefix = textEncoder.encode(`medmesh/v1/${purpose}`)
  const out = new Uint8Array(prefix.length + 1 + message.length)
  out.set(prefix, 0)
  out[prefix.length] = 0
  out.set(message, prefix.length + 1)
  return out
}

export class NodeIdentity {
  readonly publicKey: Uint8Array
  readonly peerId: string
  readonly #seed: Uint8Array
  readonly #key: KeyObject

  private constructor (seed: Uint8Array) {
    this.#seed = Uint8Array.from(seed)
    this.#key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' })
    const spki = createPublicKey(this.#key).export({ format: 'der', type: 'spki' })
    this.publicKey = Uint8Array.from(spki.subarray(SPKI_ED25519_PREFIX.length))
    this.peerId = peerIdFromEd25519PublicKey(this.publicKey)
  }

  static generate (rng: RandomSource = systemRandom): NodeIdentity {
    return new NodeIdentity(randomBytes(rng, 32))
  }

  /** Rebuild an identity from its 32-byte Ed25519 seed (RFC 8032 "secret key"). */
  static fromSeed (seed: Uint8Array): NodeIdentity {
    assertBytes(seed, 'seed', 32)
    return new NodeIdentity(seed)
  }

  /** Sign `message` for `purpose` (see `signedPayload`). 64-byte signature. */
  sign (purpose: string, message: Uint8Array): Uint8Array {
    return new Uint8Array(nodeSign(null, signedPayload(purpose, message), this.#key))
  }

  /** The seed, for persisting the identity (file mode 0600). Handle as a secret. */
  exportSeed (): Uint8Array {
    return Uint8Array.from(this.#seed)
  }

  /** The same key as a libp2p private key, so that the libp2p host has this node's peer id. */
  toLibp2pPrivateKey (): Ed25519PrivateKey {
    const raw = new Uint8Array(64)
    raw.set(this.#seed, 0)
    raw.set(this.publicKey, 32)
    return privateKeyFromRaw(raw) as Ed25519PrivateKey
  }

  /** Keep the seed out of logs, JSON and util.inspect. */
  toJSON (): { peerId: string } { return { peerId: this.peerId } }
  [Symbol.for('nodejs.util.inspect.custom')] (): string { return `NodeIdentity(${this.peerId})` }
}

const verifyKeyCache = new Map<string, KeyObject>()

function publicKeyObject (publicKey: Uint8Array): KeyObject {
  const id = Buffer.from(publicKey).toString('hex')
  let key = verifyKeyCache.get(id)
  if (key === undefined) {
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: 'der', type: 'spki' })
    if (verifyKeyCache.size >= 4096) verifyKeyCache.clear()
    verifyKeyCache.set(id, key)
  }
  return key
}

/** true if `signature` is `publicKey`'s signature of `message` for `purpose`. Never throws on a bad signature. */
export function verifySignature (publicKey: Uint8Array, purpose: string, message: Uint8Array, signature: Uint8Array): boolean {
  assertBytes(publicKey, 'publicKey', 32)
  assertBytes(signature, 'signature')
  if (signature.length !== 64) return false
  const payload = signedPayload(purpose, message)
  let key: KeyObject
  try {
    key = publicKeyObject(publicKey)
  } catch {
    return false // not a point on the curve
  }
  return nodeVerify(null, payload, key, signature)
}

/** The libp2p peer id (base58btc "12D3KooW…") of an Ed25519 public key. */
export function peerIdFromEd25519PublicKey (publicKey: Uint8Array): string {
  assertBytes(publicKey, 'publicKey', 32)
  return peerIdFromPublicKey(publicKeyFromRaw(publicKey)).toString()
}

/** The Ed25519 public key embedded in a libp2p peer id; throws InvalidArgumentError for anything else. */
export function ed25519PublicKeyFromPeerId (peerId: string): Uint8Array {
  if (typeof peerId !== 'string' || peerId.length > 128) throw new InvalidArgumentError('peerId must be a string of at most 128 characters')
  let parsed
  try {
    parsed = peerIdFromString(peerId)
  } catch {
    throw new InvalidArgumentError('peerId is not a valid libp2p peer id')
  }
  if (parsed.type !== 'Ed25519') throw new InvalidArgumentError(`peerId must be an Ed25519 peer id, got ${parsed.type}`)
  return Uint8Array.from(parsed.publicKey.raw)
}

/** The pure-JS reference, used by tests and by peers without native Ed25519. */
export const referenceEd25519 = ed25519
