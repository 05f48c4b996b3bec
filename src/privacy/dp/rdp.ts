/**
 * Rényi-DP accountant for the Poisson-subsampled Gaussian mechanism.
 *
 * For sampling rate q and noise multiplier σ, one step is (α, ε_α)-RDP with
 *   ε_α = log(A_α) / (α - 1)
 * where A_α is computed as in Mironov, Talwar and Zhang, "Rényi Differential Privacy of the
 * Sampled Gaussian Mechanism" (2019): a finite binomial sum for integer α (section 3.3) and a
 * convergent two-sided series with erfc terms for fractional α. All sums are in log space.
 * RDP composes by addition over steps; conversion to (ε, δ) takes the best order.
 *
 * The reference implementations are TF Privacy's and Opacus's RDP accountants; the tests
 * reproduce the vector from their documentation and agree with their conversion rule.
 */
import erfc from '@stdlib/math-base-special-erfc'
import { InvalidArgumentError, assertFiniteNumber, assertInteger } from '../errors.ts'

/** Orders used unless the caller chooses: fine steps near 1 where small ε lives, integers up to 256. */
export const DEFAULT_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, i) => 1 + (i + 1) / 10), // 1.1 .. 10.9
  ...Array.from({ length: 52 }, (_, i) => 12 + i), // 12 .. 63
  128, 256
])

function logAdd (a: number, b: number): number {
  const hi = Math.max(a, b)
  const lo = Math.min(a, b)
  if (lo === -Infinity) return hi
  return Math.log1p(Math.exp(lo - hi)) + hi
}

/** log(exp(a) - exp(b)) for a >= b. */
function logSub (a: number, b: number): number {
  if (b === -Infinity) return a
  if (a < b) throw new RangeError('logSub: result would be negative')
  if (a === b) return -Infinity
  // log(e^a - e^b) = a + log(1 - e^(b-a))
  return a + Math.log(-Math.expm1(b - a))
}

/** log(erfc(x)), accurate also where erfc(x) underflows (x > ~26). */
export function logErfc (x: number): number {
  const r = erfc(x)
  if (r > 0) return Math.log(r)
  // asymptotic expansion of log(erfc(x)) at +∞:
  // -x² - log(x) - log(π)/2 - 1/(2x²) + 5/(8x⁴) - 37/(24x⁶) + 353/(64x⁸)
  const x2 = x * x
  return -x2 - Math.log(x) - Math.log(Math.PI) / 2 - 0.5 / x2 + 0.625 / (x2 * x2) - 37 / 24 / (x2 * x2 * x2) + 353 / 64 / (x2 * x2 * x2 * x2)
}

/** log(A_α) for integer α >= 2. */
function logAInteger (q: number, sigma: number, alpha: number): number {
  let logA = -Infinity
  let logBinom = 0 // log C(α, 0)
  const lq = Math.log(q)
  const l1q = Math.log1p(-q)
  for (let i = 0; i <= alpha; i++) {
    if (i > 0) logBinom += Math.log((alpha - i + 1) / i)
    const s = logBinom + i * lq + (alpha - i) * l1q + (i * i - i) / (2 * sigma * sigma)
    logA = logAdd(logA, s)
  }
  return logA
}

/** log(A_α) for fractional α > 1. */
function logAFractional (q: number, sigma: number, alpha: number): number {
  let logA0 = -Infinity
  let logA1 = -Infinity
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5
  const lq = Math.log(q)
  const l1q = Math.log1p(-q)
  const s2 = 2 * sigma * sigma
  const sqrt2Sigma = Math.SQRT2 * sigma
  // C(α, i) for real α, as log|C| and sign, built up term by term
  let logAbsCoef = 0
  let coefSign = 1
  for (let i = 0; i < 100000; i++) {
    if (i > 0) {
      const factor = (alpha - i + 1) / i
      if (factor === 0) break // cannot happen for fractional α, kept for safety
      if (factor < 0) coefSign = -coefSign
      logAbsCoef += Math.log(Math.abs(factor))
    }
    const j = alpha - i
    const logT0 = logAbsCoef + i * lq + j * l1q
    const logT1 = logAbsCoef + j * lq + i * l1q
    const logE0 = Math.log(0.5) + logErfc((i - z0) / sqrt2Sigma)
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / sqrt2Sigma)
    const logS0 = logT0 + (i * i - i) / s2 + logE0
    const logS1 = logT1 + (j * j - j) / s2 + logE1
    if (coefSign > 0) {
      logA0 = logAdd(logA0, logS0)
      logA1 = logAdd(logA1, logS1)
    } else {
      logA0 = logSub(logA0, logS0)
      logA1 = logSub(logA1, logS1)
    }
    if (Math.max(logS0, logS1) < -30) break
  }
  return logAdd(logA0, logA1)
}

function validateOrders (orders: readonly number[]): void {
  if (!Array.isArray(orders) || orders.length === 0) throw new InvalidArgumentError('orders must be a non-empty array')
  for (const [i, a] of orders.entries()) {
    if (typeof a !== 'number' || Number.isNaN(a) || !(a > 1)) throw new InvalidArgumentError(`orders[${i}] must be a number > 1, got ${a}`)
  }
}

export function validateMechanism (q: number, sigma: number, steps: number): void {
  assertFiniteNumber(q, 'sampling rate q', { min: 0, max: 1 })
  assertFiniteNumber(sigma, 'noise multiplier σ', { min: 0 })
  assertInteger(steps, 'steps', 0)
}

/** RDP ε_α of `steps` steps of the sampled Gaussian mechanism, one value per order. */
export function computeRdp (q: number, sigma: number, steps: number, orders: readonly number[] = DEFAULT_ORDERS): number[] {
  validateMechanism(q, sigma, steps)
  validateOrders(orders)
  return orders.map(alpha => {
    if (steps === 0 || q === 0) return 0
    if (sigma === 0) return Infinity
    if (alpha === Infinity) return Infinity
    if (q === 1) return steps * alpha / (2 * sigma * sigma)
    const logA = Number.isInteger(alpha) ? logAInteger(q, sigma, alpha) : logAFractional(q, sigma, alpha)
    return steps * logA / (alpha - 1)
  })
}

export interface EpsilonAtOrder {
  epsilon: number
  order: number
}

/**
 * (ε, δ) from RDP, with the conversion of Balle et al. (2020), as TF Privacy and Opacus use:
 *   ε = min_α [ ε_α + log((α-1)/α) - (log δ + log α) / (α - 1) ]
 */
export function rdpToEpsilon (orders: readonly number[], rdp: readonly number[], delta: number): EpsilonAtOrder {
  validateOrders(orders)
  if (!Array.isArray(rdp) || rdp.length !== orders.length) throw new InvalidArgumentError('rdp must have one value per order')
  assertFiniteNumber(delta, 'δ', { min: 0, max: 1, exclusiveMin: true })
  if (delta >= 1) throw new InvalidArgumentError('δ must be < 1')
  let best: EpsilonAtOrder = { epsilon: Infinity, order: NaN }
  for (let i = 0; i < orders.length; i++) {
    const a = orders[i]
    const r = rdp[i]
    if (typeof r !== 'number' || Number.isNaN(r) || r < 0) throw new InvalidArgumentError(`rdp[${i}] must be a number >= 0`)
    const eps = r + Math.log1p(-1 / a) - (Math.log(delta) + Math.log(a)) / (a - 1)
    if (eps < best.epsilon) best = { epsilon: Math.max(0, eps), order: a }
  }
  return best
}
