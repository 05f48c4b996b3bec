/**
 * Usage errors and exit codes, apart from the command dispatcher so that anything that parses a
 * `medmesh` command line (the commands here, the simulator) can throw the same error: `main`
 * turns a UsageError into its message, a pointer to the command's help, and exit code 64.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'

/** Exit codes (sysexits.h where one fits). */
export const EXIT = { ok: 0, failure: 1, usage: 64, dataError: 65, unavailable: 69, ioError: 74, config: 78 } as const

/** A bad command line: an unknown or malformed flag, a missing argument, a value out of range. Exit code 64. */
export class UsageError extends Error {
  constructor (message: string) { super(message); this.name = 'UsageError' }
}

/** Errors `node:util`'s parseArgs throws for a bad command line carry a code ERR_PARSE_ARGS_*. */
export function isParseArgsError (e: unknown): e is Error {
  return e instanceof Error && 'code' in e && typeof e.code === 'string' && e.code.startsWith('ERR_PARSE_ARGS_')
}

/** parseArgs (strict unless told) with its errors (an unknown flag, a missing value, a value given to a boolean) as UsageErrors. */
export function parseFlags<T extends ParseArgsConfig> (config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs<T>(config)
  } catch (e) {
    if (isParseArgsError(e)) throw new UsageError(e.message)
    throw e
  }
}
