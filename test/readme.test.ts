/**
 * The README's commands run as written, and the user documents name only what exists.
 *
 * From README.md and the documents it sends its readers to (docs/OPERATIONS.md,
 * docs/SIMULATION.md, docs/USING-THE-MODEL.md), every fenced ```sh block is split into commands:
 * - every `npm run X` names a script of package.json; `npm install`, `npm test`, `npm start` too;
 * - every medmesh invocation (`npm run medmesh -- …`, `npm start -- …`, `npx medmesh …`,
 *   `medmesh …`, `node bin/medmesh.js …`) names a command that `medmesh --help` lists, and every
 *   --flag it passes appears in that command's --help;
 * - the README's short ones (--help, dp-epsilon) are run through the CLI and must exit 0 with output;
 * - any other program is refused unless it is one of a few outside tools (git, cd, apt-get, sudo).
 * Inline code naming `medmesh <command>` or `npm run X` is checked the same way, and every relative
 * link (with its #anchor) must point to an existing file (and heading).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BIN = join(ROOT, 'bin', 'medmesh.js')
const DOCS = ['README.md', 'docs/OPERATIONS.md', 'docs/SIMULATION.md', 'docs/USING-THE-MODEL.md']
const SCRIPTS: Record<string, string> = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts
/** programs a document may name that are not this project's */
const OUTSIDE = new Set(['git', 'cd', 'apt-get', 'sudo'])
/** what medmesh takes in place of a command: help and version */
const NOT_COMMANDS = new Set(['--help', '-h', 'help', '--version', '-v'])
/** medmesh commands that finish in a second or two whatever their arguments */
const FAST = new Set([...NOT_COMMANDS, 'dp-epsilon'])

const medmesh = (argv: string[]) => spawnSync(process.execPath, [BIN, ...argv], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 })
const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8')

/** The commands `medmesh --help` lists (with `help`). */
const COMMANDS: Set<string> = (() => {
  const r = medmesh(['--help'])
  if (r.status !== 0) throw new Error(`medmesh --help failed: ${r.stderr}`)
  const lines = r.stdout.split('\n')
  const from = lines.indexOf('Commands:')
  const names = new Set<string>()
  for (const line of lines.slice(from + 1)) {
    const m = /^ {2}(\S+) {2,}/.exec(line)
    if (m === null) break
    names.add(m[1])
  }
  return names
})()

const helps = new Map<string, string>()
function helpOf (command: string): string {
  let h = helps.get(command)
  if (h === undefined) {
    const r = medmesh([command, '--help'])
    if (r.status !== 0) throw new Error(`medmesh ${command} --help exited ${r.status}: ${r.stderr}`)
    h = r.stdout
    helps.set(command, h)
  }
  return h
}

/** The bodies of the fenced ```sh blocks. */
function shBlocks (markdown: string): string[] {
  return [...markdown.matchAll(/^```sh\n([\s\S]*?)^```/gm)].map(m => m[1])
}

/** A block's simple commands, each as its words: continuation lines joined, comments dropped, split at && ; & | (outside quotes). */
function commandsOf (block: string): string[][] {
  const commands: string[][] = []
  for (const line of block.replace(/\\\n/g, ' ').split('\n')) {
    let words: string[] = []
    let word = ''
    let inWord = false
    let quote: string | null = null
    const endWord = (): void => { if (inWord) words.push(word); word = ''; inWord = false }
    const endCommand = (): void => { endWord(); if (words.length > 0) commands.push(words); words = [] }
    for (let i = 0; i < line.length; i++) {
      const c = line[i]
      if (quote !== null) {
        if (c === quote) quote = null
        else word += c
      } else if (c === '"' || c === "'") {
        quote = c; inWord = true
      } else if (c === '#' && !inWord) {
        break
      } else if (c === ' ' || c === '\t') {
        endWord()
      } else if (c === '&' || c === '|' || c === ';') {
        endCommand()
        if (line[i + 1] === c) i++
      } else {
        word += c; inWord = true
      }
    }
    endCommand()
  }
  return commands
}

