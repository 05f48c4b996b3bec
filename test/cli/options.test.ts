/**
 * The node options' table (src/node/options.ts): every row round-trips through its flag, its
 * environment variable and its default; a value out of range is a usage error (exit 64) on the
 * command line and a configuration error (78) in config.json or the environment; every row is in
 * the help of the commands that take it.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { NODE_OPTIONS, valueToText, type NodeCommand, type OptionRow } from '../../src/node/options.ts'
import { resolveConfig, ConfigError, DEFAULTS } from '../../src/node/config.ts'
import { parseNodeFlags, joinHelp, startHelp, serveHelp, statusHelp } from '../../src/cli/node-commands.ts'
import { UsageError } from '../../src/cli/main.ts'
import { main } from '../../src/cli/index.ts'
import { throwsA } from '../helpers/assert.ts'

const BIN = fileURLToPath(new URL('../../bin/medmesh.js', import.meta.url))
const root = mkdtempSync(join(tmpdir(), 'medmesh-options-'))
let n = 0
const freshDir = (config?: object): string => {
  const dir = join(root, String(n++))
  mkdirSync(dir)
  if (config !== undefined) writeFileSync(join(dir, 'config.json'), JSON.stringify(config))
  return dir
}
const ROWS: readonly OptionRow[] = NODE_OPTIONS
const commandsOf = (row: OptionRow): readonly NodeCommand[] => row.flag === null ? [] : row.commands ?? ['join', 'start']
const HELP: Record<NodeCommand, string> = { join: joinHelp, start: startHelp, serve: serveHelp, status: statusHelp }
/** The command line that gives `value` to the row's flag. */
const flagArgs = (row: OptionRow, value: unknown): string[] => {
  if (row.type === 'boolean') return [value === true ? `--${row.flag}` : `--no-${row.flag}`]
  if (Array.isArray(value)) return value.flatMap(v => [`--${row.flag}`, String(v)])
  return [`--${row.flag}=${String(value)}`]
}
const flat = (s: string): string => s.replace(/\s+/g, ' ')
const noStack = (s: string): boolean => !/\n\s+at /.test(s)

/** In-process `medmesh ...`: its exit code and what it wrote to stderr. */
async function medmesh (...args: string[]): Promise<{ code: number, err: string }> {
  const err: string[] = []
  const code = await main(args, () => {}, s => err.push(s))
  return { code, err: err.join('\n') }
}

test('the table: keys, flags and variables unique; the variables and flags of before; each example valid and not the default', () => {
  const unique = (xs: Array<string | null>): void => { const named = xs.filter(x => x !== null); assert.is(new Set(named).size, named.length, named.join(' ')) }
  unique(ROWS.map(r => r.key)); unique(ROWS.map(r => r.flag)); unique(ROWS.map(r => r.env))
  for (const r of ROWS) assert.is(r.env, 'MEDMESH_' + r.key.replace(/[A-Z]/g, c => '_' + c).toUpperCase(), r.key)
  const flags = ['listen', 'announce', 'bootstrap', 'http', 'dataset', 'shard', 'epochs', 'batch-size', 'learning-rate', 'rounds', 'psk', 'log-level', 'log-format', 'min-peers',
    'training-workers', 'inference-listen', 'inference-per-minute', 'check-aggregates']
  assert.equal(ROWS.filter(r => commandsOf(r).includes('start')).map(r => r.flag).sort(), [...flags].sort())
  assert.equal(ROWS.filter(r => commandsOf(r).includes('join')).map(r => r.flag).sort(), [...flags].sort())
  assert.equal(ROWS.filter(r => commandsOf(r).includes('serve')).map(r => r.flag).sort(), ['inference-listen', 'inference-per-minute', 'log-format', 'log-level'])
  assert.equal(ROWS.filter(r => commandsOf(r).includes('status')).map(r => r.flag), ['http'])
  for (const r of ROWS) assert.not.equal(r.example, r.default, r.key)
})

test('the defaults are those of before', () => {
  const c = resolveConfig(freshDir(), {}, {})
  const { dataDir, dataset, ...rest } = c
  assert.match(dataset, /pneumoniamnist\.npz$/)
  assert.equal(rest, {
    listen: ['/ip4/0.0.0.0/tcp/7651'], announce: [], bootstrap: [], http: '127.0.0.1:7650', shard: null, epochs: null, batchSize: null, learningRate: null,
    rounds: 0, pskFile: null, logLevel: 'info', logFormat: 'auto', minPeers: 0, deny: [], simulationSeed: null, trainingWorkers: null, inferenceListen: [],
    inferencePerMinute: 60, checkAggregates: false
  })
  assert.equal(Object.keys(DEFAULTS).sort(), ROWS.map(r => r.key).sort())
  assert.ok(dataDir.startsWith(root))
})

