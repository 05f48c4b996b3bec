/**
 * The `medmesh` command line. Each command is a small module; this file only dispatches and
 * turns errors into a clear message and an exit code, never a stack trace.
 */
import { PrivacyError } from '../privacy/errors.ts'
import { EXIT, UsageError, isParseArgsError } from './usage.ts'

export { EXIT, UsageError, parseFlags } from './usage.ts'

/** A command's module is loaded only when the command runs, so `medmesh init` does not load TF.js. */
interface Command {
  summary: string
  load: () => Promise<{ help: string, run: (args: string[]) => Promise<number> }>
}

const commands: Record<string, Command> = {}

export function registerCommand (name: string, command: Command): void {
  commands[name] = command
}

export function usage (): string {
  const width = Math.max(...Object.keys(commands).map(n => n.length), 4)
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  return [
    'medmesh: peer-to-peer federated training of medical-imaging models,',
    'with secure aggregation, peer-verified rounds and differential privacy.',
    '',
    'Usage: medmesh <command> [options]',
    '',
    'Commands:',
    ...lines,
    `  ${'help'.padEnd(width)}  show this help, or a command's: medmesh help <command>`,
    '',
    'Run `medmesh <command> --help` for the options of a command.'
  ].join('\n')
}

export async function main (argv: string[], out: (s: string) => void = s => process.stdout.write(s + '\n'), err: (s: string) => void = s => process.stderr.write(s + '\n')): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    const topic = name === 'help' ? rest[0] : undefined
    if (topic !== undefined) {
      const c = commands[topic]
      if (c === undefined) { err(`medmesh: unknown command '${topic}'\n\n${usage()}`); return EXIT.usage }
      out((await c.load()).help)
      return EXIT.ok
    }
    out(usage())
    return EXIT.ok
  }
  if (name === '--version' || name === '-v') {
    out('medmesh 0.1.0')
    return EXIT.ok
  }
  const command = commands[name]
  if (command === undefined) {
    err(`medmesh: unknown command '${name}'\n\n${usage()}`)
    return EXIT.usage
  }
  const loaded = await command.load()
  if (rest.includes('--help') || rest.includes('-h')) {
    out(loaded.help)
    return EXIT.ok
  }
  try {
    return await loaded.run(rest)
  } catch (e) {
    // a parseArgs error that a command let through is a usage error too
    if (e instanceof UsageError || isParseArgsError(e)) { err(`medmesh ${name}: ${e.message}\nRun 'medmesh ${name} --help' for usage.`); return EXIT.usage }
    if (e instanceof PrivacyError) { err(`medmesh ${name}: ${e.message}`); return EXIT.failure }
    err(`medmesh ${name}: ${e instanceof Error ? e.message : String(e)}`)
    return EXIT.failure
  }
}
