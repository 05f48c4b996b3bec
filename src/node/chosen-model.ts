/**
 * The consortium's chosen model as a data directory holds it: the certified round with the best
 * federated validation AUC smoothed over its neighbours, never a degenerate one while another
 * exists (protocol/validation.ts bestModel; the latest certified model before any eval round), its weights from
 * the stored state (checked against the certificate's hash), the normalisation the consortium
 * certified, and the class names of this node's dataset (checked against the manifest at join).
 */
import { hex } from '../protocol/codec.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { stateHash } from '../protocol/model.ts'
import { bestModel, chooseIndex, judgedRounds } from '../protocol/validation.ts'
import { widthOfWeights } from '../protocol/selection.ts'
import type { LedgerEntry } from '../protocol/ledger.ts'
import { normalisation, type Normalisation } from '../training/data/stats.ts'
import type { ModelSpec } from '../training/models.ts'
import { ConfigError, resolveConfig } from './config.ts'
import { DataDir } from './datadir.ts'
import { readSiteData } from './dataset.ts'

export interface ChosenModel {
  manifest: Manifest
  entry: LedgerEntry
  /** why this round: the best by federated validation, or the latest certified one */
  reason: 'best validation AUC averaged with its neighbours' | 'best validation AUC among the models kept' | 'latest certified'
  validation: { auc: number, accuracy: number, smoothedAuc: number } | null
  /** why the chosen model is degenerate (it predicts one class, or ties every score), or null */
  degenerate: string | null
  /** split conformal thresholds from the chosen round's pooled validation (empty: none certified) */
  conformal: Array<{ coverage: number, threshold: number }>
  spec: ModelSpec
  weights: Float32Array
  norm: Normalisation | undefined
  classes: string[]
}

export function chosenModel (dataDir: string, o: { round?: number } = {}): ChosenModel {
  const dir = new DataDir(dataDir)
  const manifest = dir.manifest()
  const ledger = dir.ledger(manifest)
  const best = bestModel(ledger, manifest.params.model.classes)
  const judged = judgedRounds(ledger, manifest.params.model.classes)
  let entry: LedgerEntry | undefined
  let reason: ChosenModel['reason'] = 'latest certified'
  if (o.round !== undefined) {
    entry = ledger.entries.find(e => e.header.kind === 'update' && e.header.round === o.round)
    if (entry === undefined) throw new ConfigError(`round ${o.round} certified no model in ${dataDir}`)
  } else if (best !== undefined) { entry = best.model; reason = 'best validation AUC averaged with its neighbours' } else entry = ledger.lastOf('update')
  if (entry === undefined) throw new ConfigError(`${dataDir} holds no certified model yet: run the node until a round is certified`)
  if (o.round === undefined && reason !== 'latest certified' && dir.state(hex(entry.header.stateHash)) === null) {
    // a data directory kept by a node before rounds were chosen by their smoothed AUC holds the
    // best single round and the latest, not necessarily this one: the best of those it holds
    const held = judged.filter(j => dir.state(hex(j.model.header.stateHash)) !== null)
    const pick = held[chooseIndex(held)]
    if (pick !== undefined) { entry = pick.model; reason = 'best validation AUC among the models kept' }
  }
  const h = hex(entry.header.stateHash)
  const state = dir.state(h)
  if (state === null) throw new ConfigError(`the certified model of round ${entry.header.round} (${h.slice(0, 12)}) is not in ${dataDir}/states (a node keeps the latest and those that may still be chosen)`)
  if (hex(stateHash(state)) !== h) throw new ConfigError(`the stored model of round ${entry.header.round} does not match its certificate`)
  const m = manifest.params.model
  // recipe selection may have chosen another width of the model than params.model's
  const widthFactor = widthOfWeights(manifest.params, state.weights.length)
  if (widthFactor === null) throw new ConfigError(`round ${entry.header.round} certified ${state.weights.length} weights, the candidates' models of recipe selection side by side, not one model: choose a round after selection ended`)
  const stats = ledger.statistics
  const judgement = judged.find(j => j.model === entry)
  const figures = judgement === undefined ? null : { auc: judgement.figures.auc, accuracy: judgement.figures.accuracy, smoothedAuc: judgement.smoothedAuc }
  return {
    manifest, entry, reason, validation: figures, degenerate: judgement?.degenerate ?? null, conformal: judgement?.figures.conformal ?? [],
    spec: { id: m.id as ModelSpec['id'], height: m.input.size, width: m.input.size, channels: m.input.channels, classes: m.classes, seed: m.seed, ...(widthFactor !== 1 ? { widthFactor } : {}) },
    weights: state.weights,
    norm: stats === null ? undefined : normalisation(stats, m.input.channels),
    classes: m.classNames ?? classNames(dataDir, m.classes)
  }
}

/** Without names in the manifest: this node's dataset's class names, or class0…. */
function classNames (dataDir: string, classes: number): string[] {
  try {
    const config = resolveConfig(dataDir, {})
    const names = readSiteData(config.dataset, config.shard).train.classes
    if (names.length === classes) return names
  } catch { /* no dataset here: numbered classes */ }
  return Array.from({ length: classes }, (_, i) => `class${i}`)
}
