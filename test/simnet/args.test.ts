/** simnet's flags: their defaults and recipes, and every bad one a UsageError, which `medmesh simnet` turns into exit 64. */
import { test } from 'uvu'
import { DEFAULT_GUARDS } from '../../src/protocol/manifest.ts'
import * as assert from 'uvu/assert'
import { parseSimnetArgs, slicingOf, RECIPE, DP_RECIPE, type SimnetOptions } from '../../scripts/simnet/args.ts'
import { UsageError, EXIT } from '../../src/cli/main.ts'
import { main } from '../../src/cli/index.ts'
import { defaultSlicing } from '../../src/protocol/manifest.ts'

const run = (args: string[]): SimnetOptions => {
  const c = parseSimnetArgs(args)
  if (c.kind !== 'run') throw new Error(`expected a run, got ${c.kind}`)
  return c.options
}

/** parsing `args` throws a UsageError whose message matches `message` */
const refused = (args: string[], message: RegExp): void => {
  try {
    parseSimnetArgs(args)
  } catch (e) {
    assert.instance(e, UsageError, `${args.join(' ')}: ${String(e)}`)
    assert.match((e as Error).message, message)
    return
  }
  assert.unreachable(`${args.join(' ')} was accepted`)
}

test('defaults: five hospitals, ten rounds over TCP, the recipe without DP, sliced aggregation as a consortium of five gets it', () => {
  const o = run([])
  assert.is(o.n, 5); assert.is(o.rounds, 10); assert.is(o.seed, 1); assert.is(o.transport, 'tcp'); assert.is(o.partition, 'dirichlet'); assert.is(o.alpha, 1)
  assert.equal(o.training, { schedule: 'constant', rounds: 10, epochs: Number(RECIPE.epochs), batchSize: Number(RECIPE['batch-size']), learningRate: Number(RECIPE['learning-rate']), classWeighting: 'balanced', priorCorrection: 'pooled', ...DEFAULT_GUARDS, minSteps: Number(RECIPE['min-steps']) })
  assert.equal(o.aggregation, { rule: RECIPE.aggregation, serverLr: 1, beta1: Number(RECIPE.momentum) })
  assert.equal(o.schedule, { kind: 'constant' })
  assert.is(o.dp, null)
  assert.equal(o.slicing, defaultSlicing(5))
  assert.is(o.killAt, null); assert.is(o.malicious, false); assert.is(o.bandwidthBytesPerMs, undefined)
  assert.is(o.baselines, 'all')
  assert.is(run(['--no-baselines']).baselines, 'none'); assert.is(run(['--baselines', 'centralised']).baselines, 'centralised')
  refused(['--baselines', 'some'], /--baselines must be/)
  assert.is(o.init, null, 'initial weights from the seed unless --init')
  assert.is(run(['--init', 'previous/weights.bin']).init, 'previous/weights.bin')
  assert.is(o.outDir, 'reports/simnet-1')
  assert.equal(o.args, [])
})

test('--dp-epsilon brings the DP recipe; a flag given wins over either recipe', () => {
  const o = run(['--dp-epsilon', '8'])
  assert.equal(o.dp, { epsilon: 8, noise: 0, clip: Number(DP_RECIPE['dp-clip']) })
  assert.is(o.training.batchSize, Number(DP_RECIPE['batch-size']))
  assert.is(o.aggregation.rule, DP_RECIPE.aggregation)
  assert.is(o.training.priorCorrection, undefined, 'the DP recipe has no prior correction')
  assert.is(o.training.minSteps, undefined, 'nor a minimum of local steps')
  const given = run(['--dp-epsilon', '8', '--batch-size', '64', '--dp-noise', '1.1', '--aggregation', 'fedadam', '--lr-schedule', 'cosine', '--prior-correction', 'pooled'])
  assert.is(given.training.batchSize, 64); assert.is(given.dp!.noise, 1.1); assert.is(given.aggregation.rule, 'fedadam')
  assert.equal(given.schedule, { kind: 'cosine', rounds: 10 })
  assert.is(given.training.priorCorrection, 'pooled')
  assert.is(run(['--prior-correction', 'none']).training.priorCorrection, undefined, 'the flag turns the recipe\'s prior correction off')
  assert.is(run(['--min-steps', '0']).training.minSteps, undefined, '--min-steps 0: none')
  assert.is(run(['--min-steps', '12']).training.minSteps, 12)
})

test('slicing: --slices 0 is all-to-all, --per-slice only with --slices and at most the hospitals, 2 aggregators unless given', () => {
  assert.is(run(['--slices', '0']).slicing, null)
  assert.equal(run(['--slices', '16']).slicing, { slices: 16, perSlice: 2 })
  assert.equal(run(['--nodes', '6', '--slices', '16', '--per-slice', '3']).slicing, { slices: 16, perSlice: 3 })
  assert.is(run(['--nodes', '3']).slicing, defaultSlicing(3))
  assert.is(slicingOf(undefined, undefined, 4), null)
  refused(['--per-slice', '3'], /--per-slice goes with --slices/)
  refused(['--slices', '257'], /--slices must be a whole number in \[1, 256\]/)
  refused(['--slices', '1.5'], /--slices/)
  refused(['--nodes', '3', '--slices', '8', '--per-slice', '4'], /--per-slice must be a whole number in \[2, nodes\]/)
  refused(['--slices', '8', '--per-slice', '1'], /--per-slice/)
})

