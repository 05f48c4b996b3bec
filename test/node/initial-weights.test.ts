import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { checkInitialWeights, consortiumInitialWeights, initialHashOf, readWeightsFile } from '../../src/node/initial-weights.ts'
import { DataDir } from '../../src/node/datadir.ts'
import { ConfigError } from '../../src/node/config.ts'
import { defaultParams, type Manifest } from '../../src/protocol/manifest.ts'
import { throwsA } from '../helpers/assert.ts'

const root = mkdtempSync(join(tmpdir(), 'medmesh-init-'))
const bytesOf = (w: Float32Array): Uint8Array => new Uint8Array(w.buffer, w.byteOffset, w.byteLength)
const weights = Float32Array.from({ length: 10 }, (_, i) => i / 7 - 0.5)

/** a manifest whose model starts from `w` (init: from a file) or is built from its seed (init undefined) */
function manifestFor (w: Float32Array, init: string | undefined): Manifest {
  const params = defaultParams(2, w.length, initialHashOf(w))
  if (init !== undefined) params.model.init = init
  return { version: 1, name: 'c', members: [], params } as unknown as Manifest
}

test('a weights file is read as float32, from the file or the export folder holding weights.bin, with its sha256', () => {
  const folder = join(root, 'export'); mkdirSync(folder)
  writeFileSync(join(folder, 'weights.bin'), bytesOf(weights))
  for (const path of [folder, join(folder, 'weights.bin')]) {
    const r = readWeightsFile(path)
    assert.equal(Array.from(r.weights), Array.from(weights))
    assert.is(r.file, join(folder, 'weights.bin'))
    assert.match(r.sha256, /^[0-9a-f]{64}$/)
  }
})

test('what is not a weights file is refused by name: missing, empty, a size not of float32s, a non-finite weight', () => {
  throwsA(() => readWeightsFile(join(root, 'nothing')), ConfigError, /no weights at .*nothing/)
  const empty = join(root, 'empty.bin'); writeFileSync(empty, new Uint8Array(0))
  throwsA(() => readWeightsFile(empty), ConfigError, /is not a weights file: 0 bytes/)
  const odd = join(root, 'odd.bin'); writeFileSync(odd, randomBytes(10))
  throwsA(() => readWeightsFile(odd), ConfigError, /is not a weights file: 10 bytes/)
  const nan = Float32Array.from(weights); nan[3] = NaN
  const bad = join(root, 'nan.bin'); writeFileSync(bad, bytesOf(nan))
  throwsA(() => readWeightsFile(bad), ConfigError, /non-finite weight \(index 3\)/)
})

test('weights are checked against the manifest: its model\'s size, then its initial hash (one weight changed is refused)', () => {
  const m = manifestFor(weights, 'weights from weights.bin')
  checkInitialWeights(Float32Array.from(weights), m, 'these')
  throwsA(() => checkInitialWeights(weights.subarray(1), m, 'these'), ConfigError, /these holds 9 weights; the consortium's model .* has 10/)
  const other = Float32Array.from(weights); other[0] += 1e-3
  throwsA(() => checkInitialWeights(other, m, 'these'), ConfigError, /are not the consortium's initial weights .*weights from weights\.bin/)
})

test('a node\'s initial weights: the seed\'s where the manifest says nothing, else the file join kept (checked), and a clear error without it', () => {
  const seeded = Float32Array.from({ length: 10 }, () => 0.25)
  const site = { initialWeights: () => seeded }
  const dir = new DataDir(join(root, 'node'))
  assert.equal(Array.from(consortiumInitialWeights(manifestFor(seeded, undefined), dir, site)), Array.from(seeded))
  const m = manifestFor(weights, 'weights from weights.bin')
  throwsA(() => consortiumInitialWeights(m, dir, site), ConfigError, /starts from weights from weights\.bin, which .* does not hold: run 'medmesh join' again with --init/)
  dir.saveInitialWeights(weights)
  assert.equal(Array.from(consortiumInitialWeights(m, dir, site)), Array.from(weights))
  assert.ok(Buffer.from(readFileSync(dir.path('initial-weights.bin'))).equals(Buffer.from(bytesOf(weights))))
  // a kept file that is no longer the founders' (edited on disk) is refused, not trained from
  const changed = Float32Array.from(weights); changed[9] = 7
  dir.saveInitialWeights(changed)
  throwsA(() => consortiumInitialWeights(m, dir, site), ConfigError, /are not the consortium's initial weights/)
})

test.run()
