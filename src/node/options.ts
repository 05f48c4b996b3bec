/**
 * The node's options, each defined once: one row of NODE_OPTIONS gives an option's key (in
 * config.json and NodeConfig), its command-line flag, its environment variable, its type, the values
 * it may take, its default and its help. From the table come NodeConfig's type, the defaults, the
 * reading and checking of every layer (config.ts: config.json < environment < flags), the
 * `node:util` parseArgs options of the commands that take node options, and their help text.
 * Adding an option is adding a row.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { BUNDLED_PNEUMONIAMNIST } from '../training/data/npz.ts'

/** A setting that cannot be used: exit code 78 on the command line (a bad flag is a usage error there, 64). */
export class ConfigError extends Error {
  constructor (message: string) { super(message); this.name = 'ConfigError' }
}

/** The commands that take node options as flags. */
export type NodeCommand = 'join' | 'start' | 'serve' | 'status'
const DEFAULT_COMMANDS = ['join', 'start'] as const satisfies readonly NodeCommand[]

interface Common {
  /** the key in config.json and NodeConfig */
  key: string
  /** the flag, without its dashes; null: set in config.json or the environment only */
  flag: string | null
  /** the environment variable */
  env: `MEDMESH_${string}`
  /** what the help calls the flag's value, e.g. MULTIADDR */
  value?: string
  help: string
  /** the default as the help says it, when the value itself does not say it well */
  defaultHelp?: string
  /** the commands whose flags include this one (default: join and start) */
  commands?: readonly NodeCommand[]
  /** a valid value other than the default (tests, and documentation of the row) */
  example: unknown
}

/** Text; `check` is what a value must satisfy, `must` what the message says it must be. */
interface TextRow extends Common { type: 'text', default: string | null, check: (v: string) => boolean, must: string, example: string }
/** A number (from its decimal text in the environment and on the command line) in [min, max]. */
interface NumberRow extends Common { type: 'number', integer: boolean, min: number, max?: number, default: number | null, example: number }
/** One of a few words. */
interface ChoiceRow extends Common { type: 'choice', values: readonly string[], default: string, example: string }
/** true or false; in the environment 1/true/yes or 0/false/no/''; on the command line --flag and --no-flag. */
interface BooleanRow extends Common { type: 'boolean', default: boolean, example: boolean }
/** A list: repeated flags, comma-separated in the environment, an array in config.json. */
interface ListRow extends Common { type: 'list', item: 'multiaddr' | 'peer-multiaddr' | 'peer-id', default: readonly string[], example: readonly string[] }

export type OptionRow = TextRow | NumberRow | ChoiceRow | BooleanRow | ListRow

const PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{40,60}$/
const EXAMPLE_PEER = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'

