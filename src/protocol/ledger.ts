/**
 * Round certificates and the hash-chained ledger.
 *
 * A certificate header names {consortium, round, previous certificate hash, kind, survivor set,
 * aggregate hash, new state hash, extra}; a certificate is the header plus signatures of at least
 * `quorum` distinct members over its hash (purpose "round-certificate"). The first certificate's
 * `prev` is the consortium id; each later one's is the previous header's hash. So the whole chain
 * can be checked from the manifest alone.
 *
 * Kinds: 'update' (a model round), 'stats' (secure sum of normalisation statistics and class fractions; `x` holds the
 * result as float64), 'eval' (secure sum of validation counts; `x` holds the pooled validation
 * AUC, accuracy and count as float64, `mh` the state judged), 'membership' (a new manifest, in
 * `x`, takes effect; `mh` is its id).
 */
import { NodeIdentity, ed25519PublicKeyFromPeerId, verifySignature } from '../privacy/index.ts'
import { arr, bytes, decodeBounded, encodeCanonical, equalBytes, hash, hex, obj, uint } from './codec.ts'
import { MAX_MEMBERS, MAX_SLICES, consortiumId, validateManifest, type Manifest } from './manifest.ts'
import { reject } from './errors.ts'

export type CertificateKind = 'update' | 'stats' | 'eval' | 'membership'

export interface CertificateHeader {
  consortium: Uint8Array
  round: number
  prev: Uint8Array
  kind: CertificateKind
  survivors: number[]
  aggregateHash: Uint8Array
  /** sliced mode only: SHA-256 of each slice of the aggregate, the hashes its aggregators signed (§8) */
  sliceHashes?: Uint8Array[]
  stateHash: Uint8Array
  extra: Uint8Array
}

export interface Certificate {
  header: Uint8Array
  signatures: Array<[number, Uint8Array]>
}

export const MAX_HEADER_BYTES = 64 * 1024

export function encodeHeader (h: CertificateHeader): Uint8Array {
  return encodeCanonical({ c: h.consortium, r: h.round, p: h.prev, k: h.kind, u: h.survivors, ah: h.aggregateHash, ...(h.sliceHashes !== undefined ? { sh: h.sliceHashes } : {}), mh: h.stateHash, x: h.extra })
}

export function decodeHeader (data: Uint8Array): CertificateHeader {
  const o = obj(decodeBounded(data, MAX_HEADER_BYTES, 'certificate header'), 'certificate header', ['c', 'r', 'p', 'k', 'u', 'ah', 'mh', 'x'], ['sh'])
  const k = o.k
  if (k !== 'update' && k !== 'stats' && k !== 'eval' && k !== 'membership') reject('malformed', 'certificate kind')
  const u = arr(o.u, 'survivors', MAX_MEMBERS, (x, i) => uint(x, `survivors[${i}]`, MAX_MEMBERS - 1))
  for (let i = 1; i < u.length; i++) if (u[i] <= u[i - 1]) reject('malformed', 'survivors must be sorted and distinct')
  return { consortium: bytes(o.c, 'c', 32), round: uint(o.r, 'round'), prev: bytes(o.p, 'prev', 32), kind: k as CertificateKind, survivors: u, aggregateHash: bytes(o.ah, 'ah', 32), ...(o.sh !== undefined ? { sliceHashes: arr(o.sh, 'slice hashes', MAX_SLICES, (x, i) => bytes(x, `slice hash ${i}`, 32)) } : {}), stateHash: bytes(o.mh, 'mh', 32), extra: bytes(o.x, 'x', undefined, MAX_HEADER_BYTES) }
}

export const headerHash = (headerBytes: Uint8Array): Uint8Array => hash(headerBytes)

export function signHeader (identity: NodeIdentity, headerBytes: Uint8Array): Uint8Array {
  return identity.sign('round-certificate', headerHash(headerBytes))
}

export function memberKeys (manifest: Manifest): Uint8Array[] {
  return manifest.members.map(m => ed25519PublicKeyFromPeerId(m.peerId))
}

/** Verify a certificate against a manifest: at least `quorum` distinct valid member signatures. */
export function verifyCertificate (cert: Certificate, manifest: Manifest, keys: readonly Uint8Array[] = memberKeys(manifest)): CertificateHeader {
  const header = decodeHeader(cert.header)
  if (!equalBytes(header.consortium, consortiumId(manifest))) reject('wrong-consortium', `certificate for round ${header.round} names another consortium`)
  const h = headerHash(cert.header)
  const signers = new Set<number>()
  for (const [idx, sig] of cert.signatures) {
    if (idx >= keys.length || signers.has(idx)) continue
    if (verifySignature(keys[idx], 'round-certificate', h, sig)) signers.add(idx)
  }
  if (signers.size < manifest.params.quorum) reject('invalid', `certificate for round ${header.round} has ${signers.size} valid signatures, quorum is ${manifest.params.quorum}`)
  return header
}

