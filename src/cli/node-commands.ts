/** The node's commands: init, manifest (create, sign, verify), join, start, status. */
import type { ParseArgsConfig } from 'node:util'
import { resolve } from 'node:path'
import { UsageError, EXIT, parseFlags } from './usage.ts'
import { DataDirError } from '../node/datadir.ts'
import { ConfigError, resolveConfig, DEFAULTS } from '../node/config.ts'
import { flagSpec, optionsHelp, settingsFromFlags, type NodeCommand, type NodeSettings } from '../node/options.ts'
import { isStorageError } from '../node/fsutil.ts'
import { AUGMENTATIONS, DEFAULT_GUARDS, ManifestError, slicingFromFlags } from '../protocol/manifest.ts'
import { DP_RECIPE, RECIPE, recipeFor } from '../protocol/recipe.ts'
import { selectionFromFlags } from '../protocol/selection.ts'
import * as setup from '../node/setup.ts'
import { AGGREGATION_RULES, MODEL_IDS } from '../node/setup.ts'
import { defaultModelFor } from '../training/model-ids.ts'
import type { ManifestOptions } from '../node/setup.ts'

type Out = (s: string) => void
const stdout: Out = s => process.stdout.write(s + '\n')

type Options = NonNullable<ParseArgsConfig['options']>
const DATA_DIR = { 'data-dir': { type: 'string' } } as const satisfies Options

/**
 * `command`'s flags: its node options (NODE_OPTIONS, options.ts) and `extra`. The node options'
 * values come back checked, by key (`settings`: only those given); an unknown flag, a missing value
 * or a value out of range is a UsageError naming the flag.
 */
export function parseNodeFlags<C extends NodeCommand, E extends Options> (command: C, args: string[], extra: E, allowPositionals = false) {
  // allowNegative: --no-check-aggregates turns off what config.json or the environment turned on
  const { values, positionals } = parseFlags({ args, options: { ...flagSpec(command), ...extra }, strict: true, allowPositionals, allowNegative: true })
  let settings: Partial<NodeSettings>
  try {
    settings = settingsFromFlags(command, values)
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message)
    throw e
  }
  return { values, positionals, settings }
}

function dataDirOf (v: string | undefined): string {
  if (v === undefined || v.length === 0) throw new UsageError('--data-dir is required')
  return resolve(v)
}

/** `v` if it is one of `allowed` (undefined if not given); a UsageError naming the flag otherwise. */
function oneOf<T extends string> (flag: string, v: string | undefined, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined
  const found = allowed.find(a => a === v)
  if (found === undefined) throw new UsageError(`--${flag} must be one of ${allowed.join(', ')}, got '${v}'`)
  return found
}

const NODE_OPTIONS_HEADER = 'Node options (a flag wins over its MEDMESH_* environment variable, which wins over DIR/config.json):'

/**
 * Known errors of configuration become exit code 78 with their message, storage errors 74
 * (`writing` names what was being written: the data directory unless told).
 */
export async function guarded (fn: () => Promise<number>, err: Out = s => process.stderr.write(s + '\n'), writing = 'the data directory'): Promise<number> {
  try {
    return await fn()
  } catch (e) {
    if (e instanceof ConfigError || e instanceof DataDirError || e instanceof ManifestError) { err(`medmesh: ${e.message}`); return EXIT.config }
    if (isStorageError(e)) {
      err(`medmesh: cannot write to ${writing}: ${(e as Error).message}`)
      return EXIT.ioError
    }
    throw e
  }
}

export const initHelp = `Usage: medmesh init --data-dir DIR

Create DIR and a new node identity (an Ed25519 key, mode 0600) in it; print the peer id.
On a DIR that already holds an identity, keep it (never overwritten) and print its peer id.`

export async function init (args: string[], out: Out = stdout): Promise<number> {
  const { values } = parseFlags({ args, options: DATA_DIR, strict: true })
  return await guarded(async () => {
    const dir = dataDirOf(values['data-dir'])
    const { identity, existed } = setup.init(dir)
    if (existed) process.stderr.write(`${dir} already holds an identity (kept, never overwritten); its peer id:\n`)
    out(identity.peerId)
    return EXIT.ok
  })
}

