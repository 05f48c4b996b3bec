/**
 * The masked vectors of one round as one peer knows them: each member's signed commitment (the
 * SHA-256 and length of its masked vector, in its masked-input message) and the vectors fetched so
 * far, each accepted only if it matches its commitment. Vectors are content-addressed, so any
 * holder may serve one (the driver fetches; see the node's blob exchange).
 */
import { equalBytes, hash, hex } from './codec.ts'
import type { MaskedInputBody } from './messages.ts'

export interface Commitment { id: Uint8Array, wire: Uint8Array, body: MaskedInputBody }

export class MaskedVectors {
  readonly #commitments = new Map<number, Commitment>()
  readonly #vectors = new Map<string, Uint32Array>()
  readonly #requested = new Set<string>()

  commitmentOf (member: number): Commitment | undefined { return this.#commitments.get(member) }

  /**
   * Record a member's commitment: 'new', 'same' (seen before), or 'other' when it already committed
   * to another vector (equivocation); `replace` makes the new one count all the same.
   */
  commit (member: number, c: Commitment, replace = false): 'new' | 'same' | 'other' {
    const prior = this.#commitments.get(member)
    if (prior !== undefined && equalBytes(prior.id, c.id)) return 'same'
    if (prior === undefined || replace) this.#commitments.set(member, c)
    return prior === undefined ? 'new' : 'other'
  }

  /** This peer's own vector, which needs no fetching. */
  holdOwn (hashHex: string, vector: Uint32Array): void { this.#vectors.set(hashHex, vector) }

  /**
   * A fetched blob: kept when it is a committed vector of the committed length and hash. Returns
   * the member it belongs to and whether it matched (null when it is no vector of this round's).
   * `hashChecked`: the driver has already hashed these bytes and found `hashHex` (not hashed again).
   */
  receive (hashHex: string, data: Uint8Array, hashChecked = false): { member: number, matched: boolean } | null {
    if (this.#vectors.has(hashHex)) return null
    const owner = [...this.#commitments.entries()].find(([, c]) => hex(c.body.vectorHash) === hashHex)
    if (owner === undefined) return null
    const [member, c] = owner
    if (data.length !== 4 * c.body.length || (!hashChecked && hex(hash(data)) !== hashHex)) {
      this.#requested.delete(hashHex) // ask again, perhaps from another holder
      return { member, matched: false }
    }
    // a view when aligned (vectors are never written to), a copy otherwise
    const aligned = data.byteOffset % 4 === 0 ? data : data.slice()
    this.#vectors.set(hashHex, new Uint32Array(aligned.buffer, aligned.byteOffset, c.body.length))
    return { member, matched: true }
  }

  has (member: number): boolean {
    const c = this.#commitments.get(member)
    return c !== undefined && this.#vectors.has(hex(c.body.vectorHash))
  }

  vectorOf (member: number): Uint32Array {
    return this.#vectors.get(hex(this.#commitments.get(member)!.body.vectorHash))!
  }

  /** Committed vectors not held and not yet asked for: marked as asked for. */
  takeMissing (): Array<{ hash: string, owner: number }> {
    const out: Array<{ hash: string, owner: number }> = []
    for (const [owner, c] of this.#commitments) {
      const h = hex(c.body.vectorHash)
      if (!this.#vectors.has(h) && !this.#requested.has(h)) { this.#requested.add(h); out.push({ hash: h, owner }) }
    }
    return out
  }

  /** Let the vectors go (the round ended): they are large. */
  release (): void { this.#vectors.clear() }
}