for (const row of ROWS) {
  test(`${row.key} round-trips through its default, ${row.env}${row.flag === null ? '' : ` and --${row.flag}`}, config.json < environment < flag`, () => {
    const dir = freshDir()
    const get = (c: object): unknown => (c as Record<string, unknown>)[row.key]
    assert.equal(get(resolveConfig(dir, {}, {})), row.default, 'default')
    const text = valueToText(row.example as string | number | boolean | string[])
    assert.equal(get(resolveConfig(dir, {}, { [row.env]: text })), row.example, 'environment')
    const filed = freshDir({ [row.key]: row.example })
    assert.equal(get(resolveConfig(filed, {}, {})), row.example, 'config.json')
    if (row.default !== null) {
      const defaultText = valueToText(row.default as string | number | boolean | string[])
      assert.equal(get(resolveConfig(filed, {}, { [row.env]: defaultText })), row.default, 'the environment wins over config.json')
    }
    for (const command of commandsOf(row)) {
      const { settings } = parseNodeFlags(command, flagArgs(row, row.example), {})
      assert.equal(settings, { [row.key]: row.example }, `${command} --${row.flag}`)
      assert.equal(get(resolveConfig(filed, settings, { [row.env]: text })), row.example, 'the flag wins')
      if (row.default !== null) {
        // (an empty list cannot be given as flags)
        const { settings: back } = parseNodeFlags(command, flagArgs(row, row.default), {})
        if (!(Array.isArray(row.default) && row.default.length === 0)) assert.equal(get(resolveConfig(filed, back, { [row.env]: text })), row.default, 'the flag wins over the environment')
      }
      // a flag not given sets nothing (join writes only the flags given to config.json)
      assert.equal(parseNodeFlags(command, [], {}).settings, {})
    }
  })
}

/** Values each row refuses. */
function badValues (row: OptionRow): unknown[] {
  switch (row.type) {
    case 'number': return [row.min - 1, ...(row.integer ? [row.min + 0.5] : []), ...(row.max !== undefined ? [row.max + 1] : [])]
    case 'choice': return ['bogus']
    case 'text': return ['']
    case 'boolean': return []
    case 'list': return row.item === 'peer-id' ? [['not-a-peer-id']] : row.item === 'peer-multiaddr' ? [['/ip4/127.0.0.1/tcp/1'], ['nonsense']] : [['nonsense']]
  }
}

for (const row of ROWS) {
  test(`${row.key}: a value out of range is a usage error (64) as a flag, a configuration error (78) in config.json or ${row.env}`, async () => {
    const bad = badValues(row)
    assert.ok(bad.length > 0 || row.type === 'boolean')
    for (const v of bad) {
      throwsA(() => resolveConfig(freshDir({ [row.key]: v }), {}, {}), ConfigError, new RegExp(`^${row.key}\\b`))
      throwsA(() => resolveConfig(freshDir(), {}, { [row.env]: valueToText(v as string | number | string[]) }), ConfigError, new RegExp(`^${row.env}\\b`))
      for (const command of commandsOf(row)) {
        throwsA(() => parseNodeFlags(command, flagArgs(row, v), {}), UsageError, new RegExp(`^--${row.flag}\\b`))
        const r = await medmesh(command, '--data-dir', freshDir(), ...flagArgs(row, v))
        assert.is(r.code, 64, `${command} ${flagArgs(row, v).join(' ')}: ${r.err}`)
        assert.match(r.err, `--${row.flag ?? ''}`)
      }
    }
    if (row.type === 'boolean') {
      throwsA(() => resolveConfig(freshDir(), {}, { [row.env]: 'maybe' }), ConfigError, new RegExp(`^${row.env} must be true or false`))
      throwsA(() => resolveConfig(freshDir({ [row.key]: 'yes' }), {}, {}), ConfigError, new RegExp(`^${row.key} must be true or false`))
      for (const command of commandsOf(row)) assert.is((await medmesh(command, '--data-dir', freshDir(), `--${row.flag}=yes`)).code, 64)
    }
  })
}

test('a bad value that another layer overrides is not looked at (precedence as before)', () => {
  assert.is(resolveConfig(freshDir({ rounds: -1 }), {}, { MEDMESH_ROUNDS: '2' }).rounds, 2)
  assert.is(resolveConfig(freshDir(), { http: 'off' }, { MEDMESH_HTTP: 'nonsense' }).http, 'off')
  throwsA(() => resolveConfig(freshDir({ colour: 'blue' }), {}, {}), ConfigError, /unknown setting 'colour'/)
  const unknown: Record<string, unknown> = { colour: 'blue' }
  throwsA(() => resolveConfig(freshDir(), unknown, {}), ConfigError, /unknown setting 'colour'/)
})