export const manifestHelp = `Usage:
  medmesh manifest create --name NAME --member PEERID=NAME [--member ...] --out FILE [options]
  medmesh manifest sign --data-dir DIR FILE
  medmesh manifest verify FILE

create options:
  --model ID              ${MODEL_IDS.join(' | ')} (default: medmesh/cnn-small up to
                          32 px, medmesh/cnn-gn-stem above)
  --seed N                seed of the initial weights (default 1)
  --init PATH             start from these weights instead (a weights.bin, or a folder 'medmesh export'
                          wrote: a previous consortium's model, or pretrained weights of the same model);
                          the manifest pins their hash and every member joins with the same file
  --image-size N          square input size (default 28)   --channels 1|3 (default 1)   --classes N (default 2)
  --class-names A,B,...   the classes' names in label order (a member whose data names them otherwise is refused)
  --inference-client PEERID=NAME
                          a peer outside the consortium (a clinic, from 'medmesh init') allowed to
                          query its model by encrypted inference (repeatable; members always may)
  --lr-schedule S         constant | cosine | step (default constant)   --schedule-rounds R (default 10)
  --epochs E              local epochs per round (default ${RECIPE.epochs}; with DP ${DP_RECIPE.epochs})   --batch-size B (default ${RECIPE.batchSize}; with DP ${DP_RECIPE.batchSize})
  --learning-rate LR      local Adam rate (default ${RECIPE.learningRate}; with DP ${DP_RECIPE.learningRate})   --class-weighting balanced|none (default balanced)
  --prior-correction none|pooled  each site's loss corrected for its class mix against the pooled one (default ${RECIPE.priorCorrection}; with DP ${DP_RECIPE.priorCorrection})
  --min-steps N           at least N local steps a round, a small hospital's epochs repeated (default ${RECIPE.minSteps}; with DP ${DP_RECIPE.minSteps}: none)
  --warmup-steps N        the learning rate grows linearly over each site's first N steps (default ${DEFAULT_GUARDS.warmupSteps}; 0: none)
  --clip-grad G           each step's gradient scaled down to global norm G, a guard against divergence (default ${DEFAULT_GUARDS.clipGradientNorm})
  --weight-decay W        decoupled weight decay of the kernels (default ${DEFAULT_GUARDS.weightDecay}; 0: none)
  --augmentation A        ${AUGMENTATIONS.join(' | ')}: augmentation for the modality (default: xray for grayscale, photo for colour)
  --patience P            stop after P eval rounds without a better validation AUC (default 0: never)
  --select C              federated recipe selection: candidates trained side by side, the worse half dropped
                          by pooled validation every R model rounds; C is 'default' (the learning rate, 3× and
                          ⅓ of it) or LR[:EPOCHS[:WIDTH]],... (WIDTH: the model's filters times this, a
                          multiple of 0.25; e.g. 1e-3,1e-3::0.5,1e-3::2)   --rung-rounds R (default 2)
  --threshold T           Shamir threshold (default: a majority)
  --quorum Q              signatures that certify a round (default: the threshold)
  --min-participants M    fewest inputs ever aggregated (default: the threshold)
  --phase-ms MS           phase timeout (default 10000)   --round-ms MS (default 120000)
  --aggregation RULE      ${AGGREGATION_RULES.join(' | ')} (default ${RECIPE.aggregation}; with DP ${DP_RECIPE.aggregation})   --server-lr X (default 1)
  --momentum B            FedAvgM's momentum, FedAdam's β1 (default ${RECIPE.momentum}; with DP ${DP_RECIPE.momentum})
  --dp-epsilon E          turn on DP-SGD with this per-hospital ε budget
  --dp-delta D            (default 1e-5)   --dp-clip C (default ${DP_RECIPE.dpClip})
  --dp-noise SIGMA        noise multiplier; 0 (default): each hospital calibrates its own to spend
                          its budget over the planned rounds (--schedule-rounds)
  --slices S              sliced aggregation: each masked vector in S slices (at most 256), each
                          fetched, summed and unmasked only by its aggregators, so that a member's
                          traffic stays near a few model sizes whatever the consortium's size;
                          0: all-to-all, every member fetches every masked vector (default: 64
                          slices from 5 members, all-to-all below)
  --per-slice K           aggregators per slice, who must agree (default 2; at most --min-participants)

Every founding member signs the same file with 'manifest sign'; 'verify' prints the
consortium id once every member has signed.`

