/**
 * Sources of cryptographic randomness.
 *
 * Everything in the privacy core that needs randomness (keys, mask seeds, Shamir coefficients,
 * stochastic rounding, DP noise) takes a `RandomSource`, so that production draws from the
 * operating system and tests and simulations draw from a seeded, still cryptographic, stream.
 */
import { createCipheriv, randomFillSync, type Cipher } from 'node:crypto'
import { InvalidArgumentError, assertBytes, assertInteger } from './errors.ts'

export interface RandomSource {
  /** Overwrite `out` with random bytes. */
  fill (out: Uint8Array): void
}

/** The operating system's CSPRNG (node:crypto randomFillSync). */
export const systemRandom: RandomSource = {
  fill (out: Uint8Array): void {
    // randomFillSync refuses more than 2^31-1 bytes per call
    for (let off = 0; off < out.length; off += 1 << 30) {
      randomFillSync(out, off, Math.min(1 << 30, out.length - off))
    }
  }
}

const ZERO_CHUNK = new Uint8Array(64 * 1024)

/**
 * A deterministic CSPRNG: the ChaCha20 keystream (RFC 8439) under key `seed`, with an all-zero
 * 16-byte IV (block counter 0, nonce 0). Same seed, same bytes; for tests and reproducible
 * simulations. Never reuse a seed for two purposes: derive one per purpose (see `deriveKey`).
 */
export function seededRandom (seed: Uint8Array): RandomSource {
  assertBytes(seed, 'seed', 32)
  const cipher: Cipher = createCipheriv('chacha20', seed, new Uint8Array(16))
  return {
    fill (out: Uint8Array): void {
      let off = 0
      while (off < out.length) {
        const n = Math.min(ZERO_CHUNK.length, out.length - off)
        const ks = cipher.update(n === ZERO_CHUNK.length ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, n))
        out.set(ks, off)
        off += n
      }
    }
  }
}

export function randomBytes (rng: RandomSource, n: number): Uint8Array {
  assertInteger(n, 'n', 0)
  const out = new Uint8Array(n)
  rng.fill(out)
  return out
}

/**
 * n uniform doubles in [0, 1), each built from 53 random bits, so every representable
 * multiple of 2^-53 is equally likely.
 */
export function uniformDoubles (rng: RandomSource, n: number): Float64Array {
  assertInteger(n, 'n', 0)
  const out = new Float64Array(n)
  uniformDoublesInto(rng, out, new Uint32Array(2 * n))
  return out
}

/**
 * Fill `out` with uniform doubles as `uniformDoubles` makes them, through `words` (at least two
 * per double), so that a caller drawing many in a loop reuses its buffers: on this project's
 * machines, touching freshly allocated megabytes costs more than drawing the bits.
 */
export function uniformDoublesInto (rng: RandomSource, out: Float64Array, words: Uint32Array): void {
  const n = out.length
  if (words.length < 2 * n) throw new InvalidArgumentError(`uniformDoublesInto: ${words.length} words for ${n} doubles`)
  rng.fill(new Uint8Array(words.buffer, words.byteOffset, 8 * n))
  for (let i = 0; i < n; i++) {
    const hi = words[2 * i] >>> 6 // 26 bits
    const lo = words[2 * i + 1] >>> 5 // 27 bits
    out[i] = (hi * 134217728 + lo) / 9007199254740992
  }
}
