/**
 * `medmesh verify-model`: that an exported model is one the consortium certified, checked by
 * anyone without trusting any one party. The founding manifest's signatures (every founder
 * signed it), the ledger as a chain from it (each certificate extends the one before and
 * carries a quorum of members' signatures), that state.bin hashes to the state a certified round
 * names, and that weights.bin holds exactly that state's weights. Each failure names the check.
 */
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { hex } from '../protocol/codec.ts'
import { consortiumId } from '../protocol/manifest.ts'
import { decodeCertificate, Ledger } from '../protocol/ledger.ts'
import { decodeState, stateHash } from '../protocol/model.ts'
import { verifyManifest } from './setup.ts'

export class VerificationError extends Error {
  readonly check: string
  constructor (check: string, message: string) { super(`${check}: ${message}`); this.name = 'VerificationError'; this.check = check }
}

export interface Verified { consortium: { name: string, id: string }, founders: number, certificates: number, round: number, kind: string, certificate: string, signedBy: string[], survivors: string[], storedAt: string | null }

const MAX_STATE_BYTES = 1 << 30

export function verifyModel (exportDir: string, manifestFile: string, ledgerDir: string): Verified {
  let manifest
  try { manifest = verifyManifest(manifestFile).manifest } catch (e) { throw new VerificationError('manifest', (e as Error).message) }
  let files: string[]
  try { files = readdirSync(ledgerDir).filter(f => /^\d{10}\.cert$/.test(f)).sort() } catch (e) { throw new VerificationError('ledger', `cannot read ${ledgerDir}: ${(e as Error).message}`) }
  if (files.length === 0) throw new VerificationError('ledger', `${ledgerDir} holds no certificates`)
  let ledger: Ledger
  try {
    ledger = Ledger.verify(manifest, files.map(f => decodeCertificate(new Uint8Array(readFileSync(join(ledgerDir, f))))))
  } catch (e) { throw new VerificationError('ledger', `the certificates do not verify as a chain from this manifest: ${(e as Error).message}`) }
  for (const f of ['state.bin', 'weights.bin']) if (!existsSync(join(exportDir, f))) throw new VerificationError('export', `${join(exportDir, f)} is missing`)
  const stateBytes = new Uint8Array(readFileSync(join(exportDir, 'state.bin')))
  let state
  try { state = decodeState(stateBytes, MAX_STATE_BYTES) } catch (e) { throw new VerificationError('state', `state.bin does not decode: ${(e as Error).message}`) }
  const h = hex(stateHash(state))
  const entry = ledger.entries.find(e => e.header.kind === 'update' && hex(e.header.stateHash) === h)
  if (entry === undefined) throw new VerificationError('state', `state.bin (hash ${h.slice(0, 16)}) is the model of no certified round`)
  const weights = readFileSync(join(exportDir, 'weights.bin'))
  const certified = Buffer.from(state.weights.buffer, state.weights.byteOffset, state.weights.byteLength)
  if (!certified.equals(weights)) throw new VerificationError('weights', `weights.bin is not the certified model's weights (round ${entry.header.round}): ${weights.length === certified.length ? 'they differ' : `${weights.length} bytes, the model has ${certified.length}`}`)
  const names = (idx: number[]): string[] => idx.map(i => manifest.members[i]?.name ?? String(i))
  const certFile = join(ledgerDir, `${String(entry.header.round).padStart(10, '0')}.cert`)
  return {
    consortium: { name: manifest.name, id: hex(consortiumId(manifest)) },
    founders: manifest.members.length,
    certificates: ledger.entries.length,
    round: entry.header.round,
    kind: entry.header.kind,
    certificate: hex(entry.hash),
    signedBy: names(entry.certificate.signatures.map(([i]) => i)),
    survivors: names(entry.header.survivors),
    storedAt: existsSync(certFile) ? statSync(certFile).mtime.toISOString() : null
  }
}