export function encodeCertificate (cert: Certificate): Uint8Array {
  return encodeCanonical({ h: cert.header, s: cert.signatures })
}

export function decodeCertificate (data: Uint8Array): Certificate {
  const o = obj(decodeBounded(data, MAX_HEADER_BYTES + MAX_MEMBERS * 80, 'certificate'), 'certificate', ['h', 's'])
  const signatures = arr(o.s, 'signatures', MAX_MEMBERS, (x, i) => {
    const p = arr(x, `signatures[${i}]`, 2, y => y)
    if (p.length !== 2) reject('malformed', 'signature entry must be a pair')
    return [uint(p[0], 'signer', MAX_MEMBERS - 1), bytes(p[1], 'signature', 64)] as [number, Uint8Array]
  })
  return { header: bytes(o.h, 'header', undefined, MAX_HEADER_BYTES), signatures }
}

export interface LedgerEntry {
  certificate: Certificate
  header: CertificateHeader
  hash: Uint8Array
}

/**
 * The chain of certificates of one consortium, verified as it grows. `manifest` is the current
 * one (it changes with membership certificates).
 */
export class Ledger {
  readonly genesis: Manifest
  #manifest: Manifest
  #keys: Uint8Array[]
  readonly entries: LedgerEntry[] = []

  constructor (genesis: Manifest) {
    this.genesis = genesis
    this.#manifest = genesis
    this.#keys = memberKeys(genesis)
  }

  get manifest (): Manifest { return this.#manifest }
  get memberKeys (): readonly Uint8Array[] { return this.#keys }
  get consortium (): Uint8Array { return consortiumId(this.#manifest) }
  /** hash the next certificate must name as `prev` */
  get head (): Uint8Array { return this.entries.length === 0 ? consortiumId(this.genesis) : this.entries[this.entries.length - 1].hash }
  get lastRound (): number { return this.entries.length === 0 ? -1 : this.entries[this.entries.length - 1].header.round }
  get last (): LedgerEntry | undefined { return this.entries[this.entries.length - 1] }

  /** The latest certificate of this kind (the last certified model: lastOf('update')). */
  lastOf (kind: CertificateKind): LedgerEntry | undefined {
    for (let i = this.entries.length - 1; i >= 0; i--) if (this.entries[i].header.kind === kind) return this.entries[i]
    return undefined
  }

  /** How many certificates of this kind the ledger holds. */
  count (kind: CertificateKind): number {
    return this.entries.reduce((n, e) => n + (e.header.kind === kind ? 1 : 0), 0)
  }

  /** The certificates of rounds after `round`, in order (what a member that stopped there lacks). */
  after (round: number): LedgerEntry[] {
    return this.entries.filter(e => e.header.round > round)
  }

  /** The certified statistics (pixel mean and mean square per channel, then class fractions) of the last statistics round, if any. */
  get statistics (): Float64Array | null {
    const e = this.lastOf('stats')
    return e === undefined ? null : new Float64Array(new Uint8Array(e.header.extra).buffer)
  }

  /** Verify and append; throws ProtocolError if the certificate does not extend this chain. */
  append (cert: Certificate): LedgerEntry {
    const header = verifyCertificate(cert, this.#manifest, this.#keys)
    if (!equalBytes(header.prev, this.head)) reject('invalid', `certificate for round ${header.round} does not extend the ledger (prev ${hex(header.prev).slice(0, 12)}, head ${hex(this.head).slice(0, 12)})`)
    if (header.round <= this.lastRound) reject('old-round', `certificate for round ${header.round} is not after round ${this.lastRound}`)
    let next: Manifest | undefined
    if (header.kind === 'membership') {
      try {
        next = validateManifest(JSON.parse(new TextDecoder().decode(header.extra)))
      } catch {
        return reject('invalid', 'membership certificate carries no valid manifest')
      }
      if (!equalBytes(consortiumId(next), header.stateHash)) reject('invalid', 'membership certificate: manifest hash mismatch')
    }
    const entry = { certificate: cert, header, hash: headerHash(cert.header) }
    this.entries.push(entry)
    if (next !== undefined) { this.#manifest = next; this.#keys = memberKeys(next) }
    return entry
  }

  /** Rebuild and verify a whole chain from the genesis manifest. */
  static verify (genesis: Manifest, certs: readonly Certificate[]): Ledger {
    const ledger = new Ledger(genesis)
    for (const c of certs) ledger.append(c)
    return ledger
  }
}

/** The header of a membership change from `current` to `next`, for the current members to sign. */
export function membershipHeader (ledger: Ledger, next: Manifest, round: number): Uint8Array {
  const valid = validateManifest(next)
  return encodeHeader({
    consortium: ledger.consortium, round: round, prev: ledger.head, kind: 'membership', survivors: [],
    aggregateHash: new Uint8Array(32), stateHash: consortiumId(valid), extra: new TextEncoder().encode(JSON.stringify(valid))
  })
}
