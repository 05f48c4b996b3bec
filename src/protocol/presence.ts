/**
 * Which members are likely to be present in a round, so that a member that is gone costs the
 * others nothing after the round it left (docs/PROTOCOL.md, "Absent members"): the first
 * proposer who is there proposes at once, and a round waits for the advertisements of the last
 * round's survivors and of members heard from lately, not for every member. Pure.
 */

/**
 * The member that proposes set 1 (masking) or 2 (survivors) in an attempt: a rotation over the
 * members, fixed by the round, so that no member chooses who proposes and every peer agrees on it
 * whatever certificates it holds.
 */
export function proposerOf (set: 1 | 2, round: number, attempt: number, n: number): number {
  return (round + (set === 1 ? 0 : 1) + attempt) % n
}

/** The first attempt whose proposer is not away (0 if all are). */
export function firstPresentAttempt (set: 1 | 2, round: number, n: number, away: (member: number) => boolean): number {
  for (let a = 0; a < n; a++) if (!away(proposerOf(set, round, a, n))) return a
  return 0
}

/**
 * The attempt in which this peer (`me`) proposes now, or null. Each attempt keeps its one
 * proposer (proposerOf) and every peer's attempts follow the same timeouts; what changes is that
 * in the first attempt, when its proposer and those after it are away, the first proposer who is
 * there proposes at once, under its own attempt number, and the proposer who is away steps aside.
 * A peer never proposes in an attempt that is not its own.
 */
export function proposingAttempt (set: 1 | 2, round: number, attempt: number, n: number, me: number, away: ((member: number) => boolean) | null): number | null {
  if (attempt === 0 && away !== null) {
    const early = firstPresentAttempt(set, round, n, away)
    if (early > 0) return proposerOf(set, round, early, n) === me ? early : null
  }
  return proposerOf(set, round, attempt, n) === me ? attempt : null
}

/**
 * The last round from which a message of each member arrived. A member heard from in the last
 * round or since is expected to advertise in this one, whether or not it survived the last.
 */
export class Presence {
  readonly #lastHeard = new Map<number, number>()

  heard (member: number, round: number): void {
    if ((this.#lastHeard.get(member) ?? -1) < round) this.#lastHeard.set(member, round)
  }

  /**
   * The members whose advertisements `round` waits for: the last certified round's survivors and
   * the members heard from in the round before this one or since. Null (wait for everyone) when
   * there is no certificate to go by.
   */
  expected (round: number, lastSurvivors: readonly number[] | undefined): number[] | null {
    if (lastSurvivors === undefined || lastSurvivors.length === 0) return null
    const expected = new Set(lastSurvivors)
    for (const [member, at] of this.#lastHeard) if (at >= round - 1) expected.add(member)
    return [...expected].sort((a, b) => a - b)
  }
}

/**
 * The members considered absent in `round` (not expected), each with the round since which:
 * the one after the last certified round it survived (0 if none).
 */
export function absentMembers (n: number, expected: readonly number[] | null, certified: ReadonlyArray<{ round: number, survivors: readonly number[] }>): Array<{ member: number, since: number }> {
  if (expected === null) return []
  const present = new Set(expected)
  const out: Array<{ member: number, since: number }> = []
  for (let m = 0; m < n; m++) {
    if (present.has(m)) continue
    let since = 0
    for (let i = certified.length - 1; i >= 0; i--) if (certified[i].survivors.includes(m)) { since = certified[i].round + 1; break }
    out.push({ member: m, since })
  }
  return out
}
