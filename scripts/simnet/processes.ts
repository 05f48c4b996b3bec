/**
 * The TCP transport: every hospital is a real medmesh node — its own process, its own data
 * directory and identity, a libp2p host on 127.0.0.1 (TCP, Noise, Yamux, gossipsub) — set up the
 * way a consortium sets itself up: `init`, `manifest create`, every member `manifest sign`, `join`
 * with the others as bootstrap peers, `start`. Each hospital's share of the data is written to its
 * own .npz file, so no node sees another's images. The simulator only watches: it reads each
 * node's /status and /metrics, its log and its data directory (ledger, certified states, ε), and
 * injects faults by killing a node (SIGKILL) and starting it again.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { init, join as joinConsortium, manifest as manifestCommand } from '../../src/cli/node-commands.ts'
import { DataDir } from '../../src/node/datadir.ts'
import { hex } from '../../src/protocol/codec.ts'
import type { Manifest } from '../../src/protocol/manifest.ts'
import type { Ledger } from '../../src/protocol/ledger.ts'
import { subset } from '../../src/training/data/dataset.ts'
import { encodeMedMnist } from '../../src/training/data/npz.ts'
import { PHASES, drawAbsent, progressLine, type FederationResult, type RoundRecord, type SimSetup } from './federation.ts'
import { mulberry32 } from '../../src/protocol/memnet.ts'

const BIN = fileURLToPath(new URL('../../bin/medmesh.js', import.meta.url))
const POLL_MS = 250

interface LogLine { time: number, msg: string }

/** One hospital's node process; it can be killed and started again on the same data directory. */
class NodeProcess {
  proc: ChildProcess | null = null
  exited: Promise<void> = Promise.resolve()
  readonly log: LogLine[] = []
  peakRss = 0
  /** bytes counted by earlier incarnations (a restart resets the node's counters) */
  bytesBefore = 0
  bytesNow = 0
  readonly dir: string
  readonly httpPort: number
  constructor (dir: string, httpPort: number) { this.dir = dir; this.httpPort = httpPort }

  get alive (): boolean { return this.proc !== null }

  start (): void {
    const proc = spawn(process.execPath, [BIN, 'start', '--data-dir', this.dir], { env: { ...process.env, MEDMESH_LOG_JSON: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
    this.proc = proc
    let buf = ''
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString('utf8')
      const lines = buf.split('\n'); buf = lines.pop()!
      for (const l of lines) {
        try { const o = JSON.parse(l); this.log.push({ time: Number(o.time), msg: String(o.msg) }) } catch { this.log.push({ time: Date.now(), msg: l }) }
      }
    }
    proc.stdout!.on('data', onData); proc.stderr!.on('data', onData)
    this.exited = new Promise(resolve => proc.on('exit', () => { if (this.proc === proc) this.proc = null; resolve() }))
  }

  async kill (): Promise<void> {
    if (this.proc === null) return
    this.bytesBefore += this.bytesNow; this.bytesNow = 0
    this.proc.kill('SIGKILL')
    await this.exited
  }

  /** resident memory of the process now (Linux), in bytes */
  sampleRss (): void {
    if (this.proc?.pid === undefined) return
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.proc.pid}/status`, 'utf8'))
      if (m !== null) this.peakRss = Math.max(this.peakRss, Number(m[1]) * 1024)
    } catch {}
  }

  async poll (): Promise<void> {
    if (this.proc === null) return
    this.sampleRss()
    try {
      const text = await (await fetch(`http://127.0.0.1:${this.httpPort}/metrics`, { signal: AbortSignal.timeout(1000) })).text()
      let sum = 0
      for (const m of text.matchAll(/^medmesh_bytes_sent_total\{[^}]*\} (\S+)$/gm)) sum += Number(m[1])
      this.bytesNow = sum
    } catch {}
  }

  get bytes (): number { return this.bytesBefore + this.bytesNow }
}

