/**
 * Sliced aggregation inside one round, as one peer sees it (docs/PROTOCOL.md §8). Pure state, no
 * I/O: the round feeds it commitments, fetched blobs and the aggregators' signed slice sums, and
 * asks it what to fetch, publish and announce.
 *
 * - A member commits to its masked vector by the hashes of its slices (and their root, which is
 *   the commitment's `vectorHash`) and publishes each slice as its own blob.
 * - The aggregators of slice j are the first `perSlice` members of slice j's ranking (slices.ts)
 *   among the certified survivor set U3; before U3 is fixed, those of the masking set fetch
 *   ahead. An aggregator fetches slice j of every survivor, sums it over U3, removes that slice
 *   of the masks with the secrets revealed for U3 (and for no other set), publishes the sum and
 *   signs its hash.
 * - A slice sum counts once `perSlice` members of U3 signed the same hash. Two different hashes
 *   for one slice prove that one of their signers lied: the next member of the slice's ranking
 *   computes it too, and so does the next one each phase that a slice stays short of agreeing
 *   hashes (an aggregator that dropped). A member puts the sum together from the agreed slices.
 */
import { equalBytes, hash, hex } from './codec.ts'
import { unmaskSlice, type UnmaskingSecrets } from './aggregate.ts'
import type { SlicingParams } from './manifest.ts'
import type { MaskedInputBody, SliceSumsBody } from './messages.ts'
import { sliceBounds, sliceRankings, type SliceBounds } from './slices.ts'

const ROOT_DOMAIN = new TextEncoder().encode('medmesh/v1/slice-root')

/** The commitment to a vector in slices: SHA-256(domain ‖ h_0 ‖ … ‖ h_{S−1}). */
export function sliceRoot (hashes: readonly Uint8Array[]): Uint8Array {
  const buf = new Uint8Array(ROOT_DOMAIN.length + 32 * hashes.length)
  buf.set(ROOT_DOMAIN)
  hashes.forEach((h, i) => buf.set(h, ROOT_DOMAIN.length + 32 * i))
  return hash(buf)
}

/** How many slices a vector of `length` words is cut into: the manifest's number, at most one per word. */
export const sliceCount = (length: number, slicing: SlicingParams): number => Math.min(slicing.slices, length)

const bytesOf = (v: Uint32Array): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength)

/** A masked vector cut into slices: each slice a blob (a view, not a copy), its hash, and the root. */
export function commitSlices (y: Uint32Array, slices: number): { hashes: Uint8Array[], root: Uint8Array, blobs: Array<{ hash: string, data: Uint8Array }> } {
  const blobs = sliceBounds(y.length, slices).map(b => {
    const data = bytesOf(y.subarray(b.from, b.to))
    return { hash: hex(hash(data)), data }
  })
  const hashes = blobs.map(b => Uint8Array.from(Buffer.from(b.hash, 'hex')))
  return { hashes, root: sliceRoot(hashes), blobs }
}

export interface SliceClaimConflict { slice: number, members: [number, number], wires: [Uint8Array, Uint8Array] }

export interface SliceStep {
  fetch: Array<{ hash: string, owner: number }>
  publish: Array<{ hash: string, data: Uint8Array }>
  /** slice sums this peer computed and has not announced yet */
  announce: Array<[number, Uint8Array]>
}

export interface SlicedOptions {
  me: number
  peerIds: readonly string[]
  slicing: SlicingParams
  /** the round's input length in words */
  length: number
  /** the ledger head the round extends (it can move before the sum forms: the assignment follows it) */
  prev: () => Uint8Array
  /** the assignment seed for a ledger head (slices.ts assignmentSeed) */
  seedOf: (prev: Uint8Array) => Uint8Array
  phaseMs: number
  /**
   * check everything, as the all-to-all mode lets every member do: fetch every survivor's every
   * slice, sum and unmask each, announce the sums (a sum that differs from an aggregator's is a
   * signed conflict like any other) and sign no header whose slices differ from its own
   */
  checkAll?: boolean
}

interface Claim { hash: Uint8Array, wire: Uint8Array }

/** What this peer knows of one slice's sum. */
interface SliceSum {
  /** each member's signed claim of the sum */
  readonly claims: Map<number, Claim>
  /** the sum hash that perSlice of its aggregators signed, in hex too, and one of them (who holds the sum): looked up on every event, so kept once */
  agreed?: { hash: Uint8Array, hex: string, by: number }
  /** aggregators beyond perSlice (conflicts, timeouts), and when the next one is due */
  extra: number
  due?: number
  /** the hash of the sum this peer computed itself, if it did */
  own?: Uint8Array
}

