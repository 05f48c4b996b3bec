/**
 * The mask generator: a 32-byte seed expands into n uint32 words.
 *
 * Construction (medmesh mask PRG, version 1), exactly:
 *   1. key = HKDF-SHA256(IKM = seed, salt = empty, info = "medmesh/v1/mask-prg-key" || 0x00, L = 16)
 *   2. keystream = AES-128-CTR under `key` with the initial counter block 0^128; the counter is the
 *      whole 16-byte block, incremented as a big-endian integer (NIST SP 800-38A; WebCrypto
 *      AES-CTR with counter = 16 zero bytes and length = 128 gives the same stream).
 *   3. word i = the little-endian uint32 formed by keystream bytes 4i, 4i+1, 4i+2, 4i+3.
 * The n words are the first 4n bytes of the keystream. `test/privacy/prg.test.ts` pins it with
 * a vector computed from this description by an independent path (WebCrypto).
 *
 * The stream is seekable: words [from, from + m) start at counter block ⌊from / 4⌋ (from % 4
 * words into it), so that whoever aggregates one slice of a vector expands only that slice's
 * keystream (`addMasks(acc, terms, from)`).
 *
 * AES-128-CTR because node:crypto runs it with AES-NI at several GB/s when fed in 64 KiB chunks
 * (see bench/masking.ts); chunks also keep memory flat: the mask is added into the caller's
 * vector as it is generated, never materialised whole unless asked for.
 */
import { createCipheriv } from 'node:crypto'
import { endianness } from 'node:os'
import { PrivacyError, InvalidArgumentError, assertBytes, assertInteger } from './errors.ts'
import { deriveKey } from './keys.ts'
import { ChunkSum, CHUNK_WORDS, wordsOf } from './words.ts'

export const PRG_SEED_BYTES = 32
export const MAX_WORDS = 2 ** 30 // 4 GiB of mask: far beyond any model here, and below Node's buffer limits

const CHUNK_BYTES = CHUNK_WORDS * 4 // 64 KiB
const chunkSum = new ChunkSum()
const ZEROS = new Uint8Array(CHUNK_BYTES)
const IV = new Uint8Array(16)
const EMPTY = new Uint8Array(0)

if (endianness() !== 'LE') {
  // Uint32Array views below read the platform's byte order; the construction is little-endian.
  throw new PrivacyError('ERR_UNSUPPORTED_PLATFORM', 'medmesh requires a little-endian platform')
}

export function prgKey (seed: Uint8Array): Uint8Array {
  assertBytes(seed, 'seed', PRG_SEED_BYTES)
  return deriveKey(seed, 'mask-prg-key', EMPTY, 16)
}

/** Where word `from` lies in the keystream: counter block ⌊from / 4⌋ (big-endian) and the bytes of that block before it. */
function counterAt (from: number): { iv: Uint8Array, skip: number } {
  if (from === 0) return { iv: IV, skip: 0 }
  const counter = new Uint8Array(16)
  let block = Math.floor(from / 4) // < 2^28 blocks (MAX_WORDS): exact in a double, fits the low 4 bytes
  for (let i = 15; i >= 12; i--) { counter[i] = block & 0xff; block = Math.floor(block / 256) }
  return { iv: counter, skip: 4 * (from % 4) }
}

/** The keystream positioned at word `from`. */
function cipherAt (key: Uint8Array, from: number): ReturnType<typeof createCipheriv> {
  const { iv, skip } = counterAt(from)
  const cipher = createCipheriv('aes-128-ctr', key, iv)
  if (skip > 0) cipher.update(ZEROS.subarray(0, skip))
  return cipher
}

/**
 * Another way to run the same keystreams: OpenSSL's AES-128-CTR called from native code, adding
 * each chunk into the vector without a JavaScript buffer per chunk (native/mask-kernels.cc). The
 * edges install it (src/node/mask-kernel.ts), so that this module stays free of I/O; without it,
 * node:crypto's cipher runs here. Either gives the same words (test/node/mask-kernel.test.ts).
 */
export interface KeystreamKernel {
  /** acc[i] += Σ_t signs[t] · word i of AES-128-CTR(keys[16t, 16t+16), counter block iv) after its first `skip` bytes (mod 2^32): every stream at the same position */
  addKeystreams: (acc: Uint32Array, keys: Uint8Array, iv: Uint8Array, skip: number, signs: Int8Array) => void
  /** out = the words of AES-128-CTR(key, counter iv) after its first `skip` bytes */
  expandKeystream: (out: Uint32Array, key: Uint8Array, iv: Uint8Array, skip: number) => void
}

