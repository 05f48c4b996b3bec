/**
 * A node's data directory: everything it needs to restart where it stopped.
 *
 *   identity.key          Ed25519 seed, hex (mode 0600): the node's libp2p and signing key
 *   inference.key         Ed25519 seed, hex (mode 0600): the encrypted-inference listener's own peer id
 *   config.json           settings written by `medmesh join` (file layer of the configuration)
 *   manifest.json         the signed consortium manifest
 *   initial-weights.bin   the consortium's initial weights, where its manifest gives them as a file (params.model.init; read by initial-weights.ts)
 *   ledger/<round>.cert   one certificate per certified round (CBOR), verified as a chain on start
 *   states/<hash>.state   certified global states, named by their hash: the latest, and the best by federated validation
 *   budget.json           the hospital's privacy budget (accumulated RDP)
 *   round.json            the round in progress: a restarted node never runs it again (no equivocation)
 *   addresses.json        the newest signed address record of each member (peer records, base64)
 * Every write is atomic (fsutil.atomicWrite). A file that does not verify is a clear error.
 */
import { readdirSync, unlinkSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { NodeIdentity, PrivacyBudget, type PrivacyBudgetState } from '../privacy/index.ts'
import { Ledger, decodeCertificate, encodeCertificate, type Certificate } from '../protocol/ledger.ts'
import { verifySignedManifest, type Manifest, type SignedManifest } from '../protocol/manifest.ts'
import { decodeState, encodeState, stateHash, type GlobalState } from '../protocol/model.ts'
import { hex } from '../protocol/codec.ts'
import { atomicWrite, ensureDir, readIfExists } from './fsutil.ts'

export class DataDirError extends Error {
  constructor (message: string) { super(message); this.name = 'DataDirError' }
}

const MAX_STATE_BYTES = 1 << 30

export class DataDir {
  readonly root: string
  constructor (root: string) { this.root = root }

  path (...parts: string[]): string { return join(this.root, ...parts) }

  /** Create the directory and a new identity; refuses to overwrite an existing identity. */
  init (): NodeIdentity {
    ensureDir(this.root)
    if (existsSync(this.path('identity.key'))) throw new DataDirError(`${this.root} already holds an identity; refusing to overwrite it`)
    return this.#writeKey(this.path('identity.key'))
  }

  /** A new Ed25519 seed written as hex (mode 0600); its identity. */
  #writeKey (file: string): NodeIdentity {
    const identity = NodeIdentity.generate()
    atomicWrite(file, Buffer.from(identity.exportSeed()).toString('hex') + '\n', 0o600)
    return identity
  }

  /** The identity of a key file written by #writeKey, or null when there is none. */
  #readKey (file: string): NodeIdentity | null {
    const raw = readIfExists(file)
    if (raw === null) return null
    const text = raw.toString('utf8').trim()
    if (!/^[0-9a-f]{64}$/.test(text)) throw new DataDirError(`${file} is not a 32-byte hex key`)
    return NodeIdentity.fromSeed(Uint8Array.from(Buffer.from(text, 'hex')))
  }

  /** Remove temporary files a crash left behind (the real files were never touched: see atomicWrite). */
  removeTemporaryFiles (): number {
    let removed = 0
    for (const dir of [this.root, this.path('ledger'), this.path('states')]) {
      if (!existsSync(dir)) continue
      for (const f of readdirSync(dir)) if (f.startsWith('.') && f.endsWith('.tmp')) { unlinkSync(join(dir, f)); removed++ }
    }
    return removed
  }

  /** the members' signed address records (services/address-book.ts), as last saved */
  addressRecords (): Buffer | null { return readIfExists(this.path('addresses.json')) }
  saveAddressRecords (json: string): void { atomicWrite(this.path('addresses.json'), json, 0o644) }

  siteReports (): Buffer | null { return readIfExists(this.path('sites.json')) }
  saveSiteReports (json: string): void { atomicWrite(this.path('sites.json'), json, 0o644) }

  hasIdentity (): boolean { return existsSync(this.path('identity.key')) }

  identity (): NodeIdentity {
    const identity = this.#readKey(this.path('identity.key'))
    if (identity === null) throw new DataDirError(`no identity in ${this.root}: run 'medmesh init --data-dir ${this.root}' first`)
    return identity
  }

  /**
   * The key of this node's encrypted-inference listener (inference.key, made on first use): a
   * peer id apart from the node's, so that clinics' connections never mix with members' links.
   */
  inferenceIdentity (): NodeIdentity {
    const file = this.path('inference.key')
    return this.#readKey(file) ?? this.#writeKey(file)
  }

  saveManifest (signed: SignedManifest): void {
    verifySignedManifest(signed)
    atomicWrite(this.path('manifest.json'), JSON.stringify(signed, null, 2) + '\n', 0o644)
  }

  manifest (): Manifest {
    const raw = readIfExists(this.path('manifest.json'))
    if (raw === null) throw new DataDirError(`no manifest in ${this.root}: run 'medmesh join' first`)
    let parsed: unknown
    try { parsed = JSON.parse(raw.toString('utf8')) } catch { throw new DataDirError(`${this.path('manifest.json')} is not valid JSON`) }
    return verifySignedManifest(parsed)
  }

  /** Keep the consortium's initial weights (checked by the caller against the manifest). */
  saveInitialWeights (weights: Float32Array): void {
    atomicWrite(this.path('initial-weights.bin'), new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength), 0o644)
  }

  saveCertificate (round: number, cert: Certificate): void {
    atomicWrite(this.path('ledger', `${String(round).padStart(10, '0')}.cert`), encodeCertificate(cert), 0o644)
  }

  /** The stored certificates, verified as a chain from the manifest. */
  ledger (manifest: Manifest): Ledger {
    const dir = this.path('ledger')
    const files = existsSync(dir) ? readdirSync(dir).filter(f => /^\d{10}\.cert$/.test(f)).sort() : []
    const certs = files.map(f => decodeCertificate(new Uint8Array(readIfExists(join(dir, f))!)))
    try {
      return Ledger.verify(manifest, certs)
    } catch (e) {
      throw new DataDirError(`the ledger in ${dir} does not verify: ${(e as Error).message}`)
    }
  }

  /** Write a certified state; the others are removed but for those named in `keep` (the best model by validation). */
  saveState (state: GlobalState, keep: readonly string[] = []): string {
    const h = hex(stateHash(state))
    atomicWrite(this.path('states', `${h}.state`), encodeState(state), 0o644)
    const dir = this.path('states')
    const kept = new Set([h, ...keep].map(x => `${x}.state`))
    for (const f of readdirSync(dir)) if (f.endsWith('.state') && !kept.has(f)) unlinkSync(join(dir, f))
    return h
  }

  stateBytes (hashHex: string): Uint8Array | null {
    const raw = readIfExists(this.path('states', `${hashHex}.state`))
    return raw === null ? null : new Uint8Array(raw)
  }

  state (hashHex: string): GlobalState | null {
    const raw = this.stateBytes(hashHex)
    if (raw === null) return null
    const state = decodeState(raw, MAX_STATE_BYTES)
    if (hex(stateHash(state)) !== hashHex) throw new DataDirError(`state file ${hashHex} does not match its hash`)
    return state
  }

  saveBudget (budget: PrivacyBudget): void {
    atomicWrite(this.path('budget.json'), JSON.stringify(budget.toJSON()) + '\n')
  }

  budget (): PrivacyBudget | null {
    const raw = readIfExists(this.path('budget.json'))
    return raw === null ? null : PrivacyBudget.fromJSON(JSON.parse(raw.toString('utf8')) as PrivacyBudgetState)
  }

  /** The round this node was last in (written before any message of a phase leaves), or null. */
  lastRound (): number | null {
    const raw = readIfExists(this.path('round.json'))
    if (raw === null) return null
    try {
      const r = (JSON.parse(raw.toString('utf8')) as { round?: unknown }).round
      return typeof r === 'number' && Number.isInteger(r) && r >= 0 ? r : null
    } catch {
      throw new DataDirError(`${this.path('round.json')} is not valid JSON`)
    }
  }

  saveRound (info: { round: number, phase: string }): void {
    atomicWrite(this.path('round.json'), JSON.stringify({ ...info, at: new Date().toISOString() }) + '\n')
  }
}
