/**
 * Shamir t-of-n secret sharing of 32-byte secrets.
 *
 * Field: GF(p) with p = 2^256 + 297, the smallest prime above 2^256 (test/privacy/shamir.test.ts
 * checks that it is prime and that no smaller number above 2^256 is), so that any 256-bit secret
 * is one field element and a share is no larger than the secret needs; arithmetic from
 * @noble/curves' Field. (Until 2026-12-05 the field was GF(2^521 − 1): shares of 66 bytes where
 * 33 do, and twice the members' traffic in share-keys messages and reveals.) Shamir's scheme is
 * secure over any field that holds the secrets: t − 1 shares are uniform whatever the secret.
 * A random polynomial f of degree t-1 with f(0) = secret; share i is (x_i, f(x_i)) for distinct
 * non-zero x_i. Coefficients are uniform in GF(p): 80 random bytes reduced mod p (statistical
 * distance below 2^-380).
 *
 * Encoded share: x as 2 bytes big-endian, then y as 33 bytes big-endian (35 bytes).
 *
 * Inconsistent shares are caught where it is cheap: with more than t shares, every extra share
 * must lie on the polynomial through the first t; with a `verify` predicate (for example a hash
 * commitment published with the shares, or the public key of a shared private key), the result
 * must satisfy it, and if it does not, t-subsets are searched to name the bad shares.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { Field } from '@noble/curves/abstract/modular.js'
import { InconsistentSharesError, InvalidArgumentError, TooFewSharesError, assertBytes, assertInteger } from './errors.ts'
import { systemRandom, randomBytes, type RandomSource } from './random.ts'

const P = (1n << 256n) + 297n
/** the field's prime, for its test */
export const FIELD_PRIME = P
const Fp = Field(P)
export const SECRET_BYTES = 32
export const Y_BYTES = 33
export const SHARE_BYTES = 2 + Y_BYTES
export const MAX_SHARES = 65535
const MAX_SUBSET_SEARCH = 20000

export interface Share {
  /** evaluation point, 1..65535 */
  x: number
  /** f(x), 33 bytes big-endian */
  y: Uint8Array
}

function bytesToBigInt (bytes: Uint8Array): bigint {
  // through hex: one parse, where shifting a byte in at a time builds a new bigint per byte
  return bytes.length === 0 ? 0n : BigInt('0x' + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex'))
}

function bigIntToBytes (v: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = length - 1; i >= 0; i--) { out[i] = Number(v & 0xffn); v >>= 8n }
  if (v !== 0n) throw new InvalidArgumentError('value does not fit')
  return out
}

function randomFieldElement (rng: RandomSource): bigint {
  return Fp.create(bytesToBigInt(randomBytes(rng, 80)))
}

/**
 * Split `secret` (32 bytes) into shares at the points `xs` (default 1..n), any `t` of which
 * reconstruct it. 1 <= t <= n.
 */
export function splitSecret (secret: Uint8Array, t: number, xs: number | readonly number[], rng: RandomSource = systemRandom): Share[] {
  assertBytes(secret, 'secret', SECRET_BYTES)
  const points = typeof xs === 'number' ? defaultPoints(xs) : [...xs]
  validatePoints(points)
  assertInteger(t, 't', 1, points.length)
  const coeffs: bigint[] = [bytesToBigInt(secret)]
  for (let i = 1; i < t; i++) coeffs.push(randomFieldElement(rng))
  return points.map(x => {
    // Horner's rule
    let y = 0n
    const bx = BigInt(x)
    for (let i = coeffs.length - 1; i >= 0; i--) y = Fp.add(Fp.mul(y, bx), coeffs[i])
    return { x, y: bigIntToBytes(y, Y_BYTES) }
  })
}

function defaultPoints (n: number): number[] {
  assertInteger(n, 'n', 1, MAX_SHARES)
  return Array.from({ length: n }, (_, i) => i + 1)
}

function validatePoints (xs: readonly number[]): void {
  if (xs.length === 0) throw new InvalidArgumentError('at least one share point is needed')
  const seen = new Set<number>()
  for (const [i, x] of xs.entries()) {
    assertInteger(x, `xs[${i}]`, 1, MAX_SHARES)
    if (seen.has(x)) throw new InvalidArgumentError(`share point ${x} appears twice`)
    seen.add(x)
  }
}

function validateShares (shares: readonly Share[]): Array<{ x: bigint, y: bigint, index: number }> {
  if (!Array.isArray(shares)) throw new InvalidArgumentError('shares must be an array')
  const seen = new Set<number>()
  return shares.map((s, i) => {
    if (s === null || typeof s !== 'object') throw new InvalidArgumentError(`shares[${i}] must be a share`)
    assertInteger(s.x, `shares[${i}].x`, 1, MAX_SHARES)
    assertBytes(s.y, `shares[${i}].y`, Y_BYTES)
    if (seen.has(s.x)) throw new InvalidArgumentError(`two shares have the same point x=${s.x}`)
    seen.add(s.x)
    const y = bytesToBigInt(s.y)
    if (y >= P) throw new InvalidArgumentError(`shares[${i}].y is not a field element`)
    return { x: BigInt(s.x), y, index: s.x }
  })
}