export const NODE_OPTIONS = [
  { key: 'listen', flag: 'listen', env: 'MEDMESH_LISTEN', type: 'list', item: 'multiaddr', value: 'MULTIADDR', default: ['/ip4/0.0.0.0/tcp/7651'], example: ['/ip4/127.0.0.1/tcp/9000'], help: 'an address to listen on for members' },
  { key: 'announce', flag: 'announce', env: 'MEDMESH_ANNOUNCE', type: 'list', item: 'multiaddr', value: 'MULTIADDR', default: [], defaultHelp: 'the listen addresses', example: ['/dns4/node.example.org/tcp/7651'], help: 'an address to tell members instead of the listen addresses, e.g. behind NAT' },
  { key: 'bootstrap', flag: 'bootstrap', env: 'MEDMESH_BOOTSTRAP', type: 'list', item: 'peer-multiaddr', value: 'MULTIADDR', default: [], defaultHelp: 'none', example: [`/ip4/10.0.0.2/tcp/7651/p2p/${EXAMPLE_PEER}`], help: 'a member\'s address ending in /p2p/<peer id>' },
  { key: 'http', flag: 'http', env: 'MEDMESH_HTTP', type: 'text', value: 'HOST:PORT', default: '127.0.0.1:7650', check: v => v === 'off' || /^[\w.-]+:\d{1,5}$/.test(v), must: 'be host:port or \'off\'', example: '127.0.0.1:8650', commands: ['join', 'start', 'status'], help: 'the status endpoint (/health /status /metrics); \'off\' to disable' },
  { key: 'dataset', flag: 'dataset', env: 'MEDMESH_DATASET', type: 'text', value: 'PATH', default: BUNDLED_PNEUMONIAMNIST, defaultHelp: 'the bundled PneumoniaMNIST', check: v => v.length > 0, must: 'be a path', example: 'data/site.npz', help: 'a MedMNIST .npz or a folder of images by class' },
  { key: 'shard', flag: 'shard', env: 'MEDMESH_SHARD', type: 'text', value: 'I/N', default: null, defaultHelp: 'the whole dataset', check: v => /^\d+\/\d+$/.test(v) && Number(v.split('/')[0]) < Number(v.split('/')[1]), must: 'look like i/n with i < n', example: '2/4', help: 'train on IID share I of N of the dataset, for simulations and demos on one file' },
  { key: 'epochs', flag: 'epochs', env: 'MEDMESH_EPOCHS', type: 'number', integer: false, min: 0.01, value: 'E', default: null, defaultHelp: 'the manifest\'s', example: 2, help: 'local epochs per round, overriding the manifest\'s recipe at this node for tests and a slow site, with a warning in the log' },
  { key: 'batchSize', flag: 'batch-size', env: 'MEDMESH_BATCH_SIZE', type: 'number', integer: true, min: 1, value: 'B', default: null, defaultHelp: 'the manifest\'s', example: 16, help: 'batch size, overriding the manifest\'s recipe at this node, with a warning in the log' },
  { key: 'learningRate', flag: 'learning-rate', env: 'MEDMESH_LEARNING_RATE', type: 'number', integer: false, min: 1e-9, value: 'LR', default: null, defaultHelp: 'the manifest\'s', example: 0.01, help: 'learning rate, overriding the manifest\'s recipe at this node, with a warning in the log' },
  { key: 'rounds', flag: 'rounds', env: 'MEDMESH_ROUNDS', type: 'number', integer: true, min: 0, value: 'N', default: 0, defaultHelp: '0: run until stopped', example: 3, help: 'stop after N certified model rounds' },
  { key: 'pskFile', flag: 'psk', env: 'MEDMESH_PSK_FILE', type: 'text', value: 'FILE', default: null, defaultHelp: 'none', check: v => v.length > 0, must: 'be a path', example: 'swarm.key', help: 'a libp2p pre-shared network key file, for @libp2p/pnet' },
  { key: 'logLevel', flag: 'log-level', env: 'MEDMESH_LOG_LEVEL', type: 'choice', values: ['debug', 'info', 'warn', 'error'], value: 'LEVEL', default: 'info', example: 'debug', commands: ['join', 'start', 'serve'], help: 'the least severe log lines written' },
  { key: 'logFormat', flag: 'log-format', env: 'MEDMESH_LOG_FORMAT', type: 'choice', values: ['auto', 'pretty', 'json'], value: 'F', default: 'auto', example: 'json', commands: ['join', 'start', 'serve'], help: 'log lines: pretty for people, json for one object per line, or auto: pretty on a terminal, JSON otherwise, e.g. under systemd or in a pipe' },
  { key: 'minPeers', flag: 'min-peers', env: 'MEDMESH_MIN_PEERS', type: 'number', integer: true, min: 0, value: 'N', default: 0, defaultHelp: '0: the threshold - 1', example: 2, help: 'members to wait for before the first round' },
  { key: 'deny', flag: null, env: 'MEDMESH_DENY', type: 'list', item: 'peer-id', default: [], defaultHelp: 'none', example: [EXAMPLE_PEER], help: 'members this node refuses to talk to for now, a quarantine; re-read on SIGHUP' },
  { key: 'simulationSeed', flag: null, env: 'MEDMESH_SIMULATION_SEED', type: 'text', default: null, defaultHelp: 'none', check: v => /^[0-9a-f]{64}$/.test(v), must: 'be 64 hex digits (simulations only)', example: 'ab'.repeat(32), help: 'simulations only: training, rounding, keys and masks follow from this public seed, so that a run repeats. Never on real data: whoever knows the seed can unmask this node\'s inputs' },
  { key: 'trainingWorkers', flag: 'training-workers', env: 'MEDMESH_TRAINING_WORKERS', type: 'number', integer: true, min: 1, max: 256, value: 'W', default: null, defaultHelp: 'one per core', example: 3, help: 'worker threads that train, each step\'s batch split among them' },
  { key: 'inferenceListen', flag: 'inference-listen', env: 'MEDMESH_INFERENCE_LISTEN', type: 'list', item: 'multiaddr', value: 'MULTIADDR', default: [], defaultHelp: 'not served', example: ['/ip4/0.0.0.0/tcp/7652'], commands: ['join', 'start', 'serve'], help: 'serve encrypted inference of the consortium\'s model on this address, with its own peer id, logged at start' },
  { key: 'inferencePerMinute', flag: 'inference-per-minute', env: 'MEDMESH_INFERENCE_PER_MINUTE', type: 'number', integer: true, min: 1, value: 'N', default: 60, example: 10, commands: ['join', 'start', 'serve'], help: 'queries each inference client may make a minute, opening a session counting ten' },
  { key: 'checkAggregates', flag: 'check-aggregates', env: 'MEDMESH_CHECK_AGGREGATES', type: 'boolean', default: false, example: true, help: 'in a sliced consortium, fetch every member\'s whole masked vector and sum it here, signing only a sum that matches: all-to-all traffic for this node. --no-check-aggregates overrides config.json and the environment' }
] as const satisfies readonly OptionRow[]