let kernel: KeystreamKernel | null = null

/** Install (or, with null, remove) the native keystream kernel; returns the one it replaces. */
export function setKeystreamKernel (k: KeystreamKernel | null): KeystreamKernel | null {
  const before = kernel
  kernel = k
  return before
}

/** Calls `onChunk(words, offset)` for successive keystream chunks covering words [0, n). */
function streamWords (seed: Uint8Array, n: number, onChunk: (words: Uint32Array, offset: number) => void): void {
  const cipher = createCipheriv('aes-128-ctr', prgKey(seed), IV)
  const wordsPerChunk = CHUNK_BYTES / 4
  for (let offset = 0; offset < n; offset += wordsPerChunk) {
    const count = Math.min(wordsPerChunk, n - offset)
    onChunk(wordsOf(cipher.update(count === wordsPerChunk ? ZEROS : ZEROS.subarray(0, count * 4))), offset)
  }
}

function checkLength (n: number): void {
  assertInteger(n, 'n', 0, MAX_WORDS)
}

/** Expand `seed` into n words, written into `out` (preallocated, length n) or a new array. */
export function expandMask (seed: Uint8Array, n: number, out?: Uint32Array): Uint32Array {
  checkLength(n)
  const target = out ?? new Uint32Array(n)
  if (!(target instanceof Uint32Array) || target.length !== n) {
    throw new InvalidArgumentError(`out must be a Uint32Array of length ${n}`)
  }
  if (kernel !== null) {
    const key = prgKey(seed)
    try { kernel.expandKeystream(target, key, IV, 0) } finally { key.fill(0) }
  } else streamWords(seed, n, (words, offset) => { target.set(words, offset) })
  return target
}

export interface MaskTerm {
  seed: Uint8Array
  sign: 1 | -1
}

/**
 * acc += Σ sign · PRG(seed)[from, from + acc.length) (mod 2^32), in place: with `from` (default 0),
 * `acc` is the slice of a longer vector that starts at word `from`. All streams advance in lockstep, one 64 KiB
 * chunk at a time, so each chunk of `acc` is read and written while it is still in cache instead
 * of once per mask; the additions run four words at a time (words.ts), wrapping modulo 2^32.
 */
export function addMasks (acc: Uint32Array, terms: readonly MaskTerm[], from = 0): void {
  if (!(acc instanceof Uint32Array)) throw new InvalidArgumentError('acc must be a Uint32Array')
  if (!Array.isArray(terms)) throw new InvalidArgumentError('terms must be an array')
  assertInteger(from, 'from', 0, MAX_WORDS)
  checkLength(from + acc.length)
  for (const [i, t] of terms.entries()) {
    if (t === null || typeof t !== 'object') throw new InvalidArgumentError(`terms[${i}] must be { seed, sign }`)
    assertBytes(t.seed, `terms[${i}].seed`, PRG_SEED_BYTES)
    if (t.sign !== 1 && t.sign !== -1) throw new InvalidArgumentError(`terms[${i}].sign must be 1 or -1`)
  }
  if (terms.length === 0 || acc.length === 0) return
  if (kernel !== null) {
    const { iv, skip } = counterAt(from)
    const keys = new Uint8Array(16 * terms.length)
    terms.forEach((t, i) => { const key = prgKey(t.seed); keys.set(key, 16 * i); key.fill(0) })
    try {
      kernel.addKeystreams(acc, keys, iv, skip, Int8Array.from(terms, t => t.sign))
    } finally { keys.fill(0) } // the masks' keys do not outlive the call
    return
  }
  const ciphers = terms.map(t => cipherAt(prgKey(t.seed), from))
  const wordsPerChunk = CHUNK_BYTES / 4
  const n = acc.length
  for (let offset = 0; offset < n; offset += wordsPerChunk) {
    const count = Math.min(wordsPerChunk, n - offset)
    const zeros = count === wordsPerChunk ? ZEROS : ZEROS.subarray(0, count * 4)
    chunkSum.begin(acc.subarray(offset, offset + count))
    try {
      for (let t = 0; t < terms.length; t++) {
        const keystream = ciphers[t].update(zeros)
        if (terms[t].sign === 1) chunkSum.add(keystream)
        else chunkSum.sub(keystream)
      }
    } finally { chunkSum.end() }
  }
}

/** acc += sign · PRG(seed) (mod 2^32), in place. */
export function addMask (acc: Uint32Array, seed: Uint8Array, sign: 1 | -1): void {
  addMasks(acc, [{ seed, sign }])
}