/** What a command amounts to: a medmesh invocation (its argv), or nothing to run here; a string is a problem. */
function interpret (words: string[], scripts: Record<string, string> = SCRIPTS): { medmesh: string[] | null } | string {
  const [program, ...rest] = words
  const shown = words.join(' ')
  const scriptArgs = (name: string, after: string[]): { medmesh: string[] | null } | string => {
    const script = scripts[name]
    if (script === undefined) return `'${shown}': package.json has no script '${name}'`
    const m = /^node bin\/medmesh\.js\b(.*)$/.exec(script)
    if (m === null) return { medmesh: null }
    const extra = after[0] === '--' ? after.slice(1) : []
    return { medmesh: [...m[1].trim().split(/\s+/).filter(w => w.length > 0), ...extra] }
  }
  if (program === 'npm') {
    const [sub, ...args] = rest
    if (sub === 'install' || sub === 'i' || sub === 'ci') return args.length === 0 ? scriptArgs('install', []) : `'${shown}': installs packages into the project`
    if (sub === 'test' || sub === 'start') return scriptArgs(sub, args)
    if (sub === 'run' || sub === 'run-script') {
      const at = args.findIndex(a => !a.startsWith('-'))
      if (at < 0) return `'${shown}': no script named`
      return scriptArgs(args[at], args.slice(at + 1))
    }
    return `'${shown}': npm ${String(sub)} is not a command these documents should use`
  }
  if (program === 'npx' && rest[0] === 'medmesh') return { medmesh: rest.slice(1) }
  if (program === 'medmesh') return { medmesh: rest }
  if (program === 'node') {
    const file = rest.find(a => !a.startsWith('-'))
    if (file === 'bin/medmesh.js') return { medmesh: rest.slice(rest.indexOf(file) + 1) }
    if (file === undefined || !existsSync(join(ROOT, file))) return `'${shown}': no such file ${String(file)}`
    return { medmesh: null }
  }
  if (OUTSIDE.has(program)) return { medmesh: null }
  return `'${shown}': unknown program '${program}'`
}

/** Problems with a medmesh invocation: an unknown command, or a flag its help does not name. */
function checkMedmesh (argv: string[], commands: Set<string> = COMMANDS, help: (c: string) => string = helpOf): string[] {
  const [command, ...args] = argv
  const shown = `medmesh ${argv.join(' ')}`
  if (command === undefined || NOT_COMMANDS.has(command)) return []
  if (!commands.has(command)) return [`'${shown}': no command '${command}' (medmesh --help lists ${[...commands].join(', ')})`]
  const text = help(command)
  const problems: string[] = []
  for (const a of args) {
    if (!a.startsWith('--') || a === '--' || a === '--help') continue // every command takes --help
    const flag = a.split('=')[0]
    const escaped = flag.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    if (!new RegExp(`(^|[^\\w-])${escaped}(?![\\w-])`, 'm').test(text)) problems.push(`'${shown}': 'medmesh ${command} --help' does not name ${flag}`)
  }
  return problems
}

/** Inline code (outside fenced blocks) that names `medmesh <command>` or `npm run <script>`. */
function inlineProblems (markdown: string, commands: Set<string> = COMMANDS, scripts: Record<string, string> = SCRIPTS): string[] {
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, '')
  const problems: string[] = []
  for (const [, span] of prose.matchAll(/`([^`]+)`/g)) {
    const code = span.replace(/\s+/g, ' ')
    for (const [, name] of code.matchAll(/(?:^|[^\w/-])medmesh ([a-z][\w-]*)/g)) {
      if (!commands.has(name)) problems.push(`\`${code}\`: no medmesh command '${name}'`)
    }
    for (const [, name] of code.matchAll(/\bnpm run (?:-s |--silent )?([\w:-]+)/g)) {
      if (scripts[name] === undefined) problems.push(`\`${code}\`: package.json has no script '${name}'`)
    }
  }
  return problems
}

/** GitHub's anchor for a heading. */
function slug (heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
}

function headingsOf (markdown: string): Set<string> {
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, '')
  return new Set([...prose.matchAll(/^#{1,6} (.+)$/gm)].map(m => slug(m[1])))
}

/** Relative links (and images) whose file, or whose #anchor in a markdown file, does not exist. */
function linkProblems (file: string, markdown: string): string[] {
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, '')
  const problems: string[] = []
  for (const [, target] of prose.matchAll(/\]\(([^)\s]+)\)/g)) {
    if (/^[a-z][a-z+.-]*:/i.test(target)) continue // https:, mailto:
    const [path, anchor] = target.split('#')
    const resolved = path === '' ? join(ROOT, file) : resolve(dirname(join(ROOT, file)), path)
    if (!existsSync(resolved)) { problems.push(`${file}: link to ${target}: no such file`); continue }
    if (anchor !== undefined && resolved.endsWith('.md') && !headingsOf(readFileSync(resolved, 'utf8')).has(anchor)) {
      problems.push(`${file}: link to ${target}: no heading with that anchor`)
    }
  }
  return problems
}

/** Every problem of one document's ```sh blocks, and the medmesh invocations in them. */
function examine (markdown: string): { problems: string[], invocations: string[][], commands: string[][] } {
  const problems: string[] = []
  const invocations: string[][] = []
  const commands = shBlocks(markdown).flatMap(commandsOf)
  for (const words of commands) {
    const r = interpret(words)
    if (typeof r === 'string') { problems.push(r); continue }
    if (r.medmesh === null) continue
    invocations.push(r.medmesh)
    problems.push(...checkMedmesh(r.medmesh))
  }
  return { problems, invocations, commands }
}