type Row = typeof NODE_OPTIONS[number]

/** The type of a row's value. */
type ValueOf<R> =
  R extends { type: 'list' } ? string[]
    : R extends { type: 'boolean' } ? boolean
      : R extends { type: 'choice', values: ReadonlyArray<infer V> } ? V
        : R extends { type: 'number', default: null } ? number | null
          : R extends { type: 'number' } ? number
            : R extends { type: 'text', default: null } ? string | null
              : string

/** Every option's value, typed from the table. */
export type NodeSettings = { [R in Row as R['key']]: ValueOf<R> }
export type OptionKey = keyof NodeSettings

/** A layer of settings before it is checked: config.json, or settings a program gives. */
export type SettingsLayer = Partial<Record<OptionKey, unknown>>

const ALL: readonly OptionRow[] = NODE_OPTIONS
const ROWS: ReadonlyMap<string, OptionRow> = new Map(ALL.map(r => [r.key, r]))

function copy<T> (v: T): T { return Array.isArray(v) ? [...v] as T : v }

/** The defaults, typed from the table (a fresh copy of each list). */
export function defaults (): NodeSettings {
  const out: Record<string, unknown> = {}
  for (const r of ALL) out[r.key] = copy(r.default)
  return out as NodeSettings
}

// ---- checking a value, named as the user gave it (a config.json key, an environment variable, a flag)

const words = (vs: readonly string[]): string => vs.length === 1 ? vs[0] : `${vs.slice(0, -1).join(', ')} or ${vs[vs.length - 1]}`

/** `v` as the row's type if it is one of its allowed values; otherwise a ConfigError naming `name`. */
export function checkValue (row: OptionRow, v: unknown, name: string): unknown {
  const shown = (x: unknown): string => typeof x === 'string' ? `'${x}'` : String(x)
  switch (row.type) {
    case 'text':
      if (v === null && row.default === null) return v
      if (typeof v !== 'string' || !row.check(v)) throw new ConfigError(`${name} must ${row.must}, got ${shown(v)}`)
      return v
    case 'number': {
      if (v === null && row.default === null) return v
      const problem = numberProblem(row, v)
      if (problem !== null) throw new ConfigError(`${name} must be ${problem}, got ${shown(v)}`)
      return v
    }
    case 'choice':
      if (typeof v !== 'string' || !row.values.includes(v)) throw new ConfigError(`${name} must be ${words(row.values)}, got ${shown(v)}`)
      return v
    case 'boolean':
      if (typeof v !== 'boolean') throw new ConfigError(`${name} must be true or false, got ${shown(v)}`)
      return v
    case 'list': {
      if (!Array.isArray(v) || v.some(x => typeof x !== 'string')) throw new ConfigError(`${name} must be a list of ${row.item === 'peer-id' ? 'peer ids' : 'multiaddrs'}`)
      for (const a of v as string[]) {
        if (row.item === 'peer-id') {
          if (!PEER_ID.test(a)) throw new ConfigError(`${name}: '${a}' is not a peer id`)
          continue
        }
        try { multiaddr(a) } catch { throw new ConfigError(`${name}: '${a}' is not a multiaddr`) }
        if (row.item === 'peer-multiaddr' && !a.includes('/p2p/')) throw new ConfigError(`${name} address '${a}' must end in /p2p/<peer id>`)
      }
      return [...v]
    }
  }
}

