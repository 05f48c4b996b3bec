import { test } from 'uvu'
import { DEFAULT_GUARDS } from '../../src/protocol/manifest.ts'
import { DP_RECIPE, RECIPE } from '../../src/protocol/recipe.ts'
import * as assert from 'uvu/assert'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, statSync, readFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cli } from './cluster.ts'
import { resolveConfig, ConfigError } from '../../src/node/config.ts'
import { throwsA } from '../helpers/assert.ts'

const root = mkdtempSync(join(tmpdir(), 'medmesh-cli-'))
const RETINA = join(import.meta.dirname, '../../data/medmnist/retinamnist.npz')
const noStack = (s: string): boolean => !/\n\s+at /.test(s)

test('init: a new identity, mode 0600, never overwritten', () => {
  const dir = join(root, 'a')
  const r = cli('init', '--data-dir', dir)
  assert.is(r.status, 0, r.stderr)
  assert.match(r.stdout.trim(), /^12D3KooW\w+$/)
  assert.is(statSync(join(dir, 'identity.key')).mode & 0o777, 0o600)
  const key = readFileSync(join(dir, 'identity.key'))
  const again = cli('init', '--data-dir', dir)
  assert.is(again.status, 0, again.stderr)
  assert.is(again.stdout.trim(), r.stdout.trim(), 'init again reprints the same peer id')
  assert.match(again.stderr, /already holds an identity \(kept, never overwritten\)/)
  assert.ok(readFileSync(join(dir, 'identity.key')).equals(key), 'the identity is never overwritten')
})

