/**
 * Slices of a masked vector and who aggregates each (the groundwork of sliced aggregation,
 * docs/PROTOCOL.md §8): a member sends slice j of its masked vector only to slice j's
 * aggregators, each of whom sums that slice over the survivor set and removes its masks
 * (prg.ts expands the keystream of one slice alone), instead of every member fetching every
 * other member's whole vector.
 *
 * The assignment follows from values fixed before the round starts (the consortium, the round
 * and the previous certificate's hash), so that nobody, a proposer included, chooses who
 * aggregates what. A slice's ranking has two parts:
 * - its head, the `perSlice` members who aggregate it while all are present, dealt out evenly: the
 *   slices go in blocks of ⌊n / perSlice⌋, and each block deals one permutation of the members,
 *   ranked by SHA-256(seed ‖ "block" ‖ b ‖ peer id), perSlice at a time. A member then aggregates
 *   at most one slice of each block, ⌈S / ⌊n / perSlice⌋⌉ in all (independent draws gave the
 *   busiest of 50 members 6.7 model sizes received against a mean of 3.3, bench/scale at
 *   d = 1M; dealt, 3.7); each block's fresh permutation keeps any two members from sharing more
 *   slices than chance would give them.
 * - its tail, every other member ranked by SHA-256(seed ‖ slice ‖ peer id) (rendezvous hashing),
 *   who replace those who drop, in order: removing a member moves only the slices it held, and
 *   each to the next member of that slice's own ranking, so that a dropped member's slices spread
 *   over the others.
 */
import { hash } from './codec.ts'

export interface SliceBounds { index: number, from: number, to: number }

/** Slice j of a d-word vector in S slices: words [⌊j·d/S⌋, ⌊(j+1)·d/S⌋), together exactly [0, d). */
export function sliceBounds (d: number, slices: number): SliceBounds[] {
  if (!(Number.isInteger(d) && d >= 1)) throw new RangeError(`a vector has at least one word, not ${d}`)
  if (!(Number.isInteger(slices) && slices >= 1 && slices <= d)) throw new RangeError(`slices must be a whole number in [1, ${d}], not ${slices}`)
  return Array.from({ length: slices }, (_, j) => ({ index: j, from: Math.floor(j * d / slices), to: Math.floor((j + 1) * d / slices) }))
}

const DOMAIN = new TextEncoder().encode('medmesh/v2/slice-assignment') // v2: heads dealt by blocks

/** The assignment's seed: the domain, the consortium id, the round and the previous certificate's header hash. */
export function assignmentSeed (consortium: Uint8Array, round: number, prev: Uint8Array): Uint8Array {
  if (!(Number.isInteger(round) && round >= 0 && round < 2 ** 32)) throw new RangeError('round must be a 32-bit whole number')
  const r = new Uint8Array(4)
  new DataView(r.buffer).setUint32(0, round)
  return hash(concat(DOMAIN, consortium, r, prev))
}

const BLOCK = new TextEncoder().encode('block')

/** members (indices) ordered by SHA-256(seed ‖ parts ‖ peer id), ties (equal ids cannot occur) by index */
function rank (seed: Uint8Array, parts: Uint8Array, ids: readonly Uint8Array[]): number[] {
  const scores = ids.map((id, i) => ({ i, score: hash(concat(seed, parts, id)) }))
  scores.sort((a, b) => Buffer.compare(a.score, b.score) || a.i - b.i)
  return scores.map(x => x.i)
}

const u32 = (x: number): Uint8Array => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, x); return b }

/**
 * Each slice's members in ranking order (`members` are peer ids; the result holds their
 * indices into `members`). The first `perSlice` of each are its aggregators while all members
 * are present, dealt out evenly; the rest replace them in order.
 */
export function sliceRankings (seed: Uint8Array, members: readonly string[], slices: number, perSlice: number): number[][] {
  if (seed.length !== 32) throw new RangeError('the assignment seed is 32 bytes')
  if (new Set(members).size !== members.length || members.length === 0) throw new RangeError('members must be distinct and not empty')
  if (!(Number.isInteger(perSlice) && perSlice >= 1 && perSlice <= members.length)) throw new RangeError(`perSlice must be a whole number in [1, ${members.length}]`)
  const ids = members.map(m => new TextEncoder().encode(m))
  const perBlock = Math.floor(members.length / perSlice)
  const blocks = new Map<number, number[]>()
  return Array.from({ length: slices }, (_, j) => {
    const b = Math.floor(j / perBlock)
    let deal = blocks.get(b)
    if (deal === undefined) { deal = rank(seed, concat(BLOCK, u32(b)), ids); blocks.set(b, deal) }
    const at = (j % perBlock) * perSlice
    const head = deal.slice(at, at + perSlice)
    return [...head, ...rank(seed, u32(j), ids).filter(i => !head.includes(i))]
  })
}

/**
 * The aggregators of every slice among the members still present (`present`, indices into the
 * ranking's members): the first `perSlice` present members of each slice's ranking. Throws when
 * fewer than `perSlice` members are present, since a slice with one aggregator cannot be checked.
 */
export function sliceAggregators (rankings: readonly number[][], perSlice: number, present: ReadonlySet<number>): number[][] {
  if (!(Number.isInteger(perSlice) && perSlice >= 1)) throw new RangeError('perSlice must be a whole number >= 1')
  return rankings.map((ranking, j) => {
    const chosen = ranking.filter(i => present.has(i)).slice(0, perSlice)
    if (chosen.length < perSlice) throw new RangeError(`slice ${j} needs ${perSlice} aggregators, only ${chosen.length} members are present`)
    return chosen
  })
}

function concat (...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let off = 0
  for (const p of parts) { out.set(p, off); off += p.length }
  return out
}