export class SlicedAggregation {
  readonly bounds: SliceBounds[]
  readonly #o: SlicedOptions
  #rankings: { prev: Uint8Array, rankings: number[][] } | null = null
  /** my slices for a set of members and its extensions, by key: asked on every step, changed rarely */
  readonly #mine = new Map<string, number[]>()
  /** per member: its committed slice hashes, in hex (the blobs' names, looked up on every event, so converted once) */
  readonly #hashes = new Map<number, string[]>()
  /** slice blob hash → which member's which slice (a hash may be several members' if their slices are equal) */
  readonly #sliceOf = new Map<string, Array<{ member: number, slice: number }>>()
  /** slice blobs held (my own and fetched), by hash */
  readonly #held = new Map<string, Uint32Array>()
  readonly #requested = new Set<string>()
  /** per slice: the claims of its sum, and what came of them */
  readonly #sliceSums: SliceSum[]
  /** claims naming a survivor set this peer has not certified yet (bounded) */
  #pending: Array<{ sender: number, body: SliceSumsBody, wire: Uint8Array }> = []
  readonly #sums = new Map<string, Uint32Array>()
  #unannounced: Array<[number, Uint8Array]> = []
  /** the certified survivor set, once known */
  #survivors: readonly number[] | null = null

  constructor (o: SlicedOptions) {
    this.#o = o
    this.bounds = sliceBounds(o.length, sliceCount(o.length, o.slicing))
    this.#sliceSums = this.bounds.map(() => ({ claims: new Map(), extra: 0 }))
  }

  get slices (): number { return this.bounds.length }

  /** Why a masked-input commitment does not fit sliced mode, or null. */
  checkCommitment (body: MaskedInputBody): string | null {
    const hs = body.sliceHashes
    if (hs === undefined) return 'carries no slice hashes (the consortium aggregates in slices)'
    if (hs.length !== this.slices) return `carries ${hs.length} slice hashes, expected ${this.slices}`
    if (!equalBytes(sliceRoot(hs), body.vectorHash)) return 'has a vector hash that is not the root of its slice hashes'
    return null
  }

