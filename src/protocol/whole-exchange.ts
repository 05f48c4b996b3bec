/**
 * The all-to-all exchange (exchange.ts): every member fetches every committed masked vector whole,
 * checks it against its commitment, and sums the survivors' vectors itself.
 */
import { hash, hex } from './codec.ts'
import { unmaskSlice, type UnmaskingSecrets } from './aggregate.ts'
import type { Exchange, SumStep } from './exchange.ts'
import type { MaskedInputBody } from './messages.ts'
import { MaskedVectors, type Commitment } from './vectors.ts'

const idle = (sum: SumStep['sum']): SumStep => ({ sum, publish: [], fetch: [], announce: [], rejects: [] })

export class WholeExchange implements Exchange {
  readonly described = ''
  readonly #vectors = new MaskedVectors()

  checkCommitment (body: MaskedInputBody): string | null {
    return body.sliceHashes !== undefined ? 'carries slice hashes, but the consortium aggregates whole vectors' : null
  }

  commit (member: number, c: Commitment, authoritative: boolean): 'new' | 'same' | 'other' { return this.#vectors.commit(member, c, authoritative) }
  commitmentOf (member: number): Commitment | undefined { return this.#vectors.commitmentOf(member) }

  own (y: Uint32Array): { blobs: Array<{ hash: string, data: Uint8Array }>, vectorHash: Uint8Array } {
    const data = new Uint8Array(y.buffer, y.byteOffset, y.byteLength)
    const h = hash(data)
    this.#vectors.holdOwn(hex(h), y)
    return { blobs: [{ hash: hex(h), data }], vectorHash: h }
  }

  receiveBlob (hashHex: string, data: Uint8Array, hashChecked: boolean): ReturnType<Exchange['receiveBlob']> {
    const got = this.#vectors.receive(hashHex, data, hashChecked)
    if (got === null) return null
    return got.matched ? { ok: true } : { ok: false, reason: `masked vector from member ${got.member} does not match its commitment`, member: got.member }
  }

  hasInputOf (u: number): boolean { return this.#vectors.has(u) }

  /** every committed vector it lacks, whatever the sets (all-to-all: every member sums every survivor's) */
  takeMissing (_maskingSet?: readonly number[] | null, _survivors?: readonly number[] | null): Array<{ hash: string, owner: number }> { return this.#vectors.takeMissing() }

  sum (_now: number, _maskingSet: readonly number[], survivors: readonly number[], secrets: UnmaskingSecrets): SumStep {
    if (!survivors.every(u => this.#vectors.has(u))) return idle(null) // a survivor's vector is still on its way
    return idle({ words: unmaskSlice(survivors.map(u => this.#vectors.vectorOf(u)), 0, secrets) })
  }

  claim (sender: number): { rejects: [], invalid: string } {
    return { rejects: [], invalid: `slice sums from ${sender}, but the consortium aggregates whole vectors` }
  }

  survivorsCertified (): [] { return [] }

  release (): void { this.#vectors.release() }
}