export async function manifest (args: string[], out: Out = stdout): Promise<number> {
  const [sub, ...rest] = args
  return await guarded(async () => {
    if (sub === 'create') return await manifestCreate(rest, out)
    if (sub === 'sign') {
      const { values, positionals } = parseFlags({ args: rest, options: DATA_DIR, strict: true, allowPositionals: true })
      if (positionals.length !== 1) throw new UsageError('give the manifest file to sign')
      const file = positionals[0]
      const r = setup.signManifest(dataDirOf(values['data-dir']), file)
      out(`signed ${file} as ${r.peerId} (${r.signed} of ${r.members} signatures)`)
      return EXIT.ok
    }
    if (sub === 'verify') {
      const { positionals } = parseFlags({ args: rest, options: {}, strict: true, allowPositionals: true })
      if (positionals.length !== 1) throw new UsageError('give the manifest file to verify')
      const { manifest: m, id } = setup.verifyManifest(positionals[0])
      out(`valid: consortium '${m.name}', ${m.members.length} members, id ${id}`)
      return EXIT.ok
    }
    throw new UsageError(`unknown manifest command '${String(sub)}': use create, sign or verify`)
  })
}

async function manifestCreate (args: string[], out: Out): Promise<number> {
  const { values } = parseFlags({ args, strict: true, options: {
    name: { type: 'string' }, member: { type: 'string', multiple: true }, 'inference-client': { type: 'string', multiple: true }, out: { type: 'string' }, model: { type: 'string' }, seed: { type: 'string' },
    'image-size': { type: 'string' }, classes: { type: 'string' }, 'class-names': { type: 'string' }, init: { type: 'string' }, threshold: { type: 'string' }, quorum: { type: 'string' }, 'min-participants': { type: 'string' },
    'phase-ms': { type: 'string' }, 'round-ms': { type: 'string' }, aggregation: { type: 'string' }, 'server-lr': { type: 'string' }, momentum: { type: 'string' },
    'dp-epsilon': { type: 'string' }, 'dp-delta': { type: 'string' }, 'dp-noise': { type: 'string' }, 'dp-clip': { type: 'string' },
    channels: { type: 'string' }, 'lr-schedule': { type: 'string' }, 'schedule-rounds': { type: 'string' }, patience: { type: 'string' },
    epochs: { type: 'string' }, 'batch-size': { type: 'string' }, 'learning-rate': { type: 'string' }, 'class-weighting': { type: 'string' }, 'prior-correction': { type: 'string' }, 'min-steps': { type: 'string' },
    'warmup-steps': { type: 'string' }, 'clip-grad': { type: 'string' }, 'weight-decay': { type: 'string' }, augmentation: { type: 'string' },
    slices: { type: 'string' }, 'per-slice': { type: 'string' }, select: { type: 'string' }, 'rung-rounds': { type: 'string' }
  } })
  if (values.name === undefined || values.out === undefined) throw new UsageError('--name and --out are required')
  const named = (flag: string, list: string[] | undefined) => (list ?? []).map(s => {
    const i = s.indexOf('=')
    if (i < 1) throw new UsageError(`--${flag} must be PEERID=NAME, got '${s}'`)
    return { peerId: s.slice(0, i), name: s.slice(i + 1) }
  })
  const members = named('member', values.member)
  const inferenceClients = named('inference-client', values['inference-client'])
  const num = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined) return undefined
    const n = Number(v)
    if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got '${v}'`)
    return n
  }
  const modelId = oneOf('model', values.model, MODEL_IDS) ?? defaultModelFor(num(values['image-size'], 'image-size') ?? 28)
  const eps = num(values['dp-epsilon'], 'dp-epsilon')
  // --slices 0: all-to-all; absent: the default for the consortium's size
  const sliced = slicingFromFlags(num(values.slices, 'slices'), num(values['per-slice'], 'per-slice'))
  if ('error' in sliced) throw new UsageError(sliced.error)
  const slicing = sliced.slicing
  const base = recipeFor(values['dp-epsilon'] !== undefined)
  const selected = selectionFromFlags(values.select, num(values['rung-rounds'], 'rung-rounds'), { learningRate: num(values['learning-rate'], 'learning-rate') ?? base.learningRate, epochs: num(values.epochs, 'epochs') ?? base.epochs })
  if ('error' in selected) throw new UsageError(selected.error)
  const options: ManifestOptions = {
    name: values.name, members, model: modelId, seed: num(values.seed, 'seed'), imageSize: num(values['image-size'], 'image-size'), classes: num(values.classes, 'classes'),
    classNames: values['class-names'] === undefined ? undefined : values['class-names'].split(',').map(s => s.trim()), inferenceClients,
    channels: num(values.channels, 'channels'), schedule: oneOf('lr-schedule', values['lr-schedule'], ['constant', 'cosine', 'step']), scheduleRounds: num(values['schedule-rounds'], 'schedule-rounds'), patience: num(values.patience, 'patience'),
    epochs: num(values.epochs, 'epochs'), batchSize: num(values['batch-size'], 'batch-size'), learningRate: num(values['learning-rate'], 'learning-rate'), classWeighting: oneOf('class-weighting', values['class-weighting'], ['balanced', 'none']), priorCorrection: oneOf('prior-correction', values['prior-correction'], ['none', 'pooled']),
    minSteps: num(values['min-steps'], 'min-steps'), warmupSteps: num(values['warmup-steps'], 'warmup-steps'), clipGradientNorm: num(values['clip-grad'], 'clip-grad'), weightDecay: num(values['weight-decay'], 'weight-decay'), augmentation: oneOf('augmentation', values.augmentation, AUGMENTATIONS),
    threshold: num(values.threshold, 'threshold'), quorum: num(values.quorum, 'quorum'), minParticipants: num(values['min-participants'], 'min-participants'),
    phaseMs: num(values['phase-ms'], 'phase-ms'), roundMs: num(values['round-ms'], 'round-ms'), aggregation: oneOf('aggregation', values.aggregation, AGGREGATION_RULES), serverLr: num(values['server-lr'], 'server-lr'), beta1: num(values.momentum, 'momentum'),
    dp: eps === undefined ? undefined : { epsilon: eps, delta: num(values['dp-delta'], 'dp-delta'), noise: num(values['dp-noise'], 'dp-noise'), clip: num(values['dp-clip'], 'dp-clip') },
    slicing, selection: selected.selection ?? undefined, init: values.init
  }
  const { manifest: m, parameters } = await setup.createManifest(values.out, options)
  out(`wrote ${values.out}: consortium '${m.name}', ${m.members.length} members, model ${modelId} (${parameters} parameters); each member now signs it`)
  return EXIT.ok
}

export const joinHelp = `Usage: medmesh join --data-dir DIR --manifest FILE [--init PATH] [--bootstrap MULTIADDR ...] [node options]

