/**
 * Initial weights given as a file (`manifest create --init`, `join --init`): a consortium may
 * start from a model `medmesh export` wrote (its weights.bin: the weights as little-endian
 * float32, in the model's order) or from pretrained weights in that form, instead of weights
 * built from the manifest's seed. The manifest pins them by initialHash, the hash of the state
 * they make, so every member checks that it holds exactly the founders' weights.
 */
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { hex } from '../protocol/codec.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { initialState, stateHash } from '../protocol/model.ts'
import { ConfigError } from './config.ts'
import type { DataDir } from './datadir.ts'

/** far above any model medmesh builds (ResNet-18: 45 MB), so that a wrong path cannot exhaust memory */
const MAX_WEIGHT_BYTES = 1 << 30

/** The weights in `path`: a weights.bin, or a folder holding one (an export). */
export function readWeightsFile (path: string): { weights: Float32Array, file: string, sha256: string } {
  const file = existsSync(path) && statSync(path).isDirectory() ? join(path, 'weights.bin') : path
  if (!existsSync(file)) throw new ConfigError(`no weights at ${file}: give a weights.bin or the folder 'medmesh export' wrote`)
  const size = statSync(file).size
  if (size === 0 || size % 4 !== 0 || size > MAX_WEIGHT_BYTES) throw new ConfigError(`${file} is not a weights file: ${size} bytes (float32 weights, at most ${MAX_WEIGHT_BYTES} bytes)`)
  const bytes = readFileSync(file)
  const weights = new Float32Array(size / 4)
  new Uint8Array(weights.buffer).set(bytes)
  for (let i = 0; i < weights.length; i++) if (!Number.isFinite(weights[i])) throw new ConfigError(`${file} holds a non-finite weight (index ${i})`)
  return { weights, file, sha256: createHash('sha256').update(bytes).digest('hex') }
}

/** initialHash of these weights, as the manifest pins it */
export function initialHashOf (weights: Float32Array): string { return hex(stateHash(initialState(weights))) }

/** What the manifest says of weights read from `path` (params.model.init). */
export function describeInit (r: { file: string, sha256: string }): string {
  return `weights from ${basename(r.file)} (sha256 ${r.sha256.slice(0, 16)}…)`
}

/** The consortium's initial weights at this node: kept by `join --init` where the manifest gives them as a file, else the site's, built from the seed. */
export function consortiumInitialWeights (manifest: Manifest, dir: DataDir, site: { initialWeights: () => Float32Array }): Float32Array {
  if (manifest.params.model.init === undefined) return site.initialWeights()
  // read as any weights file (size, float32s, finite), then checked against the manifest
  const file = dir.path('initial-weights.bin')
  if (!existsSync(file)) throw new ConfigError(`consortium '${manifest.name}' starts from ${manifest.params.model.init}, which ${dir.root} does not hold: run 'medmesh join' again with --init FILE`)
  const { weights } = readWeightsFile(file)
  checkInitialWeights(weights, manifest, `the weights in ${file}`)
  return weights
}

/** Check weights a member was given against its manifest: the model's size and the founders' hash. */
export function checkInitialWeights (weights: Float32Array, manifest: Manifest, what: string): void {
  const m = manifest.params.model
  if (weights.length !== m.size) throw new ConfigError(`${what} holds ${weights.length} weights; the consortium's model (${m.id}) has ${m.size}`)
  if (initialHashOf(weights) !== m.initialHash) throw new ConfigError(`${what} are not the consortium's initial weights (their hash differs from the manifest's initialHash; the manifest says: ${m.init ?? 'built from the seed'})`)
}