/** n TCP ports on 127.0.0.1 that were free a moment ago. */
export async function freePorts (n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise<import('node:net').Server>(resolve => {
    const srv = createServer(); srv.listen(0, '127.0.0.1', () => resolve(srv))
  })))
  const ports = servers.map(srv => (srv.address() as { port: number }).port)
  await Promise.all(servers.map(srv => new Promise(resolve => srv.close(resolve))))
  return ports
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

async function cli (what: string, fn: (out: (s: string) => void) => Promise<number>): Promise<string> {
  const lines: string[] = []
  const code = await fn(s => lines.push(s))
  if (code !== 0) throw new Error(`${what} failed (exit ${code}): ${lines.join(' ')}`)
  return lines.join('\n')
}

export interface Consortium { dirs: string[], ids: string[], p2p: number[], http: number[], manifestFile: string }

/**
 * A consortium of n nodes formed as operators form one: `init` each data directory, `manifest
 * create`, every member `manifest sign`, then `join` with the others as bootstrap peers on
 * 127.0.0.1. Node i trains on `datasets[i]`.
 */
export async function formConsortium (o: { root: string, n: number, name: string, datasets: string[], http: boolean, phaseMs: number, roundMs: number, rounds: number, manifestArgs: string[], nodeArgs: string[] }): Promise<Consortium> {
  const dirs = Array.from({ length: o.n }, (_, i) => join(o.root, `hospital-${i}`))
  const ids: string[] = []
  for (const d of dirs) ids.push((await cli('init', out => init(['--data-dir', d], out))).trim())
  const manifestFile = join(o.root, 'manifest.json')
  await cli('manifest create', out => manifestCommand(['create', '--name', o.name, ...ids.flatMap((id, i) => ['--member', `${id}=hospital ${i}`]),
    '--phase-ms', String(o.phaseMs), '--round-ms', String(o.roundMs), '--out', manifestFile, ...o.manifestArgs], out))
  for (const d of dirs) await cli('manifest sign', out => manifestCommand(['sign', '--data-dir', d, manifestFile], out))
  const [p2p, http] = [await freePorts(o.n), await freePorts(o.n)]
  for (let i = 0; i < o.n; i++) {
    await cli('join', out => joinConsortium(['--data-dir', dirs[i], '--manifest', manifestFile, '--listen', `/ip4/127.0.0.1/tcp/${p2p[i]}`,
      '--http', o.http ? `127.0.0.1:${http[i]}` : 'off', '--dataset', o.datasets[i], '--rounds', String(o.rounds), ...o.nodeArgs,
      ...ids.flatMap((id, j) => j === i ? [] : ['--bootstrap', `/ip4/127.0.0.1/tcp/${p2p[j]}/p2p/${id}`])], out))
  }
  return { dirs, ids, p2p, http, manifestFile }
}

