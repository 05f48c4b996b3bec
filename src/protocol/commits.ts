/**
 * Step 7 of a round (docs/PROTOCOL.md): members' signed commits to a certificate header, counted
 * per header until a quorum of distinct members has signed the same one. The round counts its
 * own commits with it, and the peer counts the commits it hears for rounds it has left (a late
 * certificate to adopt) or for a ledger head it lacks (evidence that it must catch up).
 */
import { verifySignature } from '../privacy/index.ts'
import { equalBytes, hex } from './codec.ts'
import { ProtocolError } from './errors.ts'
import { decodeHeader, headerHash, type Certificate } from './ledger.ts'
import type { CommitBody } from './messages.ts'

/** Whether member `sender` signed this commit's header (purpose "round-certificate"). */
export function commitSignatureValid (memberKeys: readonly Uint8Array[], sender: number, commit: CommitBody): boolean {
  const key = memberKeys[sender]
  return key !== undefined && verifySignature(key, 'round-certificate', headerHash(commit.header), commit.signature)
}

/** A member's commit checked against the round it is for: signed by its sender, for this round, consortium and ledger head (a ProtocolError if not). */
export function checkCommit (c: CommitBody, sender: number, round: { memberKeys: readonly Uint8Array[], round: number, consortium: Uint8Array, prev: Uint8Array }): void {
  if (!commitSignatureValid(round.memberKeys, sender, c)) throw new ProtocolError('bad-signature', `member ${sender}'s certificate signature is invalid`)
  const header = decodeHeader(c.header)
  if (header.round !== round.round || !equalBytes(header.consortium, round.consortium)) throw new ProtocolError('invalid', `commit from ${sender} names another round or consortium`)
  if (!equalBytes(header.prev, round.prev)) throw new ProtocolError('invalid', `commit from ${sender} extends another ledger head`)
}

export interface TallyOptions {
  /** headers counted at most (further new headers are ignored): bounds what a flood can cost */
  maxHeaders?: number
  /** each member counts towards its latest header only, so one member cannot crowd out the others' evidence */
  latestPerSender?: boolean
}

/** Signed commits by header; only verified commits are recorded (see commitSignatureValid). */
export class CommitTally {
  readonly #options: TallyOptions
  readonly #byHeader = new Map<string, { header: Uint8Array, signatures: Map<number, Uint8Array> }>()
  readonly #latest = new Map<number, string>()

  constructor (options: TallyOptions = {}) {
    this.#options = options
  }

  /** Record a verified commit; returns the header's hash (hex), or null when it was not counted. */
  record (sender: number, commit: CommitBody): string | null {
    const key = hex(headerHash(commit.header))
    let entry = this.#byHeader.get(key)
    if (entry === undefined) {
      if (this.#byHeader.size >= (this.#options.maxHeaders ?? Infinity)) return null
      entry = { header: commit.header, signatures: new Map() }
      this.#byHeader.set(key, entry)
    }
    if (this.#options.latestPerSender === true) {
      const before = this.#latest.get(sender)
      if (before !== undefined && before !== key) this.#byHeader.get(before)?.signatures.delete(sender)
      this.#latest.set(sender, key)
    }
    entry.signatures.set(sender, commit.signature)
    return key
  }

  /** The members whose commits to this header are counted, in index order. */
  signers (key: string): number[] {
    return [...(this.#byHeader.get(key)?.signatures.keys() ?? [])].sort((a, b) => a - b)
  }

  /** The first header (in the order headers were first seen) that `quorum` members signed, as a certificate. */
  certificate (quorum: number): Certificate | null {
    for (const key of this.#byHeader.keys()) {
      const certificate = this.certificateFor(key, quorum)
      if (certificate !== null) return certificate
    }
    return null
  }

  /** The certificate of this header, if `quorum` members signed it. */
  certificateFor (key: string, quorum: number): Certificate | null {
    const entry = this.#byHeader.get(key)
    if (entry === undefined || entry.signatures.size < quorum) return null
    return { header: entry.header, signatures: [...entry.signatures.entries()].sort((a, b) => a[0] - b[0]) }
  }

  /** Every commit recorded, as (sender, commit). */
  commits (): Array<[number, CommitBody]> {
    return [...this.#byHeader.values()].flatMap(e => [...e.signatures].map(([sender, signature]) => [sender, { header: e.header, signature }] as [number, CommitBody]))
  }

  clear (): void {
    this.#byHeader.clear()
    this.#latest.clear()
  }
}
