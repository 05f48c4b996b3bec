/**
 * The node processes of the TCP transport: a consortium formed as operators form one, each
 * hospital's node started (and killed, and started again) as a process of its own, and what its
 * /metrics say, summed over its incarnations.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as setup from '../../src/node/setup.ts'
import type { NodeConfig } from '../../src/node/config.ts'
import type { TrafficKind } from '../../src/node/metrics.ts'
import { addTraffic, emptyTraffic } from './federation.ts'

const BIN = fileURLToPath(new URL('../../bin/medmesh.js', import.meta.url))
export const POLL_MS = 250

/** One sample of a Prometheus text exposition: name, labels, value. */
interface Sample { name: string, labels: Record<string, string>, value: number }

export function parsePrometheus (text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.startsWith('#')) continue
    const brace = line.indexOf('{')
    const space = line.lastIndexOf(' ')
    const name = brace >= 0 ? line.slice(0, brace) : line.slice(0, space)
    const labels: Record<string, string> = {}
    if (brace >= 0) for (const m of line.slice(brace + 1, line.lastIndexOf('}')).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = m[2]
    out.push({ name, labels, value: Number(line.slice(space + 1)) })
  }
  return out
}

/** What a node's metrics say, summed over its incarnations (a restart starts its counters afresh). */
export class NodeFigures {
  /** round -> kind -> bytes */
  readonly bytes = new Map<number, Record<TrafficKind, number>>()
  /** round -> phase -> seconds, as this node saw them */
  readonly phases = new Map<number, Record<string, number>>()
  total = 0
  rejected = 0
  #before = { bytes: new Map<number, Record<TrafficKind, number>>(), total: 0, rejected: 0 }
  #now = { bytes: new Map<number, Record<TrafficKind, number>>(), total: 0, rejected: 0 }

  take (samples: Sample[]): void {
    // counters only grow within one incarnation; a round's series the node no longer lists keeps its last value
    const now = { bytes: new Map([...this.#now.bytes].map(([r, k]) => [r, { ...k }])), total: 0, rejected: 0 }
    for (const x of samples) {
      if (x.name === 'medmesh_round_bytes_sent_total') {
        const r = Number(x.labels.round)
        if (!now.bytes.has(r)) now.bytes.set(r, emptyTraffic())
        now.bytes.get(r)![x.labels.kind as TrafficKind] = x.value
      } else if (x.name === 'medmesh_bytes_sent_total') now.total += x.value
      else if (x.name === 'medmesh_rejected_messages_total') now.rejected += x.value
      else if (x.name === 'medmesh_round_phase_seconds') {
        const r = Number(x.labels.round)
        this.phases.set(r, { ...(this.phases.get(r) ?? {}), [x.labels.phase]: x.value })
      }
    }
    this.#now = now
    this.#sum()
  }

  /** the node was killed: what it counted so far stays counted */
  restarted (): void {
    const b = this.#before
    for (const [r, kinds] of this.#now.bytes) {
      b.bytes.set(r, addTraffic(b.bytes.get(r) ?? emptyTraffic(), kinds))
    }
    b.total += this.#now.total
    b.rejected += this.#now.rejected
    this.#now = { bytes: new Map(), total: 0, rejected: 0 }
  }

  #sum (): void {
    this.bytes.clear()
    for (const source of [this.#before.bytes, this.#now.bytes]) {
      for (const [r, kinds] of source) {
        this.bytes.set(r, addTraffic(this.bytes.get(r) ?? emptyTraffic(), kinds))
      }
    }
    this.total = this.#before.total + this.#now.total
    this.rejected = this.#before.rejected + this.#now.rejected
  }
}

/** One hospital's node process; it can be killed and started again on the same data directory. */
export class NodeProcess {
  proc: ChildProcess | null = null
  exited: Promise<void> = Promise.resolve()
  peakRss = 0
  readonly figures = new NodeFigures()
  readonly dir: string
  readonly httpPort: number
  readonly #log: WriteStream
  constructor (dir: string, httpPort: number) { this.dir = dir; this.httpPort = httpPort; this.#log = createWriteStream(`${dir}.log`, { flags: 'a' }) }

  get alive (): boolean { return this.proc !== null }

  start (): void {
    const proc = spawn(process.execPath, [BIN, 'start', '--data-dir', this.dir], { env: { ...process.env, MEDMESH_LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] })
    this.proc = proc
    proc.stdout!.pipe(this.#log, { end: false }); proc.stderr!.pipe(this.#log, { end: false })
    this.exited = new Promise(resolve => proc.on('exit', () => { if (this.proc === proc) this.proc = null; resolve() }))
  }

  async kill (): Promise<void> {
    if (this.proc === null) return
    this.proc.kill('SIGKILL')
    await this.exited
    this.figures.restarted()
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
      this.figures.take(parsePrometheus(await (await fetch(`http://127.0.0.1:${this.httpPort}/metrics`, { signal: AbortSignal.timeout(1000) })).text()))
    } catch {}
  }

  async close (): Promise<void> {
    await this.kill()
    await new Promise(resolve => this.#log.end(resolve))
  }
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

export const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

export interface Consortium { dirs: string[], ids: string[], p2p: number[], http: number[], manifestFile: string }

/**
 * A consortium of n nodes formed as operators form one (src/node/setup.ts): each data directory
 * gets an identity, one manifest is written and every member signs it, then each joins with the
 * others as bootstrap peers on 127.0.0.1. Node i trains on `datasets[i]`.
 */
export async function formConsortium (o: {
  root: string, n: number, name: string, datasets: string[], http: boolean, rounds: number,
  manifest: Omit<setup.ManifestOptions, 'name' | 'members'>, node?: Partial<NodeConfig>, nodeOf?: (i: number) => Partial<NodeConfig>
}): Promise<Consortium> {
  const dirs = Array.from({ length: o.n }, (_, i) => join(o.root, `hospital-${i}`))
  const ids = dirs.map(d => setup.init(d).identity.peerId)
  const manifestFile = join(o.root, 'manifest.json')
  await setup.createManifest(manifestFile, { ...o.manifest, name: o.name, members: ids.map((peerId, i) => ({ peerId, name: `hospital ${i}` })) })
  for (const d of dirs) setup.signManifest(d, manifestFile)
  const [p2p, http] = [await freePorts(o.n), await freePorts(o.n)]
  dirs.forEach((d, i) => setup.join(d, manifestFile, {
    ...(o.node ?? {}), ...(o.nodeOf?.(i) ?? {}), listen: [`/ip4/127.0.0.1/tcp/${p2p[i]}`], http: o.http ? `127.0.0.1:${http[i]}` : 'off', dataset: o.datasets[i], rounds: o.rounds,
    bootstrap: ids.flatMap((id, j) => j === i ? [] : [`/ip4/127.0.0.1/tcp/${p2p[j]}/p2p/${id}`])
  }, o.manifest.init))
  return { dirs, ids, p2p, http, manifestFile }
}