test('start without an identity or manifest: a clear message and exit code 78', () => {
  const r = cli('start', '--data-dir', join(root, 'nothing-here'))
  assert.is(r.status, 78)
  assert.match(r.stderr, /no identity in .* run 'medmesh init/)
  assert.ok(noStack(r.stderr))
  const dir = join(root, 'b')
  cli('init', '--data-dir', dir)
  const r2 = cli('start', '--data-dir', dir)
  assert.is(r2.status, 78)
  assert.match(r2.stderr, /no manifest/)
})

test('bad flags and bad values: usage errors (64) or configuration errors (78), never a stack trace', () => {
  const bad = cli('init', '--data-dir')
  assert.is(bad.status, 64)
  assert.is(cli('start', '--no-such-flag').status, 64)
  const m = cli('manifest', 'create', '--name', 'x', '--member', 'not-a-peer-id=h', '--member', 'also-not=h2', '--out', join(root, 'm.json'))
  assert.is(m.status, 78)
  assert.match(m.stderr, /Ed25519 libp2p peer id/)
  writeFileSync(join(root, 'junk.json'), '{ not json')
  const v = cli('manifest', 'verify', join(root, 'junk.json'))
  assert.is(v.status, 78)
  assert.match(v.stderr, /not valid JSON/)
  const fmt = cli('start', '--data-dir', join(root, 'a'), '--log-format', 'xml')
  assert.is(fmt.status, 64) // a bad flag value is a usage error; the same in config.json is a configuration error (78)
  assert.match(fmt.stderr, /--log-format must be auto, pretty or json, got 'xml'/)
  // a boolean setting has a negative flag (it parses: the error is the next one, the log format's)
  const negative = cli('start', '--data-dir', join(root, 'a'), '--no-check-aggregates', '--log-format', 'xml')
  assert.is(negative.status, 64)
  assert.match(negative.stderr, /--log-format must be auto/)
  const valued = cli('start', '--data-dir', join(root, 'a'), '--check-aggregates=yes')
  assert.is(valued.status, 64)
  for (const r of [bad, m, v, fmt, negative, valued]) assert.ok(noStack(r.stderr), r.stderr)
})

test('a manifest missing a founder\'s signature is refused by join', () => {
  const dirs = ['c', 'd'].map(n => join(root, n))
  const ids = dirs.map(d => cli('init', '--data-dir', d).stdout.trim())
  const file = join(root, 'two.json')
  assert.is(cli('manifest', 'create', '--name', 'two', ...ids.flatMap((id, i) => ['--member', `${id}=h${i}`]), '--out', file, '--epochs', '2', '--batch-size', '16', '--class-weighting', 'none').status, 0)
  const params = JSON.parse(readFileSync(file, 'utf8')).manifest.params
  assert.equal(params.training, { schedule: 'constant', rounds: 10, epochs: 2, batchSize: 16, learningRate: RECIPE.learningRate, classWeighting: 'none', priorCorrection: 'pooled', ...DEFAULT_GUARDS, minSteps: RECIPE.minSteps, augmentation: 'xray' })
  // what the founders did not say is the measured recipe (recipe.ts), as the simulator runs it
  assert.equal([params.aggregation.rule, params.aggregation.beta1], [RECIPE.aggregation, RECIPE.momentum])
  const dpFile = join(root, 'two-dp.json')
  assert.is(cli('manifest', 'create', '--name', 'two', ...ids.flatMap((id, i) => ['--member', `${id}=h${i}`]), '--out', dpFile, '--dp-epsilon', '8', '--momentum', '0.5').status, 0)
  const dp = JSON.parse(readFileSync(dpFile, 'utf8')).manifest.params
  // no minimum of local steps under DP: each step spends budget
  assert.equal([dp.training.epochs, dp.training.batchSize, dp.training.learningRate, dp.training.priorCorrection, dp.training.minSteps, dp.aggregation.rule, dp.aggregation.beta1, dp.dp.clipNorm],
    [DP_RECIPE.epochs, DP_RECIPE.batchSize, DP_RECIPE.learningRate, undefined, undefined, DP_RECIPE.aggregation, 0.5, DP_RECIPE.dpClip])
  const own = join(root, 'two-own.json')
  assert.is(cli('manifest', 'create', '--name', 'two', ...ids.flatMap((id, i) => ['--member', `${id}=h${i}`]), '--out', own, '--min-steps', '0').status, 0)
  assert.is(JSON.parse(readFileSync(own, 'utf8')).manifest.params.training.minSteps, undefined, '--min-steps 0: none')
  assert.is(cli('manifest', 'sign', '--data-dir', dirs[0], file).status, 0)
  const j = cli('join', '--data-dir', dirs[0], '--manifest', file)
  assert.is(j.status, 78)
  assert.match(j.stderr, /lacks a signature from member/)
  assert.is(cli('manifest', 'sign', '--data-dir', dirs[1], file).status, 0)
  const badBoot = cli('join', '--data-dir', dirs[0], '--manifest', file, '--bootstrap', '/ip4/127.0.0.1/tcp/1')
  assert.is(badBoot.status, 64)
  assert.match(badBoot.stderr, /must end in \/p2p\//)
  const ok = cli('join', '--data-dir', dirs[0], '--manifest', file, '--http', '127.0.0.1:0')
  assert.is(ok.status, 0, ok.stderr)
  assert.equal(JSON.parse(readFileSync(join(dirs[0], 'config.json'), 'utf8')), { http: '127.0.0.1:0' })
  assert.match(ok.stdout, /dataset checked: 5856 images of 28×28×1, classes normal, pneumonia/)

  // the dataset is checked at join: missing, unreadable, or of other channels or classes than the manifest's
  const missing = cli('join', '--data-dir', dirs[1], '--manifest', file, '--dataset', join(root, 'no-such.npz'))
  assert.is(missing.status, 78)
  assert.match(missing.stderr, /dataset .*no-such\.npz does not exist/)
  writeFileSync(join(root, 'junk.npz'), 'not a zip')
  const junk = cli('join', '--data-dir', dirs[1], '--manifest', file, '--dataset', join(root, 'junk.npz'))
  assert.is(junk.status, 78)
  assert.match(junk.stderr, /dataset .*junk\.npz cannot be read/)
  const colour = cli('join', '--data-dir', dirs[1], '--manifest', file, '--dataset', RETINA)
  assert.is(colour.status, 78)
  assert.match(colour.stderr, /3 channel\(s\) \(colour\); the consortium's model takes 1/)
  // class names in the manifest: a dataset that names its classes otherwise is refused
  const named = join(root, 'named.json')
  assert.is(cli('manifest', 'create', '--name', 'named', ...ids.flatMap((id, i) => ['--member', `${id}=h${i}`]), '--out', named, '--class-names', 'pneumonia,normal').status, 0)
  assert.equal(JSON.parse(readFileSync(named, 'utf8')).manifest.params.model.classNames, ['pneumonia', 'normal'])
  for (const d of dirs) assert.is(cli('manifest', 'sign', '--data-dir', d, named).status, 0)
  const swapped = cli('join', '--data-dir', dirs[1], '--manifest', named)
  assert.is(swapped.status, 78)
  assert.match(swapped.stderr, /names its classes normal, pneumonia; the consortium's model names them pneumonia, normal/)
  const three = cli('manifest', 'create', '--name', 'x', ...ids.flatMap((id, i) => ['--member', `${id}=h${i}`]), '--out', join(root, 'x.json'), '--classes', '3', '--class-names', 'a,b')
  assert.is(three.status, 78)
  assert.match(three.stderr, /classNames must be 3 names/)
  // sliced aggregation: slices and aggregators per slice in the manifest; more aggregators than the fewest participants refused
  const sliced = join(root, 'sliced.json')
  assert.is(cli('manifest', 'create', '--name', 'sliced', ...ids.flatMap((id, i) => ['--member', `${id}=h${i}`]), '--out', sliced, '--slices', '8').status, 0)
  assert.equal(JSON.parse(readFileSync(sliced, 'utf8')).manifest.params.slicing, { slices: 8, perSlice: 2 })
  const tooMany = cli('manifest', 'create', '--name', 'x', ...ids.flatMap((id, i) => ['--member', `${id}=h${i}`]), '--out', join(root, 'y.json'), '--slices', '8', '--per-slice', '3')
  assert.is(tooMany.status, 78)
  assert.match(tooMany.stderr, /params\.slicing\.perSlice/)
  const alone = cli('manifest', 'create', '--name', 'x', ...ids.flatMap((id, i) => ['--member', `${id}=h${i}`]), '--out', join(root, 'z.json'), '--per-slice', '2')
  assert.is(alone.status, 64)
  assert.match(alone.stderr, /--per-slice goes with --slices/)
  for (const r of [missing, junk, colour, swapped, three, tooMany, alone]) assert.ok(noStack(r.stderr), r.stderr)
  assert.ok(!existsSync(join(dirs[1], 'config.json')), 'a refused join writes nothing')

  // a dataset gone after join: start says so with exit 78, not a raw ENOENT
  writeFileSync(join(dirs[0], 'config.json'), JSON.stringify({ http: 'off', dataset: join(root, 'moved-away.npz') }))
  const start = cli('start', '--data-dir', dirs[0])
  assert.is(start.status, 78, start.stderr)
  assert.match(start.stderr, /dataset .*moved-away\.npz does not exist/)
  assert.ok(noStack(start.stderr))

  // status without a running node: what the data directory holds
  const st = cli('status', '--data-dir', dirs[0], '--http', '127.0.0.1:1')
  assert.is(st.status, 69)
  const off = JSON.parse(st.stdout)
  assert.is(off.running, false)
  assert.is(off.peerId, ids[0])
  assert.equal([...off.consortium.members].sort(), ['h0', 'h1'], 'in the manifest\'s order (by peer id)')
  assert.is(off.ledger.certified, 0)
  assert.is(off.ledger.head, null)
})

test('configuration layers: file < environment < flags', () => {
  const dir = join(root, 'layers')
  cli('init', '--data-dir', dir)
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ http: '127.0.0.1:1111', epochs: 2, rounds: 3 }))
  const c = resolveConfig(dir, { rounds: 7 }, { MEDMESH_HTTP: '127.0.0.1:2222', MEDMESH_EPOCHS: '4' })
  assert.is(c.http, '127.0.0.1:2222')
  assert.is(c.epochs, 4)
  assert.is(c.rounds, 7)
  throwsA(() => resolveConfig(dir, { epochs: -1 }, {}), ConfigError, /epochs/)
  throwsA(() => resolveConfig(dir, { simulationSeed: 'not hex' }, {}), ConfigError, /simulationSeed/)
  assert.is(c.checkAggregates, false, 'a node checks its aggregators\' slices by their signatures unless asked')
  assert.is(resolveConfig(dir, {}, { MEDMESH_CHECK_AGGREGATES: 'true' }).checkAggregates, true)
  assert.is(resolveConfig(dir, { checkAggregates: false }, { MEDMESH_CHECK_AGGREGATES: '1' }).checkAggregates, false)
  throwsA(() => resolveConfig(dir, {}, { MEDMESH_CHECK_AGGREGATES: 'maybe' }), ConfigError, /MEDMESH_CHECK_AGGREGATES must be true or false/)
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ checkAggregates: 'yes' }))
  throwsA(() => resolveConfig(dir, {}, {}), ConfigError, /checkAggregates must be true or false/)
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ colour: 'blue' }))
  throwsA(() => resolveConfig(dir, {}, {}), ConfigError, /unknown setting 'colour'/)
})