/**
 * The Lagrange coefficients c_i with f(at) = Σ c_i · f(x_i) for any polynomial of degree < |xs|,
 * remembered by (at, xs): a round reconstructs every member's secret from the shares of the same
 * revealers, so the O(t²) products and t inversions are made once per round, not once per secret
 * (a round of 60 members spent most of its time here).
 */
const lagrangeMemo = new Map<string, bigint[]>()
function lagrangeAt (xs: readonly bigint[], at: bigint): bigint[] {
  const key = `${at}:${xs.join(',')}`
  let c = lagrangeMemo.get(key)
  if (c === undefined) {
    const nums: bigint[] = []
    const dens: bigint[] = []
    for (let i = 0; i < xs.length; i++) {
      let num = 1n
      let den = 1n
      for (let j = 0; j < xs.length; j++) {
        if (i === j) continue
        num = Fp.mul(num, Fp.sub(at, xs[j]))
        den = Fp.mul(den, Fp.sub(xs[i], xs[j]))
      }
      nums.push(num)
      dens.push(den)
    }
    const inverses = Fp.invertBatch(dens)
    c = nums.map((num, i) => Fp.mul(num, inverses[i]))
    if (lagrangeMemo.size >= 256) lagrangeMemo.clear()
    lagrangeMemo.set(key, c)
  }
  return c
}

/** f(at) for the polynomial through `pts` (Lagrange interpolation). */
function interpolate (pts: ReadonlyArray<{ x: bigint, y: bigint }>, at: bigint): bigint {
  const c = lagrangeAt(pts.map(p => p.x), at)
  let acc = 0n
  for (let i = 0; i < pts.length; i++) acc = Fp.add(acc, Fp.mul(pts[i].y, c[i]))
  return acc
}

function toSecret (v: bigint): Uint8Array | undefined {
  return v < (1n << 256n) ? bigIntToBytes(v, SECRET_BYTES) : undefined
}

export interface ReconstructOptions {
  /** A check of the reconstructed secret, e.g. against a published commitment. */
  verify?: (secret: Uint8Array) => boolean
}

/**
 * Reconstruct a secret from at least t shares.
 * - fewer than t shares: TooFewSharesError;
 * - shares beyond the first t that are off the polynomial, a result that is not a 32-byte value,
 *   or one that fails `verify`: InconsistentSharesError, naming the shares found to be bad when a
 *   consistent t-subset that passes `verify` exists.
 */
export function reconstructSecret (shares: readonly Share[], t: number, options: ReconstructOptions = {}): Uint8Array {
  assertInteger(t, 't', 1, MAX_SHARES)
  const pts = validateShares(shares)
  if (pts.length < t) throw new TooFewSharesError(`${pts.length} share(s) given, ${t} needed`)
  const verify = options.verify ?? (() => true)

  const base = pts.slice(0, t)
  const candidate = toSecret(interpolate(base, 0n))
  const offCurve = pts.slice(t).filter(p => interpolate(base, p.x) !== p.y)
  if (candidate !== undefined && offCurve.length === 0 && verify(candidate)) return candidate

  // Something is wrong: look for a t-subset whose polynomial passes `verify`, to name the bad shares.
  let tried = 0
  for (const subset of combinations(pts.length, t)) {
    if (++tried > MAX_SUBSET_SEARCH) break
    const chosen = subset.map(i => pts[i])
    const secret = toSecret(interpolate(chosen, 0n))
    if (secret === undefined || !verify(secret)) continue
    const bad = pts.filter(p => interpolate(chosen, p.x) !== p.y).map(p => p.index)
    throw new InconsistentSharesError(`shares at x=${bad.join(',')} are inconsistent with the others`, bad)
  }
  throw new InconsistentSharesError('the shares are inconsistent and no t of them reconstruct a valid secret')
}

function * combinations (n: number, k: number): Generator<number[]> {
  const idx = Array.from({ length: k }, (_, i) => i)
  while (true) {
    yield idx.slice()
    let i = k - 1
    while (i >= 0 && idx[i] === n - k + i) i--
    if (i < 0) return
    idx[i]++
    for (let j = i + 1; j < k; j++) idx[j] = idx[j - 1] + 1
  }
}

/** A hash commitment to a 32-byte random secret: SHA-256("medmesh/v1/secret-commitment" || 0x00 || secret). */
export function secretCommitment (secret: Uint8Array): Uint8Array {
  assertBytes(secret, 'secret', SECRET_BYTES)
  const label = new TextEncoder().encode('medmesh/v1/secret-commitment')
  const buf = new Uint8Array(label.length + 1 + secret.length)
  buf.set(label, 0)
  buf.set(secret, label.length + 1)
  return sha256(buf)
}

export function encodeShare (share: Share): Uint8Array {
  assertInteger(share?.x, 'share.x', 1, MAX_SHARES)
  assertBytes(share.y, 'share.y', Y_BYTES)
  const out = new Uint8Array(SHARE_BYTES)
  out[0] = share.x >>> 8
  out[1] = share.x & 0xff
  out.set(share.y, 2)
  return out
}

export function decodeShare (bytes: Uint8Array): Share {
  assertBytes(bytes, 'share bytes', SHARE_BYTES)
  const x = (bytes[0] << 8) | bytes[1]
  if (x === 0) throw new InvalidArgumentError('share point x must not be 0')
  const y = bytes.slice(2)
  if (bytesToBigInt(y) >= P) throw new InvalidArgumentError('share value is not a field element')
  return { x, y }
}
