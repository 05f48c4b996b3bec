/**
 * The faults a simulation injects, planned from its seed before it starts: which hospitals are
 * offline in each round, when hospital 1 crashes and restarts, who is malicious. Both transports
 * apply the same plan and the report lists it round by round, so that two runs with one seed
 * meet the same faults, and a reader sees exactly which ones happened.
 */
import { mulberry32 } from '../../src/protocol/memnet.ts'

export type FaultKind = 'offline' | 'crash' | 'restart' | 'malicious'
export interface Fault { round: number, hospital: number, fault: FaultKind }

export interface FaultSettings {
  n: number
  /** fraction of hospitals offline in each round: floor(dropout · n) of them */
  dropout: number
  /** the round at whose start hospital 1 crashes; it restarts two rounds later */
  killAt: number | null
  /** the last hospital misbehaves in every round */
  malicious: boolean
  seed: number
}

/** The hospital that crashes with --kill-at. */
export const CRASH_VICTIM = 1

/**
 * Round r's faults (r = 1, 2, …). Each round's offline hospitals are the r-th draw of a generator
 * seeded by the run's seed alone, so a round's faults do not depend on how many rounds are run.
 */
export function faultsOfRound (s: FaultSettings, r: number): Fault[] {
  const rand = mulberry32((s.seed * 0x9e3779b1 + 0x7f4a7c15) >>> 0)
  let offline = new Set<number>()
  for (let k = 1; k <= r; k++) offline = drawAbsent(s.n, s.dropout, rand)
  const out: Fault[] = []
  if (s.killAt !== null) {
    // the crashed hospital is down for rounds killAt and killAt + 1, whatever the draw said
    if (r === s.killAt) out.push({ round: r, hospital: CRASH_VICTIM, fault: 'crash' })
    if (r === s.killAt + 2) out.push({ round: r, hospital: CRASH_VICTIM, fault: 'restart' })
    if (r >= s.killAt && r < s.killAt + 2) offline.delete(CRASH_VICTIM)
  }
  for (const h of [...offline].sort((a, b) => a - b)) out.push({ round: r, hospital: h, fault: 'offline' })
  if (s.malicious) out.push({ round: r, hospital: s.n - 1, fault: 'malicious' })
  return out
}

/** floor(dropout · n) distinct hospitals, drawn with `rand`. */
export function drawAbsent (n: number, dropout: number, rand: () => number): Set<number> {
  const absent = new Set<number>()
  const k = Math.floor(dropout * n)
  for (let j = 0; absent.size < k && j < 10 * n; j++) absent.add(Math.floor(rand() * n))
  return absent
}

export function describeFault (f: Fault): string {
  return `hospital ${f.hospital} ${f.fault === 'offline' ? 'offline' : f.fault === 'crash' ? 'crashes' : f.fault === 'restart' ? 'restarts' : 'malicious'}`
}
