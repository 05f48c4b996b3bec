/**
 * Typed errors for the privacy core.
 *
 * Every public function validates its arguments and throws one of these. Messages name the
 * argument and what was wrong with it, never a secret value: callers may log them.
 */

export type PrivacyErrorCode =
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_WRAP_AROUND'
  | 'ERR_TOO_FEW_SHARES'
  | 'ERR_INCONSISTENT_SHARES'
  | 'ERR_DECRYPTION_FAILED'
  | 'ERR_BUDGET_EXCEEDED'
  | 'ERR_UNSUPPORTED_PLATFORM'

export class PrivacyError extends Error {
  readonly code: PrivacyErrorCode
  constructor (code: PrivacyErrorCode, message: string) {
    super(message)
    this.name = new.target.name
    this.code = code
  }
}

/** An argument had the wrong type, length, range or shape. */
export class InvalidArgumentError extends PrivacyError {
  constructor (message: string) { super('ERR_INVALID_ARGUMENT', message) }
}

/** A (k, clip, scale) choice whose sum could leave the representable range of Z_2^32. */
export class WrapAroundError extends PrivacyError {
  constructor (message: string) { super('ERR_WRAP_AROUND', message) }
}

export class TooFewSharesError extends PrivacyError {
  constructor (message: string) { super('ERR_TOO_FEW_SHARES', message) }
}

/** Shares that do not reconstruct the committed secret. `suspects` are share indices (x) that disagree. */
export class InconsistentSharesError extends PrivacyError {
  readonly suspects: number[]
  constructor (message: string, suspects: number[] = []) {
    super('ERR_INCONSISTENT_SHARES', message)
    this.suspects = suspects
  }
}

export class DecryptionError extends PrivacyError {
  constructor (message: string) { super('ERR_DECRYPTION_FAILED', message) }
}

export class BudgetExceededError extends PrivacyError {
  readonly spent: number
  readonly wouldSpend: number
  readonly budget: number
  constructor (message: string, spent: number, wouldSpend: number, budget: number) {
    super('ERR_BUDGET_EXCEEDED', message)
    this.spent = spent
    this.wouldSpend = wouldSpend
    this.budget = budget
  }
}

// ---- argument checks shared by the modules of the privacy core ----

export function assertBytes (value: unknown, name: string, length?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new InvalidArgumentError(`${name} must be a Uint8Array, got ${describe(value)}`)
  }
  if (length !== undefined && value.length !== length) {
    throw new InvalidArgumentError(`${name} must be ${length} bytes, got ${value.length}`)
  }
}

export function assertInteger (value: unknown, name: string, min: number, max: number = Number.MAX_SAFE_INTEGER): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new InvalidArgumentError(`${name} must be an integer, got ${describe(value)}`)
  }
  if (value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be in [${min}, ${max}], got ${value}`)
  }
}

export function assertFiniteNumber (value: unknown, name: string, opts: { min?: number, max?: number, exclusiveMin?: boolean } = {}): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new InvalidArgumentError(`${name} must be a finite number, got ${describe(value)}`)
  }
  const { min, max, exclusiveMin = false } = opts
  if (min !== undefined && (exclusiveMin ? value <= min : value < min)) {
    throw new InvalidArgumentError(`${name} must be ${exclusiveMin ? '>' : '>='} ${min}, got ${value}`)
  }
  if (max !== undefined && value > max) {
    throw new InvalidArgumentError(`${name} must be <= ${max}, got ${value}`)
  }
}

/** A short description of a value's type, never its contents (which may be secret). */
function describe (value: unknown): string {
  if (value === null) return 'null'
  if (value instanceof Uint8Array) return `Uint8Array(${value.length})`
  if (Array.isArray(value)) return `array(${value.length})`
  if (typeof value === 'number') return String(value)
  return typeof value
}