Join a consortium: check the signed manifest (every founder's signature, and that this node is a
member) and the dataset (it exists, loads, and its channels and classes are the manifest's), store it in DIR, and write DIR/config.json with the options given, for 'medmesh start'.
Where the manifest's model starts from weights given as a file (manifest create --init), give the
same file with --init PATH: it is checked against the manifest's hash and kept in DIR.

${NODE_OPTIONS_HEADER}
${optionsHelp('join')}`

export async function join (args: string[], out: Out = stdout): Promise<number> {
  const { values, settings } = parseNodeFlags('join', args, { ...DATA_DIR, manifest: { type: 'string' }, init: { type: 'string' } })
  return await guarded(async () => {
    const dataDir = dataDirOf(values['data-dir'])
    if (values.manifest === undefined) throw new UsageError('--manifest is required')
    const { manifest: m, peerId, dataset } = setup.join(dataDir, values.manifest, settings, values.init)
    out(`dataset checked: ${dataset.images} images of ${dataset.size}, classes ${dataset.classes.join(', ')}`)
    out(`joined '${m.name}' (${m.members.length} members) as ${peerId}; run: medmesh start --data-dir ${dataDir}`)
    return EXIT.ok
  })
}

export const startHelp = `Usage: medmesh start --data-dir DIR [node options]

Run the node: verify the ledger, connect to members, catch up, and take part in rounds, with one
progress line per phase. Stops cleanly on SIGINT or SIGTERM (exit 0); on SIGHUP re-reads its deny
list (config 'deny', MEDMESH_DENY: members to refuse for now). If the data directory cannot
be written (full, read-only) it stops with exit 74, nothing half-written.

${NODE_OPTIONS_HEADER}
${optionsHelp('start')}`

export async function start (args: string[]): Promise<number> {
  const { values, settings } = parseNodeFlags('start', args, DATA_DIR)
  return await guarded(async () => {
    const config = resolveConfig(dataDirOf(values['data-dir']), settings)
    const { MedmeshNode } = await import('../node/node.ts')
    const node = await MedmeshNode.start(config)
    const stop = (): void => { void node.stop() }
    const reload = (): void => node.reloadDenyList()
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
    process.on('SIGHUP', reload)
    await node.stopped
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
    process.off('SIGHUP', reload)
    const code = node.storageError !== null ? EXIT.ioError : EXIT.ok
    // a socket a peer never closed must not keep a stopped node's process alive (unref: only if something still holds it)
    setTimeout(() => process.exit(code), 300).unref()
    return code
  })
}

export const serveHelp = `Usage: medmesh serve --data-dir DIR [--inference-listen MULTIADDR ...] [--inference-per-minute N]

Serve encrypted inference of the consortium's chosen certified model (medmesh/he-cnn) from a
member's data directory, without taking part in rounds: for a consortium whose training is done,
or a member that keeps its inference apart from its training node. The listener's address
(its own peer id, DIR/inference.key) is printed; clients the manifest lists and members may ask.
Addresses and the rate default to the node's config (inferenceListen, inferencePerMinute); stops
on SIGINT or SIGTERM. 'medmesh start' serves the same while it trains, when inferenceListen is set.

Options:
${optionsHelp('serve', false)}`

export async function serve (args: string[], out: Out = stdout): Promise<number> {
  const { values, settings } = parseNodeFlags('serve', args, DATA_DIR)
  return await guarded(async () => {
    const dataDir = dataDirOf(values['data-dir'])
    const config = resolveConfig(dataDir, settings)
    if (config.inferenceListen.length === 0) throw new UsageError('give --inference-listen MULTIADDR (or set inferenceListen in the config)')
    const { DataDir } = await import('../node/datadir.ts')
    const { createLogger } = await import('../node/logger.ts')
    const { createInferenceHolder, servedModel } = await import('../node/inference/holder.ts')
    const manifest = new DataDir(dataDir).manifest()
    const served = servedModel(dataDir)
    if (typeof served === 'string') throw new ConfigError(served)
    const log = createLogger(config.logLevel, 'medmesh', config.logFormat)
    // the data directory is read again at most every 10 s: a node training beside it may certify a better model
    const holder = await createInferenceHolder({ dataDir, manifest, listen: config.inferenceListen, log, options: { perMinute: config.inferencePerMinute }, version: () => Math.floor(Date.now() / 10_000) })
    await holder.start()
    out(`serving round ${served.round} (state ${served.stateHash.slice(0, 16)}) of '${manifest.name}' on:`)
    for (const a of holder.addresses()) out(`  ${a}`)
    await new Promise<void>(resolve => { process.once('SIGINT', resolve); process.once('SIGTERM', resolve) })
    await holder.stop()
    return EXIT.ok
  })
}

export const statusHelp = `Usage: medmesh status [--http HOST:PORT | --data-dir DIR]

Ask a running node for its status (JSON from its local endpoint). When no node answers and
--data-dir is given, print what the data directory holds instead (peer id, consortium, ledger
head; "running": false) and exit 69.

Options:
${optionsHelp('status', false)}`

export async function status (args: string[], out: Out = stdout): Promise<number> {
  const { values, settings } = parseNodeFlags('status', args, DATA_DIR)
  return await guarded(async () => {
    const hostPort = settings.http ?? (values['data-dir'] !== undefined ? resolveConfig(dataDirOf(values['data-dir']), {}).http : DEFAULTS.http)
    try {
      const res = await fetch(`http://${hostPort}/status`, { signal: AbortSignal.timeout(5000) })
      out(await res.text())
      return res.ok ? EXIT.ok : EXIT.failure
    } catch (e) {
      process.stderr.write(`medmesh status: no node answers at ${hostPort} (${(e as Error).message})\n`)
      if (values['data-dir'] !== undefined) out(JSON.stringify(setup.offlineStatus(dataDirOf(values['data-dir'])), null, 2))
      return EXIT.unavailable
    }
  })
}