/** What a number of this row must be, if `v` is not one; null if it is. */
function numberProblem (row: NumberRow, v: unknown): string | null {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < row.min || (row.integer && !Number.isInteger(v))) return `${row.integer ? 'an integer' : 'a number'} >= ${row.min}`
  if (row.max !== undefined && v > row.max) return `at most ${row.max}`
  return null
}

/** A value from its text (an environment variable, a flag's string), then checked. */
export function valueFromText (row: OptionRow, text: string, name: string): unknown {
  switch (row.type) {
    case 'number': {
      const n = text.trim() === '' ? NaN : Number(text)
      const problem = numberProblem(row, n)
      if (problem !== null) throw new ConfigError(`${name} must be ${problem}, got '${text}'`)
      return n
    }
    case 'boolean': {
      const t = text.toLowerCase()
      if (['1', 'true', 'yes'].includes(t)) return true
      if (['0', 'false', 'no', ''].includes(t)) return false
      throw new ConfigError(`${name} must be true or false, got '${text}'`)
    }
    case 'list':
      return checkValue(row, text.split(',').map(s => s.trim()).filter(s => s.length > 0), name)
    default:
      return checkValue(row, text, name)
  }
}

/** The text a value has in the environment (the inverse of valueFromText). */
export function valueToText (v: string | number | boolean | readonly string[]): string {
  return Array.isArray(v) ? v.join(',') : String(v)
}

// ---- the layers

function rowOf (key: string): OptionRow {
  const row = ROWS.get(key)
  if (row === undefined) throw new ConfigError(`unknown setting '${key}'`)
  return row
}

/** A layer's values checked, each named by its key; unknown keys refused, undefined ones ignored. */
export function checkLayer (layer: Readonly<Record<string, unknown>>): Partial<NodeSettings> {
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(layer)) if (v !== undefined) out[key] = checkValue(rowOf(key), v, key)
  return out as Partial<NodeSettings>
}

/** The options set in the environment, by their variables (MEDMESH_*), checked; other variables are ignored. */
export function settingsFromEnv (env: NodeJS.ProcessEnv): Partial<NodeSettings> {
  const out: Record<string, unknown> = {}
  for (const row of ALL) {
    const text = env[row.env]
    if (text !== undefined) out[row.key] = valueFromText(row, text, row.env)
  }
  return out as Partial<NodeSettings>
}

/**
 * The settings of three layers, later ones winning: a config file's values, the environment's
 * variables, then `given` (by key; undefined ones ignored). Unknown keys are refused; each value
 * that wins is checked and named as it was given (a variable's error names the variable); one that
 * another layer overrides is not looked at.
 */
export function mergeLayers (file: Readonly<Record<string, unknown>>, env: NodeJS.ProcessEnv, given: Readonly<Record<string, unknown>>): Partial<NodeSettings> {
  const chosen = new Map<OptionRow, () => unknown>()
  for (const [key, v] of Object.entries(file)) { const row = rowOf(key); chosen.set(row, () => checkValue(row, v, key)) }
  for (const row of ALL) { const text = env[row.env]; if (text !== undefined) chosen.set(row, () => valueFromText(row, text, row.env)) }
  for (const [key, v] of Object.entries(given)) { if (v === undefined) continue; const row = rowOf(key); chosen.set(row, () => checkValue(row, v, key)) }
  const out: Record<string, unknown> = {}
  for (const [row, value] of chosen) out[row.key] = value()
  return out as Partial<NodeSettings>
}

// ---- flags

