/**
 * Node configuration from three layers, later ones winning: the data directory's config.json
 * (written by `medmesh join`), environment variables MEDMESH_<NAME> (e.g. MEDMESH_HTTP,
 * MEDMESH_BOOTSTRAP as a comma-separated list), and command-line flags.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { BUNDLED_PNEUMONIAMNIST } from '../training/data/npz.ts'

export interface NodeConfig {
  dataDir: string
  listen: string[]
  announce: string[]
  bootstrap: string[]
  /** host:port of the local status endpoint, or 'off' */
  http: string
  /** a MedMNIST .npz or a folder of images by class */
  dataset: string
  /** use shard i of n of the dataset (simulations and demos on one file), e.g. "2/4" */
  shard: string | null
  /** overrides of the manifest's local recipe at this node (null: the manifest's) */
  epochs: number | null
  batchSize: number | null
  learningRate: number | null
  /** stop after this many certified update rounds (0: run until stopped) */
  rounds: number
  /** a libp2p pre-shared network key file (@libp2p/pnet), or null */
  pskFile: string | null
  logLevel: 'debug' | 'info' | 'warn' | 'error'
  /** log lines: 'pretty' (human-readable), 'json' (one JSON object per line), or 'auto': pretty on a terminal, JSON otherwise (a service's journal, a pipe) */
  logFormat: 'auto' | 'pretty' | 'json'
  /** the fewest members this node waits to be connected to before starting a round */
  minPeers: number
  /** members this node refuses to talk to for now (quarantine); re-read on SIGHUP */
  deny: string[]
  /**
   * simulations only (64 hex digits): training, stochastic rounding, keys and masks follow from this
   * public seed instead of the node's key and the CSPRNG, so that a simulated run repeats. Never
   * on real data: anyone who knows the seed can unmask this node's inputs.
   */
  simulationSeed: string | null
  /** worker threads that train, each step's batch split among them (null: one per core of this machine) */
  trainingWorkers: number | null
  /** addresses of the encrypted-inference listener (its own peer id, see datadir.ts); empty: not served */
  inferenceListen: string[]
  /** queries each client may make a minute (opening a session counts ten) */
  inferencePerMinute: number
  /**
   * sliced consortia: fetch every survivor's whole masked vector, sum and unmask every slice here,
   * and sign only a sum that matches (all-to-all traffic for this node; PROTOCOL.md §8)
   */
  checkAggregates: boolean
}

export class ConfigError extends Error {
  constructor (message: string) { super(message); this.name = 'ConfigError' }
}

export const DEFAULTS: Omit<NodeConfig, 'dataDir'> = {
  listen: ['/ip4/0.0.0.0/tcp/7651'],
  announce: [],
  bootstrap: [],
  http: '127.0.0.1:7650',
  dataset: BUNDLED_PNEUMONIAMNIST,
  shard: null,
  epochs: null,
  batchSize: null,
  learningRate: null,
  rounds: 0,
  pskFile: null,
  logLevel: 'info',
  logFormat: 'auto',
  minPeers: 0,
  deny: [],
  simulationSeed: null,
  trainingWorkers: null,
  inferenceListen: [],
  inferencePerMinute: 60,
  checkAggregates: false
}

type Layer = Partial<Record<keyof NodeConfig, unknown>>
const LISTS = new Set(['listen', 'announce', 'bootstrap', 'inferenceListen'])
const NUMBERS = new Set(['epochs', 'batchSize', 'learningRate', 'rounds', 'minPeers', 'trainingWorkers', 'inferencePerMinute'])

const BOOLEANS = new Set(['checkAggregates'])
const booleanOf = (name: string, v: string): boolean => {
  if (['1', 'true', 'yes'].includes(v.toLowerCase())) return true
  if (['0', 'false', 'no', ''].includes(v.toLowerCase())) return false
  throw new ConfigError(`${name} must be true or false, got '${v}'`)
}

/** Environment variables MEDMESH_<UPPER_SNAKE_NAME>. */
export function envLayer (env: NodeJS.ProcessEnv): Layer {
  const out: Layer = {}
  for (const key of Object.keys(DEFAULTS) as Array<keyof NodeConfig>) {
    const name = 'MEDMESH_' + key.replace(/[A-Z]/g, c => '_' + c).toUpperCase()
    const v = env[name]
    if (v === undefined) continue
    out[key] = LISTS.has(key) || key === 'deny' ? v.split(',').map(s => s.trim()).filter(s => s.length > 0) : NUMBERS.has(key) ? Number(v) : BOOLEANS.has(key) ? booleanOf(name, v) : v
  }
  return out
}

