/**
 * Node configuration from three layers, later ones winning: the data directory's config.json
 * (written by `medmesh join`), environment variables (MEDMESH_HTTP, MEDMESH_BOOTSTRAP as a
 * comma-separated list, ...), and command-line flags. Every option is one row of NODE_OPTIONS
 * (options.ts): its key, flag, variable, type, allowed values, default and help.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, checkLayer, defaults, mergeLayers, settingsFromEnv, type NodeSettings, type SettingsLayer } from './options.ts'

export { ConfigError, type NodeSettings, type SettingsLayer } from './options.ts'

/** A node's settings (NODE_OPTIONS, options.ts) and its data directory. */
export interface NodeConfig extends NodeSettings {
  dataDir: string
}

export const DEFAULTS: NodeSettings = defaults()

/** The options set in the environment: MEDMESH_<UPPER_SNAKE_KEY> (each row names its variable). */
export function envLayer (env: NodeJS.ProcessEnv): Partial<NodeSettings> {
  return settingsFromEnv(env)
}

/** The data directory's config.json, checked (unknown keys and bad values are ConfigErrors); {} if there is none. */
export function fileLayer (dataDir: string): Partial<NodeSettings> {
  return checkLayer(readConfigFile(dataDir))
}

function readConfigFile (dataDir: string): Readonly<Record<string, unknown>> {
  const path = join(dataDir, 'config.json')
  if (!existsSync(path)) return {}
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'))
  } catch (e) {
    throw new ConfigError(`${path} is not a valid configuration file: ${(e as Error).message}`)
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`${path} is not a valid configuration file: not an object`)
  return parsed as Record<string, unknown>
}

/**
 * The node's configuration: defaults < DIR/config.json < environment < `flags` (settings by key,
 * as the command line or a program gives them; undefined ones ignored). A bad value that wins is a
 * ConfigError (one another layer overrides is not looked at), as is an unknown key.
 */
export function resolveConfig (dataDir: string, flags: SettingsLayer = {}, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  return { ...DEFAULTS, ...mergeLayers(readConfigFile(dataDir), env, flags), dataDir }
}
