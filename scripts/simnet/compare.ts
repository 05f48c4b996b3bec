/**
 * `medmesh simnet --compare A B`: whether two simulation reports agree round by round (the same
 * faults, certified model state, participants and pooled validation), and where they first differ; with
 * what differed in how they were run (seed, command, version, backend, machine).
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { UsageError } from '../../src/cli/main.ts'

export interface Fingerprint {
  seed: number
  command: string[]
  version: string
  commit: string | null
  backend: string
  node: string
  cores: number
}

interface ReportRound { round: number, stateHash?: string | null, participants: number[], validation: { auc: number, accuracy: number, n: number } | null, faults?: unknown[] }
export interface ComparableReport { fingerprint?: Fingerprint, rounds: ReportRound[] }

export interface Comparison {
  agree: boolean
  /** rounds both reports hold */
  rounds: number
  firstDifference: { round: number, what: string, a: string, b: string } | null
  /** fields of the fingerprint that differ */
  setting: Array<{ field: string, a: string, b: string }>
}

export function compareReports (a: ComparableReport, b: ComparableReport): Comparison {
  const setting: Comparison['setting'] = []
  // where a report was written is no setting of the run
  const settingOf = (f: Fingerprint | undefined, field: keyof Fingerprint): string => {
    const v = f?.[field] ?? null
    return JSON.stringify(field === 'command' && Array.isArray(v) ? v.filter((x, i) => x !== '--out' && v[i - 1] !== '--out') : v)
  }
  for (const field of ['seed', 'command', 'version', 'commit', 'backend', 'node', 'cores'] as const) {
    const x = settingOf(a.fingerprint, field); const y = settingOf(b.fingerprint, field)
    if (x !== y) setting.push({ field, a: x, b: y })
  }
  const rounds = Math.min(a.rounds.length, b.rounds.length)
  const first = (): Comparison['firstDifference'] => {
    for (let i = 0; i < rounds; i++) {
      const [x, y] = [a.rounds[i], b.rounds[i]]
      const checks: Array<[string, unknown, unknown]> = [
        ['faults', x.faults ?? [], y.faults ?? []],
        ['participants', x.participants, y.participants],
        ['certified state', x.stateHash ?? null, y.stateHash ?? null],
        ['pooled validation', x.validation, y.validation]
      ]
      for (const [what, p, q] of checks) if (JSON.stringify(p) !== JSON.stringify(q)) return { round: x.round, what, a: JSON.stringify(p), b: JSON.stringify(q) }
    }
    if (a.rounds.length !== b.rounds.length) return { round: rounds + 1, what: 'rounds run', a: String(a.rounds.length), b: String(b.rounds.length) }
    return null
  }
  const firstDifference = first()
  return { agree: firstDifference === null, rounds, firstDifference, setting }
}

/** Read DIR/report.json (or a report.json path). */
export function readReport (path: string): ComparableReport {
  const file = existsSync(join(path, 'report.json')) ? join(path, 'report.json') : path
  if (!existsSync(file)) throw new UsageError(`no simulation report at ${path}`)
  const r = JSON.parse(readFileSync(file, 'utf8')) as ComparableReport
  if (!Array.isArray(r.rounds)) throw new UsageError(`${file} is not a medmesh simulation report`)
  return r
}

export function describeComparison (c: Comparison, a: string, b: string): string[] {
  const lines = c.setting.map(s => `setting differs: ${s.field} ${s.a} (${a}) vs ${s.b} (${b})`)
  if (c.agree) lines.push(`${a} and ${b} agree on all ${c.rounds} round(s): the same faults, certified states, participants and pooled validation`)
  else {
    const d = c.firstDifference!
    lines.push(`${a} and ${b} first differ at round ${d.round}: ${d.what} ${d.a} vs ${d.b}`)
  }
  return lines
}