test('every bad flag is a UsageError that names it', () => {
  const cases: Array<[string[], RegExp]> = [
    [['--nodes', '1'], /--nodes/], [['--nodes', '65'], /--nodes/], [['--nodes', 'five'], /--nodes/],
    [['--rounds', '0'], /--rounds/], [['--seed', '-1'], /--seed/], [['--seed', 'x'], /--seed/],
    [['--model', 'resnet'], /--model must be one of/], [['--transport', 'udp'], /--transport must be tcp or memory/],
    [['--partition', 'random'], /--partition must be iid or dirichlet/], [['--alpha', '0'], /--alpha/],
    [['--size', '4'], /--size/], [['--channels', '2'], /--channels/],
    [['--lr-schedule', 'linear'], /--lr-schedule must be constant, cosine or step/],
    [['--class-weighting', 'inverse'], /--class-weighting must be balanced or none/],
    [['--prior-correction', 'yes'], /--prior-correction must be none or pooled/],
    [['--aggregation', 'median'], /--aggregation must be one of fedavg, fedavgm, fedadam/],
    [['--learning-rate', '0'], /--learning-rate/], [['--epochs', '0'], /--epochs/], [['--batch-size', '0.5'], /--batch-size/],
    [['--server-lr', '0'], /--server-lr/], [['--momentum', '1'], /--momentum/],
    [['--dp-epsilon', '0'], /--dp-epsilon/], [['--dp-noise', '-1'], /--dp-noise/], [['--dp-clip', '0'], /--dp-clip/],
    [['--training-workers', '0'], /--training-workers/], [['--patience', '-1'], /--patience/], [['--min-steps', '2.5'], /--min-steps/],
    [['--dropout', '1'], /--dropout/], [['--kill-at', '11'], /--kill-at/], [['--rounds', '3', '--kill-at', '0'], /--kill-at/],
    [['--transport', 'memory', '--latency', '-5'], /--latency/], [['--transport', 'memory', '--bandwidth', '0'], /--bandwidth/],
    [['--malicious'], /need control of the wire/], [['--latency', '10'], /--transport memory/],
    [['--repeat', '1'], /--repeat/], [['--repeat', '101'], /--repeat/],
    [['--compare', 'a'], /--compare takes two report folders/], [['stray'], /unexpected argument 'stray'/],
    [['--no-such-flag'], /no-such-flag/], [['--nodes'], /nodes/],
    [['--select', '1e-3,1e-3::0.3'], /width must be a multiple of 0\.25/], [['--init', 'w.bin', '--select', '1e-3,1e-3::2'], /--init gives weights of the model's own width/]
  ]
  for (const [args, message] of cases) refused(args, message)
  // the wire's faults over the in-memory network are fine
  assert.ok(run(['--transport', 'memory', '--malicious', '--latency', '10', '--bandwidth', '100']).malicious)
  assert.equal(run(['--select', '1e-3,1e-3::0.5']).selection?.candidates[1], { learningRate: 1e-3, epochs: Number(RECIPE.epochs), width: 0.5 }, 'widths are sized once the model is built')
})

test('--compare and --repeat: the two report folders; K seeds from --seed into --out', () => {
  assert.equal(parseSimnetArgs(['--compare', 'x', 'y']), { kind: 'compare', a: 'x', b: 'y' })
  assert.equal(parseSimnetArgs(['--repeat', '3', '--seed', '7']), { kind: 'repeat', times: 3, seed: 7, outDir: 'reports/simnet-repeat-7' })
  assert.equal(parseSimnetArgs(['--repeat', '2', '--out', 'o']), { kind: 'repeat', times: 2, seed: 1, outDir: 'o' })
})

test('medmesh simnet exits 64 on a usage error, with the message and where to find the usage', async () => {
  for (const args of [['--nodes', '1'], ['--per-slice', '3'], ['--bogus'], ['--compare', 'only-one'], ['--malicious']]) {
    const err: string[] = []
    const code = await main(['simnet', ...args], () => {}, s => err.push(s))
    assert.is(code, EXIT.usage, `${args.join(' ')}: ${err.join('\n')}`)
    assert.match(err.join('\n'), /^medmesh simnet: .*\nRun 'medmesh simnet --help' for usage\./)
  }
  // a report folder that holds no report is a bad argument too
  const err: string[] = []
  assert.is(await main(['simnet', '--compare', '/nonexistent-a', '/nonexistent-b'], () => {}, s => err.push(s)), EXIT.usage, err.join('\n'))
})

test('over TCP the nodes train by the run\'s recipe: the manifest formed for them holds every setting of it, the flags\' and the defaults\'', async () => {
  const { manifestRecipe } = await import('../../scripts/simnet/processes.ts')
  const { createManifest } = await import('../../src/node/setup.ts')
  const { peerIdFromEd25519PublicKey } = await import('../../src/privacy/identity.ts')
  const { ed25519 } = await import('@noble/curves/ed25519.js')
  const { mkdtempSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const members = [1, 2, 3].map(i => ({ peerId: peerIdFromEd25519PublicKey(ed25519.getPublicKey(new Uint8Array(32).fill(i))), name: `h${i}` }))
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-simnet-recipe-'))
  for (const flags of [
    ['--augmentation', 'xray'],
    ['--prior-correction', 'none', '--min-steps', '0', '--warmup-steps', '0', '--clip-grad', '2', '--weight-decay', '0', '--augmentation', 'none', '--epochs', '3', '--batch-size', '8', '--lr-schedule', 'cosine']
  ]) {
    const o = run(flags)
    const { manifest } = await createManifest(join(dir, 'm.json'), { name: 'sim', members, ...manifestRecipe(o) })
    assert.equal(manifest.params.training, o.training, flags.join(' '))
    assert.equal([manifest.params.aggregation.rule, manifest.params.aggregation.beta1], [o.aggregation.rule, o.aggregation.beta1])
  }
})

test.run()
