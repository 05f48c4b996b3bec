/**
 * The learning rate of each model round, from the consortium's schedule: constant; cosine
 * annealing from the base rate to a tenth of it over the planned rounds; or step decay (a tenth
 * at half and again at three quarters of the planned rounds), as single-site recipes do.
 */
export type LrSchedule = { kind: 'constant' } | { kind: 'cosine', rounds: number } | { kind: 'step', rounds: number }
export const SCHEDULES = ['constant', 'cosine', 'step'] as const

/** The rate for model round k (1, 2, …). */
export function learningRateAt (base: number, s: LrSchedule, k: number): number {
  if (s.kind === 'constant') return base
  const t = Math.min(1, Math.max(0, (k - 1) / Math.max(1, s.rounds - 1)))
  if (s.kind === 'cosine') return base * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * t)))
  return base * (t >= 0.75 ? 0.01 : t >= 0.5 ? 0.1 : 1)
}