test('the checks can fail: a missing script, command or flag, a stray program, a broken link', () => {
  const bad = [
    'npm run -s medmesh -- frobnicate --fast',
    'npm run no-such-script',
    'npm start -- --no-such-flag 3',
    'medmesh dp-epsilon --samples 10',
    'medmsh --help'
  ].join('\n')
  const problems: string[] = []
  for (const words of commandsOf(bad)) {
    const r = interpret(words)
    if (typeof r === 'string') problems.push(r)
    else if (r.medmesh !== null) problems.push(...checkMedmesh(r.medmesh))
  }
  assert.equal(problems.length, 4, problems.join('\n'))
  assert.match(problems[0], /no command 'frobnicate'/)
  assert.match(problems[1], /no script 'no-such-script'/)
  assert.match(problems[2], /does not name --no-such-flag/)
  assert.match(problems[3], /unknown program 'medmsh'/)
  assert.equal(inlineProblems('run `medmesh frobnicate`, then `npm run\nbench:nothing`; `medmesh simnet` is fine'), [
    "`medmesh frobnicate`: no medmesh command 'frobnicate'",
    "`npm run bench:nothing`: package.json has no script 'bench:nothing'"
  ])
  assert.equal(linkProblems('README.md', '[a](docs/NOPE.md) [b](docs/PROTOCOL.md#no-such-heading) [c](docs/PROTOCOL.md) [d](https://example.org/x)'), [
    'README.md: link to docs/NOPE.md: no such file',
    'README.md: link to docs/PROTOCOL.md#no-such-heading: no heading with that anchor'
  ])
})

test('the shell parsing: quotes, continuations, comments, && and &', () => {
  assert.equal(commandsOf('git clone x m && cd m && npm install\nnpm run -s medmesh -- manifest create --name "A B" \\\n  --member P="H A"   # a comment\nmedmesh serve --x &\n# only a comment\n'), [
    ['git', 'clone', 'x', 'm'], ['cd', 'm'], ['npm', 'install'],
    ['npm', 'run', '-s', 'medmesh', '--', 'manifest', 'create', '--name', 'A B', '--member', 'P=H A'],
    ['medmesh', 'serve', '--x']
  ])
  assert.equal(interpret(['npm', 'start', '--', '--rounds', '2']), { medmesh: ['simnet', '--rounds', '2'] })
  assert.equal(interpret(['npm', 'run', '-s', 'medmesh', '--', 'dp-epsilon', '--json']), { medmesh: ['dp-epsilon', '--json'] })
  assert.equal(interpret(['npm', 'test']), { medmesh: null })
  assert.equal(slug('Encrypted inference: a clinic\'s diagnosis, or `the model`'), 'encrypted-inference-a-clinics-diagnosis-or-the-model')
})

test('README: npm install, npm test and npm start are there, and name scripts of package.json', () => {
  const commands = shBlocks(read('README.md')).flatMap(commandsOf).map(w => w.join(' '))
  for (const c of ['npm install', 'npm test', 'npm start']) assert.ok(commands.includes(c), `README has no \`${c}\` in a sh block`)
  for (const s of ['install', 'test', 'start']) assert.type(SCRIPTS[s], 'string')
})

for (const file of DOCS) {
  test(`${file}: every command names an existing script, program, medmesh command and flag`, () => {
    const { problems, commands } = examine(read(file))
    assert.ok(commands.length > 0, `${file} has no sh commands`)
    assert.equal(problems, [], problems.join('\n'))
  })

  test(`${file}: inline medmesh commands and npm scripts exist`, () => {
    const problems = inlineProblems(read(file))
    assert.equal(problems, [], problems.join('\n'))
  })

  test(`${file}: relative links point to existing files and headings`, () => {
    const problems = linkProblems(file, read(file))
    assert.equal(problems, [], problems.join('\n'))
  })
}

test('README: the short commands run as written and print something', () => {
  const { invocations } = examine(read('README.md'))
  const fast = invocations.filter(argv => argv.length > 0 && (FAST.has(argv[0]) || argv.includes('--help') || argv.includes('-h')))
  assert.ok(fast.length >= 2, `only ${fast.length} short commands in the README`)
  for (const argv of fast) {
    const r = medmesh(argv)
    const shown = `medmesh ${argv.join(' ')}`
    assert.is(r.status, 0, `${shown} exited ${r.status}: ${r.stderr}`)
    assert.ok(r.stdout.trim().length > 0, `${shown} printed nothing`)
    if (argv.includes('--help') || argv[0] === 'help') assert.match(r.stdout, /Usage: medmesh/, shown)
    if (argv[0] === 'dp-epsilon') assert.match(r.stdout, /ε = \d+\.\d+/, shown)
  }
})

test.run()