  /** Record a checked commitment (the one that counts, when the survivor-set proposal replaces another). */
  commit (member: number, body: MaskedInputBody): void {
    const prior = this.#hashes.get(member)
    if (prior !== undefined) prior.forEach((k, j) => { this.#sliceOf.set(k, (this.#sliceOf.get(k) ?? []).filter(x => x.member !== member || x.slice !== j)) })
    const hs = body.sliceHashes!.map(h => hex(h))
    this.#hashes.set(member, hs)
    hs.forEach((k, j) => { this.#sliceOf.set(k, [...(this.#sliceOf.get(k) ?? []), { member, slice: j }]) })
  }

  /** My own slices, which need no fetching. */
  holdOwn (blobs: ReadonlyArray<{ hash: string, data: Uint8Array }>): void {
    for (const b of blobs) this.#held.set(b.hash, new Uint32Array(b.data.buffer, b.data.byteOffset, b.data.byteLength / 4))
  }

  #ranking (j: number): number[] {
    const prev = this.#o.prev()
    if (this.#rankings?.prev !== prev) {
      this.#rankings = { prev, rankings: sliceRankings(this.#o.seedOf(prev), this.#o.peerIds, this.slices, this.#o.slicing.perSlice) }
      this.#mine.clear()
    }
    return this.#rankings.rankings[j]
  }

  /** slice j's aggregators among `set`: the first perSlice + extra of its ranking */
  aggregatorsOf (j: number, set: readonly number[] | ReadonlySet<number>, extra = 0): number[] {
    const members = set instanceof Set ? set : new Set(set as readonly number[])
    const want = this.#o.slicing.perSlice + extra
    const out: number[] = []
    for (const u of this.#ranking(j)) {
      if (out.length === want) break
      if (members.has(u)) out.push(u)
    }
    return out
  }

  #mySlices (set: readonly number[], extended: boolean): number[] {
    if (this.#o.checkAll === true) return this.bounds.map(b => b.index)
    this.#ranking(0) // the cache follows the ledger head
    const key = `${set.join(',')}|${extended ? this.#sliceSums.map(x => x.extra).join(',') : ''}`
    let mine = this.#mine.get(key)
    if (mine === undefined) {
      const members = new Set(set)
      mine = this.bounds.map(b => b.index).filter(j => this.aggregatorsOf(j, members, extended ? this.#sliceSums[j].extra : 0).includes(this.#o.me))
      if (this.#mine.size > 64) this.#mine.clear()
      this.#mine.set(key, mine)
    }
    return mine
  }

  #sliceHash (u: number, j: number): string | null {
    const hs = this.#hashes.get(u)
    return hs === undefined ? null : hs[j]
  }

  /** Whether this peer holds what it needs of member u's input before the survivor set: its commitment and the slices it aggregates. */
  hasInputOf (u: number, maskingSet: readonly number[]): boolean {
    if (!this.#hashes.has(u)) return false
    return this.#mySlices(maskingSet, false).every(j => this.#held.has(this.#sliceHash(u, j)!))
  }

  /** A fetched blob: 'slice' or 'sum' when it was one this round wanted and matches, 'bad' when it matched nothing it claimed to be, null when it is not this round's (`hashChecked`: see vectors.ts). */
  receiveBlob (hashHex: string, data: Uint8Array, hashChecked = false): { kind: 'slice' | 'sum' | 'bad', member?: number } | null {
    const owners = this.#sliceOf.get(hashHex)
    const agreedSlice = this.#sliceSums.findIndex(x => x.agreed?.hex === hashHex)
    if ((owners === undefined || owners.length === 0) && agreedSlice < 0) return null
    if (this.#held.has(hashHex) || this.#sums.has(hashHex)) return null
    const words = owners !== undefined && owners.length > 0 ? this.bounds[owners[0].slice] : this.bounds[agreedSlice]
    if (data.length !== 4 * (words.to - words.from) || (!hashChecked && hex(hash(data)) !== hashHex)) {
      this.#requested.delete(hashHex) // ask again, perhaps from another holder
      return { kind: 'bad', member: owners?.[0]?.member }
    }
    const aligned = data.byteOffset % 4 === 0 ? data : data.slice()
    const v = new Uint32Array(aligned.buffer, aligned.byteOffset, data.length / 4)
    if (owners !== undefined && owners.length > 0) { this.#held.set(hashHex, v); return { kind: 'slice' } }
    this.#sums.set(hashHex, v)
    return { kind: 'sum' }
  }

  /**
   * An aggregator's signed slice sums. Claims for another survivor set than `certified` are kept
   * (bounded) until this peer certifies that set, and never count for another. Returns conflicts
   * (two different sums signed for one slice) and claims that break the rules.
   */
  claim (sender: number, body: SliceSumsBody, wire: Uint8Array, certified: { id: Uint8Array, members: readonly number[] } | null): { conflicts: SliceClaimConflict[], invalid: string | null } {
    if (certified === null || !equalBytes(body.proposalId, certified.id)) {
      if (certified !== null) return { conflicts: [], invalid: `member ${sender} summed slices over another survivor set than the certified one` }
      if (this.#pending.length < 4 * this.#o.peerIds.length) this.#pending.push({ sender, body, wire })
      return { conflicts: [], invalid: null }
    }
    if (!certified.members.includes(sender)) return { conflicts: [], invalid: `member ${sender} sent slice sums but is not a survivor` }
    this.#survivors = certified.members
    const conflicts: SliceClaimConflict[] = []
    for (const [j, h] of body.sums) {
      if (j >= this.slices) return { conflicts, invalid: `member ${sender} sent a sum for slice ${j} of ${this.slices}` }
      const { claims } = this.#sliceSums[j]
      const prior = claims.get(sender)
      if (prior !== undefined) {
        if (!equalBytes(prior.hash, h)) conflicts.push({ slice: j, members: [sender, sender], wires: [prior.wire, wire] })
        continue
      }
      for (const [other, c] of claims) {
        if (!equalBytes(c.hash, h)) { conflicts.push({ slice: j, members: [other, sender], wires: [c.wire, wire] }); break }
      }
      claims.set(sender, { hash: h, wire })
      this.#settle(j)
    }
    // one more aggregator for each slice in dispute: honest ones then outnumber a liar
    for (const c of conflicts) {
      const x = this.#sliceSums[c.slice]
      x.extra = Math.max(x.extra, new Set([...x.claims.values()].map(y => hex(y.hash))).size - 1)
      this.#settle(c.slice)
    }
    return { conflicts, invalid: null }
  }

  /** The survivor set is certified: the claims that waited for it. */
  takePending (): Array<{ sender: number, body: SliceSumsBody, wire: Uint8Array }> { return this.#pending.splice(0) }

  /** slice j's sum is agreed once perSlice of its current aggregators signed the same hash (a claim from further down its ranking waits until a timeout or a dispute reaches its signer) */
  #settle (j: number): void {
    const x = this.#sliceSums[j]
    if (x.agreed !== undefined || this.#survivors === null) return
    const counted = new Set(this.aggregatorsOf(j, this.#survivors, x.extra))
    const votes = new Map<string, number>()
    for (const [member, c] of x.claims) {
      if (!counted.has(member)) continue
      const k = hex(c.hash)
      const v = (votes.get(k) ?? 0) + 1
      votes.set(k, v)
      if (v >= this.#o.slicing.perSlice) { x.agreed = { hash: c.hash, hex: k, by: member }; return }
    }
  }

  /** The members whose slices this peer fetches, now: before U3, the masking set's assignment; after, U3's with its extensions. */
  takeMissing (maskingSet: readonly number[], survivors: readonly number[] | null): Array<{ hash: string, owner: number }> {
    const out: Array<{ hash: string, owner: number }> = []
    const want = (h: string | null, owner: number): void => {
      if (h === null || this.#held.has(h) || this.#sums.has(h) || this.#requested.has(h)) return
      this.#requested.add(h)
      out.push({ hash: h, owner })
    }
    const from = survivors ?? maskingSet.filter(u => this.#hashes.has(u))
    for (const j of this.#mySlices(survivors ?? maskingSet, survivors !== null)) for (const u of from) want(this.#sliceHash(u, j), u)
    if (survivors !== null) {
      for (const { agreed } of this.#sliceSums) if (agreed !== undefined) want(agreed.hex, agreed.by)
    }
    return out
  }

  /**
   * With U3 certified and its secrets reconstructed: the slices this peer aggregates and holds
   * every survivor's part of, summed and unmasked; a slice that stays short of agreeing sums a
   * phase after `now` first came here gets one more aggregator.
   */
  step (now: number, maskingSet: readonly number[], survivors: readonly number[], secrets: UnmaskingSecrets): SliceStep {
    this.#survivors = survivors
    const publish: SliceStep['publish'] = []
    for (let j = 0; j < this.slices; j++) {
      const x = this.#sliceSums[j]
      if (x.agreed !== undefined) continue
      if (x.due === undefined) x.due = now + this.#o.phaseMs
      else if (now >= x.due) { x.extra++; x.due = now + this.#o.phaseMs; this.#settle(j) }
    }
    for (const j of this.#mySlices(survivors, true)) {
      if (this.#sliceSums[j].own !== undefined) continue
      const parts = survivors.map(u => this.#held.get(this.#sliceHash(u, j) ?? ''))
      if (parts.some(p => p === undefined)) continue
      const b = this.bounds[j]
      const sum = unmaskSlice(parts as Uint32Array[], b.from, secrets)
      const data = bytesOf(sum)
      const h = hash(data)
      this.#sliceSums[j].own = h
      this.#sums.set(hex(h), sum)
      publish.push({ hash: hex(h), data })
      this.#unannounced.push([j, h])
    }
    return { fetch: this.takeMissing(maskingSet, survivors), publish, announce: this.#unannounced.splice(0) }
  }

  /**
   * A member that checks everything: the slices whose agreed sum differs from the one it computed
   * itself (it signs no header then: their aggregators lied to it, or it to itself). Empty for
   * other members, who go by the aggregators' signatures.
   */
  disputed (): number[] {
    if (this.#o.checkAll !== true) return []
    return this.#sliceSums.flatMap((x, j) => x.agreed !== undefined && x.own !== undefined && !equalBytes(x.agreed.hash, x.own) ? [j] : [])
  }

  /** The unmasked sum, once every slice has an agreed sum this peer holds (and, checking everything, computed itself alike); else null. */
  sum (): Uint32Array | null {
    if (this.#sliceSums.some(x => x.agreed === undefined)) return null
    if (this.#o.checkAll === true && (this.#sliceSums.some(x => x.own === undefined) || this.disputed().length > 0)) return null
    const parts = this.#sliceSums.map(x => this.#sums.get(x.agreed!.hex))
    if (parts.some(p => p === undefined)) return null
    const out = new Uint32Array(this.#o.length)
    parts.forEach((p, j) => out.set(p!, this.bounds[j].from))
    return out
  }

  /** The members who signed slice j's agreed sum (empty while it is not agreed). */
  agreedSigners (j: number): number[] {
    const { agreed, claims } = this.#sliceSums[j]
    if (agreed === undefined) return []
    return [...claims].filter(([, c]) => equalBytes(c.hash, agreed.hash)).map(([m]) => m).sort((a, b) => a - b)
  }

  /** Each slice's agreed sum hash (once sum() is not null: every one is agreed, and the slice held matches it). */
  agreedHashes (): Uint8Array[] {
    return this.#sliceSums.map(x => {
      if (x.agreed === undefined) throw new Error('not every slice is agreed yet')
      return x.agreed.hash
    })
  }

  /** The round ended: let the slices go. */
  release (): void { this.#held.clear(); this.#sums.clear() }
}