test('the bin, as a child process: a flag out of range exits 64 with a message and no stack; the same in config.json exits 78', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' })
  const rounds = run('start', '--data-dir', freshDir(), '--rounds=-1')
  assert.is(rounds.status, 64, rounds.stderr)
  assert.match(rounds.stderr, /medmesh start: --rounds must be an integer >= 0, got '-1'/)
  assert.match(rounds.stderr, /Run 'medmesh start --help' for usage/)
  const workers = run('join', '--data-dir', freshDir(), '--manifest', 'm.json', '--training-workers', '1000')
  assert.is(workers.status, 64, workers.stderr)
  assert.match(workers.stderr, /--training-workers must be at most 256, got '1000'/)
  const filed = run('start', '--data-dir', freshDir({ rounds: -1 }))
  assert.is(filed.status, 78, filed.stderr)
  assert.match(filed.stderr, /rounds must be an integer >= 0, got -1/)
  for (const r of [rounds, workers, filed]) assert.ok(noStack(r.stderr), r.stderr)
})

test('every command: an unknown flag, a missing value or a missing argument is a usage error (64)', async () => {
  const cases = [
    ['init'], ['init', '--data-dir'], ['init', '--bogus'], ['start'], ['start', '--data-dir', freshDir(), '--bogus'], ['start', '--data-dir', freshDir(), '--listen'],
    ['join', '--data-dir', freshDir()], ['join', '--manifest', 'm.json'], ['serve', '--data-dir', freshDir(), '--listen', '/ip4/127.0.0.1/tcp/1'], ['status', '--bogus'],
    ['manifest'], ['manifest', 'frob'], ['manifest', 'sign', '--data-dir', freshDir()], ['manifest', 'verify'], ['manifest', 'create', '--name', 'x'],
    ['manifest', 'create', '--name', 'x', '--out', join(root, 'x.json'), '--model', 'medmesh/nonesuch'],
    ['manifest', 'create', '--name', 'x', '--out', join(root, 'x.json'), '--class-weighting', 'sometimes'],
    ['manifest', 'create', '--name', 'x', '--out', join(root, 'x.json'), '--aggregation', 'median'],
    ['manifest', 'create', '--name', 'x', '--out', join(root, 'x.json'), '--lr-schedule', 'linear'],
    ['manifest', 'create', '--name', 'x', '--out', join(root, 'x.json'), '--prior-correction', 'local'],
    ['predict', '--bogus'], ['infer', '--bogus'], ['export', '--bogus'], ['verify-model', '--bogus'], ['dp-epsilon', '--bogus'], ['help', 'frobnicate'], ['frobnicate']
  ]
  for (const args of cases) {
    const r = await medmesh(...args)
    assert.is(r.code, 64, `medmesh ${args.join(' ')}: ${r.err}`)
    assert.ok(noStack(r.err), r.err)
  }
})

test('the help of each command lists every row it takes: flag, value, help, default, variable and key; join\'s and start\'s the settings without a flag too', async () => {
  for (const command of ['join', 'start', 'serve', 'status'] as const) {
    const help = flat(HELP[command])
    for (const row of ROWS) {
      const takes = commandsOf(row).includes(command)
      const listed = row.flag === null ? command === 'join' || command === 'start' : takes
      if (row.flag !== null) assert.is(new RegExp(`--${row.flag}\\b`).test(help), takes, `${command} --${row.flag}`)
      if (!listed) continue
      assert.ok(help.includes(flat(row.help)), `${command}: ${row.key}'s help`)
      assert.ok(help.includes(row.env), `${command}: ${row.env}`)
      assert.ok(help.includes(`config "${row.key}"`), `${command}: ${row.key}`)
      if (row.flag === null) assert.ok(HELP[command].includes(`\n  ${row.key} `), `${command}: ${row.key}`)
      const shown = row.defaultHelp ?? (Array.isArray(row.default) ? row.default.join(', ') : String(row.default))
      assert.ok(help.includes(`default ${flat(shown)}`), `${command}: ${row.key}'s default`)
      if (row.type === 'choice') assert.ok(help.includes(row.values.join(' | ')), `${command}: ${row.key}'s values`)
    }
  }
  // and the command line shows it
  const out: string[] = []
  assert.is(await main(['join', '--help'], s => out.push(s), () => {}), 0)
  assert.is(out.join('\n'), joinHelp)
})

test.after(() => rmSync(root, { recursive: true, force: true }))
test.run()
