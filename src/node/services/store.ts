/**
 * The node store: what the node keeps in its data directory so that a crash loses nothing. On
 * start it verifies the ledger and finds the model to go on from; after each certificate it writes
 * the certificates not yet on disk and the state the last one certifies; it notes the round in
 * progress (round.json), so that a restarted node never runs that round again. Every file is
 * written whole or not at all (DataDir, fsutil.atomicWrite).
 */
import { hex } from '../../protocol/codec.ts'
import { Ledger } from '../../protocol/ledger.ts'
import type { Manifest } from '../../protocol/manifest.ts'
import { stateHash, type GlobalState } from '../../protocol/model.ts'
import { modelsToKeep } from '../../protocol/validation.ts'
import type { PrivacyBudget } from '../../privacy/index.ts'
import type { DataDir } from '../datadir.ts'
import { isStorageError } from '../fsutil.ts'
import type { Logger } from '../logger.ts'

export interface Restored {
  ledger: Ledger
  /** the last certified model held, or null: start from the initial state */
  state: GlobalState | null
  /** the first round this node may take part in (the one after the round it was in when it stopped) */
  firstRound: number
}

export interface NodeStoreComponents {
  dir: Pick<DataDir, 'root' | 'path' | 'removeTemporaryFiles' | 'ledger' | 'stateBytes' | 'state' | 'saveCertificate' | 'saveState' | 'saveRound' | 'lastRound' | 'saveBudget' | 'budget'>
  log: Logger
  /** the data directory cannot be written: the node must stop (see guard) */
  unwritable: () => void
}

export class NodeStore {
  readonly #c: NodeStoreComponents
  /** rounds whose certificate is on disk */
  readonly #written = new Set<number>()
  /** hash of the certified model last written */
  #stateWritten = ''
  /** why the data directory could not be written, once it could not */
  unwritable: string | null = null

  constructor (c: NodeStoreComponents) { this.#c = c }

  restore (manifest: Manifest, peerId: string): Restored {
    const { dir, log } = this.#c
    const leftovers = dir.removeTemporaryFiles()
    if (leftovers > 0) log.warn(`removed ${leftovers} temporary file(s) left by an interrupted write`)
    let ledger = dir.ledger(manifest)
    const models = ledger.entries.filter(e => e.header.kind === 'update')
    const latest = models[models.length - 1]
    const held = [...models].reverse().find(e => dir.stateBytes(hex(e.header.stateHash)) !== null)
    if (latest !== undefined && held !== latest) {
      // it stopped after storing a certificate but before it held the model it certifies (it was
      // still fetching it): go back to the last certificate whose model is here; the members
      // provide the rest again, checked as ever
      const keep = held === undefined ? ledger.entries.filter(e => e.header.round < models[0].header.round) : ledger.entries.filter(e => e.header.round <= held.header.round)
      const from = keep.length > 0 ? keep[keep.length - 1].header.round : null
      log.warn({ missingModel: latest.header.round, resumingFrom: from }, `the model certified in round ${latest.header.round} is not in ${dir.path('states')}: resuming from round ${from ?? 'none'} and catching up from the members`)
      ledger = Ledger.verify(manifest, keep.map(e => e.certificate))
    }
    for (const e of ledger.entries) this.#written.add(e.header.round)
    log.info({ peerId, consortium: manifest.name, members: manifest.members.length, certified: ledger.entries.length }, `ledger verified: ${ledger.entries.length} certified round(s)`)
    if (held !== undefined && held === latest) this.#stateWritten = hex(held.header.stateHash)
    return { ledger, state: held === undefined ? null : dir.state(hex(held.header.stateHash)), firstRound: (dir.lastRound() ?? -1) + 1 }
  }

  /** Write every certificate not yet on disk, and the state if it is the one the last model certificate names. */
  persist (ledger: Ledger, state: GlobalState): void {
    for (const e of ledger.entries) {
      if (this.#written.has(e.header.round)) continue
      this.#c.dir.saveCertificate(e.header.round, e.certificate)
      this.#written.add(e.header.round)
    }
    const last = ledger.lastOf('update')
    if (last === undefined) return
    const want = hex(last.header.stateHash)
    if (this.#stateWritten !== want && hex(stateHash(state)) === want) {
      // every model that may still be the consortium's chosen one is kept too: the best whose
      // smoothed AUC is final and those whose average still moves (validation.ts modelsToKeep)
      this.#c.dir.saveState(state, modelsToKeep(ledger, ledger.manifest.params.model.classes).map(x => hex(x.header.stateHash)))
      this.#stateWritten = want
    }
  }

  /** Whether the model the ledger's last model certificate names is on disk (a late certificate arrives before its model). */
  modelSaved (ledger: Ledger): boolean {
    const last = ledger.lastOf('update')
    return last === undefined || this.#stateWritten === hex(last.header.stateHash)
  }

  /**
   * Run `fn`, which writes; if the data directory cannot be written (full disk, read-only mount,
   * permissions), the node stops: going on would mean certifying rounds it could not prove after
   * a restart, or forgetting which round it signed. Files are written whole or not at all, so
   * what is there stays valid.
   */
  guard (fn: () => void): void {
    try { fn() } catch (e) {
      if (!isStorageError(e)) throw e
      if (this.unwritable !== null) return
      const err = e as NodeJS.ErrnoException
      this.unwritable = `${err.code ?? 'error'}: ${err.message}`
      this.#c.log.error({ code: err.code, dataDir: this.#c.dir.root }, `cannot write to the data directory (${err.code ?? err.message}): stopping; files already there are intact — free space or fix permissions, then start again`)
      this.#c.unwritable()
    }
  }

  storedState (hashHex: string): Uint8Array | null { return this.#c.dir.stateBytes(hashHex) }
  saveRound (round: number, phase: string): void { this.#c.dir.saveRound({ round, phase }) }
  saveBudget (budget: PrivacyBudget): void { this.#c.dir.saveBudget(budget) }
  budget (): PrivacyBudget | null { return this.#c.dir.budget() }
}