test('the local recipe comes from the manifest; a node\'s own epochs, batch size or learning rate override it with a warning', async () => {
  const { localRecipe } = await import('../../src/node/site.ts')
  const { defaultParams } = await import('../../src/protocol/manifest.ts')
  const manifest = { version: 1 as const, name: 'c', members: [], params: defaultParams(3, 10, '0'.repeat(64)) }
  manifest.params.training = { ...manifest.params.training, epochs: 2, batchSize: 16, learningRate: 0.01, classWeighting: 'none' }
  const plain = localRecipe(manifest, { epochs: null, batchSize: null, learningRate: null })
  assert.equal(plain, { recipe: { epochs: 2, batchSize: 16, learningRate: 0.01, classWeighting: 'none', priorCorrection: 'none', ...DEFAULT_GUARDS }, overrides: [] })
  const own = localRecipe(manifest, { epochs: 0.5, batchSize: 16, learningRate: null })
  assert.equal(own.recipe, { epochs: 0.5, batchSize: 16, learningRate: 0.01, classWeighting: 'none', priorCorrection: 'none', ...DEFAULT_GUARDS })
  // the prior correction is the consortium's too
  assert.is(localRecipe({ ...manifest, params: { ...manifest.params, training: { ...manifest.params.training, priorCorrection: 'pooled' } } }, { epochs: null, batchSize: null, learningRate: null }).recipe.priorCorrection, 'pooled')
  assert.is(own.overrides.length, 1)
  assert.match(own.overrides[0], /epochs 0\.5, not the consortium's 2/)
  // the consortium's minimum of local steps is the recipe's; a node's own epochs say exactly how much it trains
  const floored = { ...manifest, params: { ...manifest.params, training: { ...manifest.params.training, minSteps: 40 } } }
  assert.is(localRecipe(floored, { epochs: null, batchSize: null, learningRate: null }).recipe.minSteps, 40)
  const ownFloored = localRecipe(floored, { epochs: 0.5, batchSize: null, learningRate: null })
  assert.is(ownFloored.recipe.minSteps, undefined)
  assert.match(ownFloored.overrides.join('\n'), /without the consortium's minimum of 40 steps/)
})

test('a simulation seed makes a node\'s randomness repeat, with a warning; without one, the CSPRNG and the node\'s key', async () => {
  const { nodeRandomness } = await import('../../src/node/site.ts')
  const { systemRandom } = await import('../../src/privacy/index.ts')
  const { recordingLogger } = await import('./services/stubs.ts')
  const key = new Uint8Array(64).fill(7)
  const seed = 'ab'.repeat(32)
  const draw = () => { const { log, lines } = recordingLogger(); const r = nodeRandomness({ simulationSeed: seed }, key, log); const b = new Uint8Array(16); r.rng.fill(b); return { bytes: Array.from(b), training: Array.from(r.trainingSeed), lines } }
  const [a, b] = [draw(), draw()]
  assert.equal(a.bytes, b.bytes)
  assert.equal(a.training, b.training)
  assert.not.equal(a.training, Array.from(key.slice(0, 32)))
  assert.ok(a.lines.some(l => l.level === 'warn' && /simulations only/.test(l.msg)))
  const { log, lines } = recordingLogger()
  const real = nodeRandomness({ simulationSeed: null }, key, log)
  assert.is(real.rng, systemRandom)
  assert.equal(Array.from(real.trainingSeed), Array.from(key.slice(0, 32)))
  assert.is(lines.length, 0)
})

test('status with no node running: exit 69 and a message', () => {
  const r = cli('status', '--http', '127.0.0.1:1')
  assert.is(r.status, 69)
  assert.match(r.stderr, /no node answers/)
})

test('the CLI\'s list of model names is the training module\'s', async () => {
  const { MODEL_IDS } = await import('../../src/training/models.ts')
  const help = cli('manifest', '--help').stdout
  for (const id of MODEL_IDS) assert.ok(help.includes(id), id)
  assert.match(help, new RegExp(MODEL_IDS.join(' \\| ').replace(/\//g, '\\/')))
})

test('a restart removes the temporary files an interrupted write left, and nothing else', async () => {
  const { DataDir } = await import('../../src/node/datadir.ts')
  const { atomicWrite } = await import('../../src/node/fsutil.ts')
  const { mkdirSync, existsSync } = await import('node:fs')
  const dir = join(root, 'crashed')
  mkdirSync(join(dir, 'ledger'), { recursive: true })
  atomicWrite(join(dir, 'round.json'), '{}')
  writeFileSync(join(dir, '.round.json.abc123.tmp'), '{"half')
  writeFileSync(join(dir, 'ledger', '.0000000001.cert.def456.tmp'), 'half')
  assert.is(new DataDir(dir).removeTemporaryFiles(), 2)
  assert.ok(existsSync(join(dir, 'round.json')))
  assert.not.ok(existsSync(join(dir, '.round.json.abc123.tmp')))
})

test.after(() => rmSync(root, { recursive: true, force: true }))
test('manifest create --select with widths: each other width pinned by its model\'s size and initial hash; a width the model lacks, or given weights, refused', async () => {
  const dirs = ['w1', 'w2'].map(n => join(root, n))
  const ids = dirs.map(d => cli('init', '--data-dir', d).stdout.trim())
  const members = ids.flatMap((id, i) => ['--member', `${id}=h${i}`])
  const file = join(root, 'widths.json')
  const made = cli('manifest', 'create', '--name', 'w', ...members, '--out', file, '--select', '1e-3,1e-3::0.5,3e-3:1:2')
  assert.is(made.status, 0, made.stderr)
  const params = JSON.parse(readFileSync(file, 'utf8')).manifest.params
  const { buildModel, flattenWeights } = await import('../../src/training/models.ts')
  await (await import('../../src/training/backend.ts')).selectBackend('auto')
  const { initialHashOf } = await import('../../src/node/initial-weights.ts')
  const half = buildModel({ id: 'medmesh/cnn-small', height: 28, width: 28, channels: 1, classes: 2, seed: 1, widthFactor: 0.5 })
  const w = flattenWeights(half); half.dispose()
  assert.equal(params.selection.candidates[0], { learningRate: 1e-3, epochs: RECIPE.epochs })
  assert.equal(params.selection.candidates[1], { learningRate: 1e-3, epochs: RECIPE.epochs, width: 0.5, size: w.length, initialHash: initialHashOf(w) })
  assert.ok(params.selection.candidates[2].size > params.model.size, 'twice the width, more weights')
  const he = cli('manifest', 'create', '--name', 'w', ...members, '--out', join(root, 'never.json'), '--model', 'medmesh/he-cnn', '--select', '1e-3,1e-3::2')
  assert.is(he.status, 78); assert.match(he.stderr, /recipe selection: medmesh\/he-cnn has no width to scale/)
  const odd = cli('manifest', 'create', '--name', 'w', ...members, '--out', join(root, 'never.json'), '--select', '1e-3,1e-3::0.3')
  assert.is(odd.status, 78); assert.match(odd.stderr, /multiple of 0\.25/)
  const folder = join(root, 'given-w'); mkdirSync(folder)
  writeFileSync(join(folder, 'weights.bin'), new Uint8Array(new Float32Array(params.model.size).fill(0.01).buffer))
  const given = cli('manifest', 'create', '--name', 'w', ...members, '--out', join(root, 'never.json'), '--init', folder, '--select', '1e-3,1e-3::2')
  assert.is(given.status, 78); assert.match(given.stderr, /cannot try other widths/)
  assert.not.ok(existsSync(join(root, 'never.json')))
})

test('manifest create --init: the consortium starts from given weights, pinned by hash; join needs the same file and keeps it', () => {
  const dirs = ['i1', 'i2'].map(n => join(root, n))
  const ids = dirs.map(d => cli('init', '--data-dir', d).stdout.trim())
  const members = ids.flatMap((id, i) => ['--member', `${id}=h${i}`])
  const seeded = join(root, 'seeded.json')
  assert.is(cli('manifest', 'create', '--name', 's', ...members, '--out', seeded).status, 0)
  const size: number = JSON.parse(readFileSync(seeded, 'utf8')).manifest.params.model.size
  const folder = join(root, 'previous-model'); mkdirSync(folder)
  const weights = Float32Array.from({ length: size }, (_, i) => Math.sin(i) / 10)
  writeFileSync(join(folder, 'weights.bin'), new Uint8Array(weights.buffer))
  const short = join(root, 'short.bin'); writeFileSync(short, new Uint8Array(weights.buffer, 0, 4 * (size - 1)))
  const wrongSize = cli('manifest', 'create', '--name', 'g', ...members, '--out', join(root, 'never.json'), '--init', short)
  assert.is(wrongSize.status, 78); assert.match(wrongSize.stderr, new RegExp(`holds ${size - 1} weights; medmesh/cnn-small at 28 px, 1 channel\\(s\\), 2 classes has ${size}`))
  const given = join(root, 'given.json')
  assert.is(cli('manifest', 'create', '--name', 'g', ...members, '--out', given, '--init', folder).status, 0)
  const model = JSON.parse(readFileSync(given, 'utf8')).manifest.params.model
  assert.match(model.init, /^weights from weights\.bin \(sha256 [0-9a-f]{16}…\)$/)
  assert.is.not(model.initialHash, JSON.parse(readFileSync(seeded, 'utf8')).manifest.params.model.initialHash)
  for (const f of [given, seeded]) for (const d of dirs) assert.is(cli('manifest', 'sign', '--data-dir', d, f).status, 0)
  const without = cli('join', '--data-dir', dirs[0], '--manifest', given)
  assert.is(without.status, 78); assert.match(without.stderr, /starts from weights from weights\.bin .*: give that file with --init/)
  const otherFile = join(root, 'other.bin'); const other = Float32Array.from(weights); other[5] += 0.5
  writeFileSync(otherFile, new Uint8Array(other.buffer))
  const wrong = cli('join', '--data-dir', dirs[0], '--manifest', given, '--init', otherFile)
  assert.is(wrong.status, 78); assert.match(wrong.stderr, /other\.bin are not the consortium's initial weights/)
  assert.not.ok(existsSync(join(dirs[0], 'manifest.json')), 'nothing is kept from a refused join')
  const ok = cli('join', '--data-dir', dirs[0], '--manifest', given, '--init', folder)
  assert.is(ok.status, 0, ok.stderr)
  assert.ok(readFileSync(join(dirs[0], 'initial-weights.bin')).equals(readFileSync(join(folder, 'weights.bin'))))
  const notForIt = cli('join', '--data-dir', dirs[1], '--manifest', seeded, '--init', folder)
  assert.is(notForIt.status, 78); assert.match(notForIt.stderr, /builds its initial weights from its seed: --init is not for it/)
})

test.run()
