/**
 * Noise calibrated to a budget: the smallest noise multiplier σ with which `steps` steps of the
 * sampled Gaussian mechanism at rate q stay within (ε, δ), found by bisection on the same RDP
 * accountant that charges the budget (as Opacus's make_private_with_epsilon does). ε falls as σ
 * grows, so the bisection keeps the invariant ε(hi) ≤ target < ε(lo).
 */
import { InvalidArgumentError, assertFiniteNumber, assertInteger } from '../errors.ts'
import { DEFAULT_ORDERS, computeRdp, rdpToEpsilon } from './rdp.ts'

export interface CalibrationTarget { q: number, steps: number, epsilon: number, delta: number }

export function epsilonOf (q: number, sigma: number, steps: number, delta: number, orders: readonly number[] = DEFAULT_ORDERS): number {
  return rdpToEpsilon(orders, computeRdp(q, sigma, steps, orders), delta).epsilon
}

/** σ such that ε(q, σ, steps, δ) ≤ ε, within a relative 1e-4 of the smallest such σ. */
export function noiseForBudget ({ q, steps, epsilon, delta }: CalibrationTarget, orders: readonly number[] = DEFAULT_ORDERS): number {
  assertFiniteNumber(q, 'sampling rate q', { min: 0, max: 1, exclusiveMin: true })
  assertInteger(steps, 'steps', 1)
  assertFiniteNumber(epsilon, 'ε', { min: 0, exclusiveMin: true })
  assertFiniteNumber(delta, 'δ', { min: 0, max: 1, exclusiveMin: true })
  let lo = 0
  let hi = 1
  while (epsilonOf(q, hi, steps, delta, orders) > epsilon) {
    lo = hi
    hi *= 2
    if (hi > 1e6) throw new InvalidArgumentError(`no noise multiplier up to 1e6 keeps ${steps} steps at q=${q} within ε=${epsilon}`)
  }
  while (hi - lo > 1e-4 * hi) {
    const mid = (lo + hi) / 2
    if (epsilonOf(q, mid, steps, delta, orders) > epsilon) lo = mid
    else hi = mid
  }
  return hi
}
