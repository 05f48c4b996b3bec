/** Helpers for tests that run real medmesh nodes as separate processes on 127.0.0.1. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { freePorts } from '../../scripts/simnet/processes.ts'
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs'
import * as assert from 'uvu/assert'
import { DataDir } from '../../src/node/datadir.ts'
import { hex } from '../../src/protocol/codec.ts'
import { decodeCertificate } from '../../src/protocol/ledger.ts'
import { decodeState, stateHash } from '../../src/protocol/model.ts'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const BIN = fileURLToPath(new URL('../../bin/medmesh.js', import.meta.url))

export function cli (...args: string[]): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, MEDMESH_LOG_FORMAT: 'json' } })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

export { freePorts }

export interface Cluster { root: string, dirs: string[], ids: string[], p2p: number[], http: number[], manifest: string }

/** init, manifest create + sign, join: n nodes ready to start. */
export async function makeCluster (n: number, opts: { threshold: number, rounds: number, phaseMs?: number, epochs?: number, extra?: string[], manifestArgs?: string[], prepare?: (dirs: string[]) => void, bootstrapOf?: (i: number) => number[] }): Promise<Cluster> {
  const root = mkdtempSync(join(tmpdir(), 'medmesh-cluster-'))
  const dirs = Array.from({ length: n }, (_, i) => join(root, `node${i}`))
  opts.prepare?.(dirs)
  const ids = dirs.map(d => {
    const r = cli('init', '--data-dir', d)
    if (r.status !== 0) throw new Error(`init failed: ${r.stderr}`)
    return r.stdout.trim()
  })
  const manifest = join(root, 'manifest.json')
  const created = cli('manifest', 'create', '--name', 'test consortium', ...ids.flatMap((id, i) => ['--member', `${id}=hospital ${i}`]),
    '--threshold', String(opts.threshold), '--phase-ms', String(opts.phaseMs ?? 4000), '--round-ms', '60000', ...(opts.manifestArgs ?? []), '--out', manifest)
  if (created.status !== 0) throw new Error(`manifest create failed: ${created.stderr}`)
  for (const d of dirs) { const r = cli('manifest', 'sign', '--data-dir', d, manifest); if (r.status !== 0) throw new Error(r.stderr) }
  const [p2p, http] = [await freePorts(n), await freePorts(n)]
  dirs.forEach((d, i) => {
    // every other member, unless the test says whom each one knows
    const known = opts.bootstrapOf?.(i) ?? ids.map((_, j) => j).filter(j => j !== i)
    const boot = known.flatMap(j => ['--bootstrap', `/ip4/127.0.0.1/tcp/${p2p[j]}/p2p/${ids[j]}`])
    const r = cli('join', '--data-dir', d, '--manifest', manifest, '--listen', `/ip4/127.0.0.1/tcp/${p2p[i]}`, '--http', `127.0.0.1:${http[i]}`,
      '--shard', `${i}/${n}`, '--epochs', String(opts.epochs ?? 0.15), '--rounds', String(opts.rounds), ...boot, ...(opts.extra ?? []))
    if (r.status !== 0) throw new Error(`join failed: ${r.stderr}`)
  })
  return { root, dirs, ids, p2p, http, manifest }
}

export interface Running { proc: ChildProcess, log: string[], exit: Promise<number | null> }

export function startNode (dir: string): Running {
  const proc = spawn(process.execPath, [BIN, 'start', '--data-dir', dir], { env: { ...process.env, MEDMESH_LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] })
  const log: string[] = []
  let buf = ''
  const onData = (chunk: Buffer): void => {
    buf += chunk.toString('utf8')
    const lines = buf.split('\n'); buf = lines.pop()!
    for (const l of lines) log.push(l)
  }
  proc.stdout!.on('data', onData); proc.stderr!.on('data', onData)
  const exit = new Promise<number | null>(resolve => proc.on('exit', (code) => resolve(code)))
  return { proc, log, exit }
}

export function messages (r: Running): string[] {
  return r.log.map(l => { try { return String(JSON.parse(l).msg) } catch { return l } })
}

/** A node's JSON log lines, parsed (pino's fields: level, msg, and each line's own: round, phase, peer, ...). */
export type LogRecord = Record<string, unknown> & { level?: number, msg?: string }
export function records (r: Running): LogRecord[] {
  return r.log.flatMap(l => { try { const x: unknown = JSON.parse(l); return typeof x === 'object' && x !== null ? [x as LogRecord] : [] } catch { return [] } })
}
/** Whether the node logged a line whose fields match all of `fields` (a function value is a test of the field). */
export function logged (r: Running, fields: Record<string, unknown>): boolean {
  return records(r).some(x => matches(x, fields))
}
export function matches (x: LogRecord, fields: Record<string, unknown>): boolean {
  return Object.entries(fields).every(([k, v]) => typeof v === 'function' ? (v as (x: unknown) => boolean)(x[k]) : x[k] === v)
}
/** pino's level of a warning */
export const WARN = 40

/** Poll `cond` until it holds; on a timeout the error says what was awaited and, with `detail`, what the nodes were doing. */
export async function waitFor (cond: () => boolean, ms: number, what: string, detail?: () => string): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) { if (cond()) return; await new Promise(r => setTimeout(r, 200)) }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${detail === undefined ? '' : `\n${detail()}`}`)
}

/** The last few log messages of each node, for a failure message. */
export const lastMessages = (nodes: Running[], k = 6): string => nodes.map((n, i) => `node ${i}: ${messages(n).slice(-k).join(' | ')}`).join('\n')

export async function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

export async function getJson (port: number, path: string): Promise<any> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`)
  return path === '/metrics' ? await res.text() : await res.json()
}

export const readText = (p: string): string => readFileSync(p, 'utf8')

/** Every file in a data directory parses and verifies: nothing half-written. */
export function checkDataDir (dir: string): { head: string, model: string, updates: number } {
  const d = new DataDir(dir)
  const manifest = d.manifest()
  const ledger = d.ledger(manifest)
  for (const f of readdirSync(join(dir, 'ledger'))) decodeCertificate(new Uint8Array(readFileSync(join(dir, 'ledger', f))))
  for (const f of readdirSync(join(dir, 'states'))) {
    const s = decodeState(new Uint8Array(readFileSync(join(dir, 'states', f))), 1 << 30)
    assert.is(`${hex(stateHash(s))}.state`, f, 'a state file is named by its hash')
  }
  for (const f of ['config.json', 'round.json', 'manifest.json']) JSON.parse(readFileSync(join(dir, f), 'utf8'))
  assert.not.ok(readdirSync(dir, { recursive: true }).some(f => String(f).endsWith('.tmp')), 'no temporary file left behind')
  const last = ledger.lastOf('update')!
  return { head: hex(ledger.head), model: hex(last.header.stateHash), updates: ledger.entries.filter(e => e.header.kind === 'update').length }
}

