/**
 * A hospital's privacy budget: (ε, δ) it will never exceed, kept as accumulated RDP per order
 * so that composition over steps and rounds is exact.
 *
 * `spend` refuses (BudgetExceededError, with ε before and after) any step that would take ε
 * over the budget, and leaves the state unchanged; `toJSON`/`fromJSON` let the node persist it.
 */
import { BudgetExceededError, InvalidArgumentError, assertFiniteNumber } from '../errors.ts'
import { DEFAULT_ORDERS, computeRdp, rdpToEpsilon, validateMechanism, type EpsilonAtOrder } from './rdp.ts'

export interface PrivacyBudgetState {
  epsilonBudget: number
  delta: number
  orders: number[]
  rdp: number[]
}

export interface SampledGaussianSteps {
  /** Poisson sampling rate: expected batch size / dataset size */
  q: number
  /** noise standard deviation / clipping norm */
  noiseMultiplier: number
  steps: number
}

export class PrivacyBudget {
  readonly epsilonBudget: number
  readonly delta: number
  readonly orders: readonly number[]
  #rdp: number[]

  constructor (epsilonBudget: number, delta: number, orders: readonly number[] = DEFAULT_ORDERS, rdp?: readonly number[]) {
    assertFiniteNumber(epsilonBudget, 'ε budget', { min: 0, exclusiveMin: true })
    assertFiniteNumber(delta, 'δ', { min: 0, max: 1, exclusiveMin: true })
    if (delta >= 1) throw new InvalidArgumentError('δ must be < 1')
    this.epsilonBudget = epsilonBudget
    this.delta = delta
    this.orders = Object.freeze([...orders])
    const initial = rdp === undefined ? orders.map(() => 0) : [...rdp]
    if (initial.length !== orders.length || initial.some(r => typeof r !== 'number' || Number.isNaN(r) || r < 0)) {
      throw new InvalidArgumentError('rdp must hold one non-negative number per order')
    }
    this.#rdp = initial
  }

  /** RDP vectors already computed, by `q/σ/steps` (see #rdpOf) */
  readonly #computed = new Map<string, number[]>()

  /** ε spent so far (0 before any step). */
  get spent (): EpsilonAtOrder {
    if (this.#rdp.every(r => r === 0)) return { epsilon: 0, order: NaN }
    return rdpToEpsilon(this.orders, this.#rdp, this.delta)
  }

  get remaining (): number {
    return Math.max(0, this.epsilonBudget - this.spent.epsilon)
  }

  /** ε after these steps, without spending anything. */
  preview ({ q, noiseMultiplier, steps }: SampledGaussianSteps): EpsilonAtOrder {
    validateMechanism(q, noiseMultiplier, steps)
    const added = this.#rdpOf(q, noiseMultiplier, steps)
    return rdpToEpsilon(this.orders, this.#rdp.map((r, i) => r + added[i]), this.delta)
  }

  /**
   * computeRdp for these orders, remembered: DP-SGD previews and spends the same single step at
   * the same (q, σ) every step, and the fractional orders' series cost milliseconds each time.
   */
  #rdpOf (q: number, noiseMultiplier: number, steps: number): number[] {
    const key = `${q}/${noiseMultiplier}/${steps}`
    let r = this.#computed.get(key)
    if (r === undefined) {
      r = computeRdp(q, noiseMultiplier, steps, this.orders)
      if (this.#computed.size >= 64) this.#computed.clear()
      this.#computed.set(key, r)
    }
    return r
  }

  /** Spend the steps, or throw BudgetExceededError and spend nothing. Returns ε after. */
  spend (steps: SampledGaussianSteps): EpsilonAtOrder {
    const before = this.spent.epsilon
    const after = this.preview(steps)
    if (after.epsilon > this.epsilonBudget) {
      throw new BudgetExceededError(
        `privacy budget exceeded: ${steps.steps} more step(s) at q=${steps.q}, σ=${steps.noiseMultiplier} would bring ε from ${before.toFixed(4)} to ${after.epsilon.toFixed(4)}, over this hospital's budget of ε=${this.epsilonBudget} (δ=${this.delta})`,
        before, after.epsilon, this.epsilonBudget)
    }
    const added = this.#rdpOf(steps.q, steps.noiseMultiplier, steps.steps)
    this.#rdp = this.#rdp.map((r, i) => r + added[i])
    return after
  }

  /** The largest number of further steps at (q, σ) that fit in the budget, up to `limit`. */
  maxSteps (q: number, noiseMultiplier: number, limit = 1_000_000): number {
    const fits = (steps: number): boolean => this.preview({ q, noiseMultiplier, steps }).epsilon <= this.epsilonBudget
    if (!fits(0)) return 0
    // exponential search for a bound, then bisection
    let lo = 0
    let hi = 1
    while (fits(hi)) {
      lo = hi
      if (hi === limit) return limit
      hi = Math.min(hi * 2, limit)
    }
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2)
      if (fits(mid)) lo = mid
      else hi = mid
    }
    return lo
  }

  toJSON (): PrivacyBudgetState {
    return { epsilonBudget: this.epsilonBudget, delta: this.delta, orders: [...this.orders], rdp: [...this.#rdp] }
  }

  static fromJSON (state: PrivacyBudgetState): PrivacyBudget {
    if (state === null || typeof state !== 'object') throw new InvalidArgumentError('budget state must be an object')
    if (!Array.isArray(state.orders) || !Array.isArray(state.rdp)) throw new InvalidArgumentError('budget state needs orders and rdp arrays')
    return new PrivacyBudget(state.epsilonBudget, state.delta, state.orders, state.rdp)
  }
}