export async function runProcessFederation (s: SimSetup): Promise<FederationResult> {
  const { n, rounds, data } = s
  if (s.malicious || s.latencyMs > 0 || s.bandwidthBytesPerMs !== undefined) {
    throw new Error('--malicious, --latency and --bandwidth need control of the wire: use them with --transport memory')
  }
  if (data.train.height !== data.train.width) throw new Error('the TCP transport needs square images')
  const root = join(s.outDir, 'nodes')
  rmSync(root, { recursive: true, force: true })
  mkdirSync(root, { recursive: true })

  // a consortium forms: identities, each hospital's own data file, a manifest every member signs
  const files = s.parts.map((_, i) => join(root, `hospital-${i}.npz`))
  files.forEach((f, i) => writeFileSync(f, encodeMedMnist({ train: subset(data.train, s.parts[i]), val: data.val ?? subset(data.train, []), test: subset(data.test, []) })))
  // phases wait for the slowest hospital's training (all share 2 cores here): give them room
  const largest = Math.max(...s.parts.map(p => p.length))
  const phaseMs = Math.max(10_000, Math.ceil(largest * s.epochs * (s.dp === null ? 1 : 4) / 80) * 1000)
  const roundMs = 12 * phaseMs
  const { dirs, ids, http } = await formConsortium({
    root, n, name: `simnet seed ${s.seed}`, datasets: files, http: true, phaseMs, roundMs, rounds,
    manifestArgs: ['--model', s.modelId, '--seed', String(s.seed), '--image-size', String(data.train.height), '--classes', String(data.train.classes.length),
      ...(s.dp === null ? [] : ['--dp-epsilon', String(s.dp.epsilon), '--dp-noise', String(s.dp.noise)])],
    nodeArgs: ['--epochs', String(s.epochs), '--batch-size', String(s.batchSize)]
  })
  const manifest: Manifest = new DataDir(dirs[0]).manifest()
  // member index (canonical order in the manifest) -> hospital
  const hospitalOf = manifest.members.map(m => ids.indexOf(m.peerId))
  s.out(`${n} nodes on 127.0.0.1 (TCP, Noise, Yamux, gossipsub), data directories in ${root}; phase timeout ${phaseMs / 1000} s`)

  const nodes = dirs.map((d, i) => new NodeProcess(d, http[i]))
  const started = Date.now()
  const rand = mulberry32(s.seed)
  const records: RoundRecord[] = []
  const victim = 1
  const ledgers = (): Array<Ledger | null> => dirs.map(d => { try { return new DataDir(d).ledger(manifest) } catch { return null } })
  try {
    for (const node of nodes) node.start()
    let certifiedUpdates = 0
    let bytesSoFar = 0
    const deadline = Date.now() + (rounds + 2) * roundMs + 120_000
    for (let r = 1; certifiedUpdates < rounds; r++) {
      if (Date.now() > deadline) throw new Error(`the simulation ran out of time in round ${r}`)
      const absent = drawAbsent(n, s.dropout, rand)
      if (s.killAt !== null && r === s.killAt) { absent.delete(victim); s.out(`round ${r}: hospital ${victim} crashes (SIGKILL)`); await nodes[victim].kill() }
      if (s.killAt !== null && r === s.killAt + 2 && !nodes[victim].alive) { s.out(`round ${r}: hospital ${victim} restarts on its data directory`); nodes[victim].start() }
      if (s.killAt !== null && r > s.killAt && r < s.killAt + 2) absent.delete(victim)
      for (const i of absent) await nodes[i].kill()
      // wait for round r to be certified somewhere, or abandoned by every running node
      let entry: ReturnType<Ledger['entries']['find']>
      let holder = -1
      for (;;) {
        await Promise.all(nodes.map(async nd => await nd.poll()))
        const all = ledgers()
        holder = all.findIndex(l => l?.entries.some(e => e.header.round === r) === true)
        if (holder >= 0) { entry = all[holder]!.entries.find(e => e.header.round === r); break }
        const beyond = all.every((l, i) => !nodes[i].alive || (l !== null && l.lastRound > r))
        const status = await Promise.all(nodes.map(async nd => nd.alive ? await fetch(`http://127.0.0.1:${nd.httpPort}/status`, { signal: AbortSignal.timeout(1000) }).then(async x => await x.json() as { round: number | null }).catch(() => null) : null))
        const moved = status.filter(x => x !== null).length > 0 && status.every((x, i) => !nodes[i].alive || (x !== null && x.round !== null && x.round > r))
        if (beyond || moved) break
        if (nodes.every(nd => !nd.alive)) throw new Error('every node has exited')
        if (Date.now() > deadline) throw new Error(`the simulation ran out of time in round ${r}`)
        await sleep(POLL_MS)
      }
      const certified = entry !== undefined
      let metrics = null
      if (certified && entry!.header.kind === 'update') {
        // a node writes the certified model once it holds it (it may have to fetch it first)
        const mh = hex(entry!.header.stateHash)
        let state = null
        for (let waited = 0; state === null && waited < 60_000; waited += POLL_MS) {
          state = dirs.map(d => new DataDir(d).state(mh)).find(x => x !== null) ?? null
          if (state === null) await sleep(POLL_MS)
        }
        const stats = ledgers()[holder]?.entries.find(e => e.header.kind === 'stats')
        if (state !== null) metrics = s.evaluate(state.weights, stats === undefined ? null : new Float64Array(new Uint8Array(stats.header.extra).buffer))
        certifiedUpdates++
      }
      await Promise.all(nodes.map(async nd => await nd.poll()))
      const bytesTotal = nodes.reduce((a, nd) => a + nd.bytes, 0)
      const ref = nodes.findIndex((nd, i) => nd.alive && !absent.has(i))
      const record: RoundRecord = {
        round: r,
        participants: certified ? entry!.header.survivors.map(m => hospitalOf[m]).sort((a, b) => a - b) : [],
        metrics,
        epsilon: dirs.map(d => new DataDir(d).budget()?.spent.epsilon ?? 0),
        bytes: bytesTotal - bytesSoFar,
        phaseMs: ref < 0 ? {} : phaseDurations(nodes[ref].log, r),
        offline: [...absent].sort()
      }
      bytesSoFar = bytesTotal
      records.push(record)
      s.out(progressLine(record, n, s.dp !== null))
      // the absent come back (they catch up from the others' ledgers), unless the run is over
      if (certifiedUpdates < rounds) for (const i of absent) if (!nodes[i].alive) nodes[i].start()
    }
    // every node stops by itself after its last round; give the stragglers time to catch up
    const end = Date.now() + Math.max(30_000, 2 * phaseMs)
    while (nodes.some(nd => nd.alive) && Date.now() < end) { await Promise.all(nodes.map(async nd => await nd.poll())); await sleep(POLL_MS) }
  } finally {
    for (const nd of nodes) await nd.kill()
  }
  const all = ledgers()
  const byRound = new Map<number, Set<string>>()
  for (const l of all) for (const e of l?.entries ?? []) { if (!byRound.has(e.header.round)) byRound.set(e.header.round, new Set()); byRound.get(e.header.round)!.add(hex(e.hash)) }
  const longest = Math.max(...all.map(l => l?.entries.length ?? 0))
  const peaks = nodes.map(nd => nd.peakRss)
  return {
    records,
    bytesPerNode: nodes.map(nd => nd.bytes),
    seconds: (Date.now() - started) / 1000,
    consistent: all.every(l => l !== null) && [...byRound.values()].every(x => x.size === 1),
    longest,
    atHead: all.filter(l => (l?.entries.length ?? 0) === longest).length,
    peakRssMB: Math.round(peaks.reduce((a, b) => a + b, 0) / 1e6),
    peakRssPerNodeMB: Math.round(Math.max(...peaks) / 1e6),
    rejections: nodes.reduce((a, nd) => a + nd.log.filter(l => /rejected/.test(l.msg)).length, 0),
    epsilon: dirs.map(d => new DataDir(d).budget()?.spent.epsilon ?? 0),
    transport: 'separate processes, libp2p over TCP on 127.0.0.1'
  }
}

/** Wall-clock milliseconds a node spent in each phase of round `r`, from its log. */
function phaseDurations (log: LogLine[], r: number): Record<string, number> {
  const out: Record<string, number> = {}
  const marks = log.map(l => ({ time: l.time, m: /^round (\d+): ([a-z-]+) — /.exec(l.msg) })).filter(x => x.m !== null && Number(x.m[1]) === r)
  for (let k = 0; k + 1 < marks.length; k++) {
    const phase = marks[k].m![2]
    if (PHASES.includes(phase)) out[phase] = (out[phase] ?? 0) + (marks[k + 1].time - marks[k].time)
  }
  return out
}