type CommandsOf<R> = R extends { commands: ReadonlyArray<infer C> } ? C : typeof DEFAULT_COMMANDS[number]
type FlagRow<C extends NodeCommand> = Row extends infer R ? (R extends { flag: string } ? (C extends CommandsOf<R> ? R : never) : never) : never
type SpecOf<R> = R extends { type: 'list' } ? { type: 'string', multiple: true } : R extends { type: 'boolean' } ? { type: 'boolean' } : { type: 'string' }

/** The parseArgs options of `command`'s node options, typed so that parseArgs types their values. */
export type FlagSpec<C extends NodeCommand> = { [R in FlagRow<C> as R['flag']]: SpecOf<R> }
/** What parseArgs gives for `command`'s node options. */
export type FlagValues = Readonly<Partial<Record<string, string | boolean | Array<string | boolean>>>>

export function rowsOf (command: NodeCommand): OptionRow[] {
  return ALL.filter(r => r.flag !== null && (r.commands ?? DEFAULT_COMMANDS).includes(command))
}

export function flagSpec<C extends NodeCommand> (command: C): FlagSpec<C> {
  return Object.fromEntries(rowsOf(command).map(r => [r.flag, r.type === 'list' ? { type: 'string', multiple: true } : { type: r.type === 'boolean' ? 'boolean' : 'string' }])) as FlagSpec<C>
}

/**
 * The options `command`'s flags set (as parseArgs gave them), checked, by key; absent flags absent.
 * A bad value is a ConfigError naming the flag (the command line makes it a usage error).
 */
export function settingsFromFlags (command: NodeCommand, values: FlagValues): Partial<NodeSettings> {
  const out: Record<string, unknown> = {}
  for (const row of rowsOf(command)) {
    const v = values[row.flag ?? '']
    if (v === undefined) continue
    const name = `--${row.flag ?? ''}`
    if (row.type === 'list') out[row.key] = checkValue(row, v, name)
    else if (row.type === 'boolean') out[row.key] = checkValue(row, v, name)
    else if (typeof v === 'string') out[row.key] = valueFromText(row, v, name)
    else throw new ConfigError(`${name} takes a value`)
  }
  return out as Partial<NodeSettings>
}

// ---- help

const WIDTH = 100
const COLUMN = 27

function wrap (text: string, indent: number, first: string): string[] {
  const lines: string[] = []
  let line = first.padEnd(indent)
  if (first.length >= indent - 1) { lines.push(first); line = ' '.repeat(indent) }
  let fresh = true
  for (const word of text.split(/\s+/).filter(w => w.length > 0)) {
    if (!fresh && line.length + 1 + word.length > WIDTH) { lines.push(line); line = ' '.repeat(indent); fresh = true }
    line += (fresh ? '' : ' ') + word
    fresh = false
  }
  lines.push(line)
  return lines
}

function defaultText (row: OptionRow): string {
  if (row.defaultHelp !== undefined) return row.defaultHelp
  if (row.type === 'list') return row.default.length === 0 ? 'none' : row.default.join(', ')
  return String(row.default)
}

function rowHelp (row: OptionRow, left: string): string[] {
  const notes = [
    ...(row.type === 'choice' ? [row.values.join(' | ')] : []),
    ...(row.type === 'list' && row.flag !== null ? ['repeatable'] : []),
    `default ${defaultText(row)}`,
    row.type === 'list' ? `${row.env}, comma-separated` : row.env,
    `config "${row.key}"`
  ]
  return wrap(`${row.help} (${notes.join('; ')})`, COLUMN, left)
}

/** The help of `command`'s node options, one entry per row; with `all`, the options that have no flag too. */
export function optionsHelp (command: NodeCommand, all = true): string {
  const lines: string[] = []
  for (const row of rowsOf(command)) {
    const left = `  --${row.flag ?? ''}${row.type === 'boolean' ? '' : ` ${row.value ?? 'VALUE'}`}`
    lines.push(...rowHelp(row, left))
  }
  if (all) {
    const rest = ALL.filter(r => r.flag === null)
    if (rest.length > 0) {
      lines.push('', 'Settings without a flag (config.json or the environment):')
      for (const row of rest) lines.push(...rowHelp(row, `  ${row.key}`))
    }
  }
  return lines.join('\n')
}