export function fileLayer (dataDir: string): Layer {
  const path = join(dataDir, 'config.json')
  if (!existsSync(path)) return {}
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'))
  } catch (e) {
    throw new ConfigError(`${path} is not a valid configuration file: ${(e as Error).message}`)
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`${path} is not a valid configuration file: not an object`)
  return parsed as Layer
}

export function resolveConfig (dataDir: string, flags: Layer, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  const merged = { ...DEFAULTS, ...fileLayer(dataDir), ...envLayer(env), ...stripUndefined(flags), dataDir } as Record<string, unknown>
  return validateConfig(merged)
}

function stripUndefined (o: Layer): Layer {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))
}

export function validateConfig (c: Record<string, unknown>): NodeConfig {
  for (const key of Object.keys(c)) if (!(key in DEFAULTS) && key !== 'dataDir') throw new ConfigError(`unknown setting '${key}'`)
  for (const key of LISTS) {
    const v = c[key]
    if (!Array.isArray(v) || v.some(x => typeof x !== 'string')) throw new ConfigError(`${key} must be a list of multiaddrs`)
    for (const a of v as string[]) {
      try { multiaddr(a) } catch { throw new ConfigError(`${key}: '${a}' is not a multiaddr`) }
      if (key === 'bootstrap' && !a.includes('/p2p/')) throw new ConfigError(`bootstrap address '${a}' must end in /p2p/<peer id>`)
    }
  }
  const positive = (key: string, integer: boolean, min = 1): void => {
    const v = c[key]
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) throw new ConfigError(`${key} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${String(v)}`)
  }
  if (!Array.isArray(c.deny) || c.deny.some(x => typeof x !== 'string' || !/^[1-9A-HJ-NP-Za-km-z]{40,60}$/.test(x))) throw new ConfigError('deny must be a list of peer ids')
  const override = (key: string, integer: boolean, min: number): void => { if (c[key] !== null) positive(key, integer, min) }
  override('epochs', false, 0.01); override('batchSize', true, 1); override('learningRate', false, 1e-9); positive('rounds', true, 0); positive('minPeers', true, 0)
  override('trainingWorkers', true, 1)
  positive('inferencePerMinute', true, 1)
  if (c.trainingWorkers !== null && (c.trainingWorkers as number) > 256) throw new ConfigError(`trainingWorkers must be at most 256, got ${String(c.trainingWorkers)}`)
  for (const key of BOOLEANS) if (typeof c[key] !== 'boolean') throw new ConfigError(`${key} must be true or false, got ${String(c[key])}`)
  if (typeof c.http !== 'string' || !(c.http === 'off' || /^[\w.-]+:\d{1,5}$/.test(c.http))) throw new ConfigError(`http must be host:port or 'off', got '${String(c.http)}'`)
  if (typeof c.dataset !== 'string' || c.dataset.length === 0) throw new ConfigError('dataset must be a path')
  if (c.shard !== null && (typeof c.shard !== 'string' || !/^\d+\/\d+$/.test(c.shard) || Number(c.shard.split('/')[0]) >= Number(c.shard.split('/')[1]))) throw new ConfigError(`shard must look like i/n with i < n, got '${String(c.shard)}'`)
  if (c.pskFile !== null && typeof c.pskFile !== 'string') throw new ConfigError('pskFile must be a path')
  if (c.simulationSeed !== null && (typeof c.simulationSeed !== 'string' || !/^[0-9a-f]{64}$/.test(c.simulationSeed))) throw new ConfigError('simulationSeed must be 64 hex digits (simulations only)')
  if (!['auto', 'pretty', 'json'].includes(c.logFormat as string)) throw new ConfigError(`logFormat must be auto, pretty or json, got '${String(c.logFormat)}'`)
  if (!['debug', 'info', 'warn', 'error'].includes(c.logLevel as string)) throw new ConfigError(`logLevel must be debug, info, warn or error, got '${String(c.logLevel)}'`)
  return c as unknown as NodeConfig
}
