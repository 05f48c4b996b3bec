/**
 * An in-memory, seeded network of protocol peers: broadcast with random latency, a
 * content-addressed blob store, simulated time, peers that go offline at a chosen step, and a
 * hook that lets a test play a malicious peer. Pure (no I/O, no clock): tests and benchmarks
 * drive whole consortia with it in one process.
 */
import { NodeIdentity, seededRandom } from '../privacy/index.ts'
import { ProtocolPeer, type PeerAction, type PeerOptions, type RoundKind } from './peer.ts'
import { defaultParams, validateManifest, type Manifest, type ProtocolParams } from './manifest.ts'
import { initialState, stateHash, type GlobalState } from './model.ts'
import { selectionStartState } from './selection.ts'
import { hex } from './codec.ts'

/** Small, fast, seeded PRNG for scheduling only (never for anything secret). */
export function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export interface NetOptions {
  n: number
  seed?: number
  modelSize?: number
  params?: (p: ProtocolParams) => void
  /** input of member i for a round: values and sample count */
  input?: (member: number, round: number, kind: RoundKind) => { values: ArrayLike<number>, count: number } | null
  kindOf?: (round: number) => RoundKind
  lastRound?: number
  /** delivery delay: base milliseconds (plus up to 20 ms of jitter), and blob bandwidth in bytes per ms */
  latencyMs?: number
  bandwidthBytesPerMs?: number
  /** the model's initial weights (default: a small synthetic vector of modelSize) */
  initialWeights?: Float32Array
  /** the initial weights of the model at another width (recipe selection's candidates of other widths) */
  initialOf?: (width: number) => Float32Array
  /** see PeerOptions.adaptiveTimeouts */
  adaptiveTimeouts?: boolean
  /** members that check everything (PeerOptions.checkAll) */
  checkers?: readonly number[]
}

interface Delivery { at: number, seq: number, to: number, wire?: Uint8Array, blob?: { hash: string, data: Uint8Array }, sync?: { from: number }, input?: { values: ArrayLike<number>, count: number, round: number } }

export class MemNet {
  readonly identities: NodeIdentity[]
  readonly manifest: Manifest
  readonly peers: ProtocolPeer[]
  readonly online: boolean[]
  readonly blobs = new Map<string, Uint8Array>()
  /** every action carried out, with the simulated time it happened */
  readonly log: Array<{ peer: number, action: PeerAction, at: number }> = []
  readonly rand: () => number
  now = 0
  #queue: Delivery[] = []
  #seq = 0
  #pendingFetches: Array<{ peer: number, hash: string }> = []
  /**
   * members whose input is ready only this many ms after the masking set includes them: they
   * train slowly and, like a node whose thread is busy training, handle nothing else until then
   */
  readonly slow = new Map<number, number>()
  readonly #busyUntil = new Map<number, number>()
  /** go offline instead of broadcasting a message of this type, per member */
  dropBefore = new Map<number, string>()
  /** rewrite (or drop, with []) what member i broadcasts, per recipient */
  tamper: ((from: number, msgType: string, wire: Uint8Array, to: number) => Uint8Array[]) | null = null
  readonly initial: GlobalState
  readonly options: NetOptions

  constructor (o: NetOptions) {
    this.options = o
    const seed = o.seed ?? 1
    this.rand = mulberry32(seed)
    const idRng = seededRandom(Uint8Array.from({ length: 32 }, (_, i) => (seed * 31 + i) & 0xff))
    const ids = Array.from({ length: o.n }, () => NodeIdentity.generate(idRng))
    const weights = o.initialWeights ?? Float32Array.from({ length: o.modelSize ?? 16 }, (_, i) => Math.sin(i) / 10)
    const initial = initialState(weights)
    const params = defaultParams(o.n, weights.length, hex(stateHash(initial)))
    params.timeouts = { phaseMs: 500, roundMs: 20_000 }
    o.params?.(params)
    this.manifest = validateManifest({ version: 1, name: 'test consortium', members: ids.map((id, i) => ({ peerId: id.peerId, name: `hospital ${i}` })), params })
    this.initial = selectionStartState(initial, this.manifest.params.selection, o.initialOf)
    // member index = position in the manifest's canonical order
    this.identities = this.manifest.members.map(m => ids.find(id => id.peerId === m.peerId)!)
    this.online = this.identities.map(() => true)
    this.peers = this.identities.map((_, i) => this.makePeer(i))
  }

  /** Member i's peer; `restart` gives what a restarted node brings back from its disk. */
  makePeer (i: number, restart: Pick<PeerOptions, 'ledger' | 'state' | 'firstRound'> = {}): ProtocolPeer {
    const o = this.options
    return new ProtocolPeer({
      ...restart,
      manifest: this.manifest,
      identity: this.identities[i],
      rng: seededRandom(Uint8Array.from({ length: 32 }, (_, j) => (i * 7 + j + (o.seed ?? 1)) & 0xff)),
      initialState: this.initial,
      kindOf: o.kindOf,
      lastRound: o.lastRound,
      adaptiveTimeouts: o.adaptiveTimeouts,
      checkAll: o.checkers?.includes(i),
      inputFor: (round, kind) => this.slow.has(i) ? null : o.input?.(i, round, kind) ?? null
    })
  }

  startAll (): void {
    this.peers.forEach((p, i) => { if (this.online[i]) p.start(this.now) })
    this.flushAll()
  }

  flushAll (): void {
    this.peers.forEach((_, i) => this.flush(i))
  }

  /** Carry out a peer's actions. */
  flush (i: number): void {
    const peer = this.peers[i]
    for (const action of peer.takeActions()) {
      if (!this.online[i]) return
      this.log.push({ peer: i, action, at: this.now })
      switch (action.type) {
        case 'broadcast': {
          if (this.dropBefore.get(i) === action.msgType) { this.online[i] = false; return }
          for (let j = 0; j < this.peers.length; j++) {
            if (j === i) continue
            const wires = this.tamper?.(i, action.msgType, action.wire, j) ?? [action.wire]
            for (const wire of wires) this.#enqueue({ to: j, wire })
          }
          break
        }
        case 'publish-blob':
          this.blobs.set(action.hash, action.data)
          break
        case 'fetch-blob':
          this.#pendingFetches.push({ peer: i, hash: action.hash })
          break
        case 'phase': {
          // like a node, a slow member trains once the masking set includes it
          const delay = this.slow.get(i)
          const round = peer.round
          const input = delay === undefined || action.phase !== 'masked-input' || round === null || !round.inputExpected ? null : this.options.input?.(i, round.number, round.kind) ?? null
          if (input !== null) {
            this.#busyUntil.set(i, this.now + delay!)
            this.#enqueue({ to: i, input: { ...input, round: round!.number } }, delay)
          }
          break
        }
        case 'sync': {
          // ask the first signer that is online for its ledger (as a node does on its ledger protocol)
          // (no member named: any that is online)
          const named = action.from.length > 0 ? action.from : this.peers.map((_, j) => j)
          const from = named.find(j => j !== i && this.online[j])
          if (from !== undefined) this.#enqueue({ to: i, sync: { from } })
          break
        }
      }
    }
  }

  #enqueue (d: Omit<Delivery, 'at' | 'seq'>, delay?: number): void {
    const o = this.options
    if (delay !== undefined) { this.#queue.push({ ...d, at: this.now + delay, seq: this.#seq++ }); return }
    const size = d.blob?.data.length ?? d.wire?.length ?? 0
    const transfer = o.bandwidthBytesPerMs !== undefined ? size / o.bandwidthBytesPerMs : 0
    this.#queue.push({ ...d, at: this.now + 1 + (o.latencyMs ?? 0) + Math.floor(this.rand() * 20) + Math.ceil(transfer), seq: this.#seq++ })
  }

  /** Deliver raw bytes to member `to` as if from the network. */
  inject (to: number, wire: Uint8Array): void {
    this.#enqueue({ to, wire })
  }

  /** Run until `done()` or simulated `maxMs` more have passed. */
  run (done: () => boolean, maxMs = 60_000): void {
    const end = this.now + maxMs
    let nextTick = this.now + 50
    while (!done() && this.now < end) {
      // serve blob fetches from the store
      const waiting = this.#pendingFetches.splice(0)
      for (const f of waiting) {
        const data = this.blobs.get(f.hash)
        if (data !== undefined) this.#enqueue({ to: f.peer, blob: { hash: f.hash, data } })
        else this.#pendingFetches.push(f)
      }
      this.#queue.sort((a, b) => a.at - b.at || a.seq - b.seq)
      const next = this.#queue[0]
      if (next !== undefined && next.at <= nextTick) {
        this.#queue.shift()
        this.now = Math.max(this.now, next.at)
        if (!this.online[next.to]) continue
        const busy = this.#busyUntil.get(next.to) ?? -1
        if (next.input === undefined && busy > this.now) { this.#queue.push({ ...next, at: busy, seq: this.#seq++ }); continue }
        if (next.wire !== undefined) this.peers[next.to].receive(next.wire, this.now)
        else if (next.blob !== undefined) this.peers[next.to].receiveBlob(next.blob.hash, next.blob.data, this.now)
        else if (next.sync !== undefined) this.serveLedger(next.sync.from, next.to)
        else if (next.input !== undefined && this.peers[next.to].round?.number === next.input.round) this.peers[next.to].setInput(next.input.values, next.input.count, this.now)
        this.flush(next.to)
      } else {
        this.now = nextTick
        nextTick += 50
        this.peers.forEach((p, i) => { if (this.online[i] && (this.#busyUntil.get(i) ?? -1) <= this.now) { p.tick(this.now); this.flush(i) } })
      }
    }
  }

  /** Member `to` catches up from member `from`'s certificates and certified state (checked by catchUp). */
  serveLedger (from: number, to: number): void {
    const donor = this.peers[from]
    const entries = donor.ledger.after(this.peers[to].ledger.lastRound)
    const last = donor.ledger.lastOf('update')
    try {
      this.peers[to].catchUp(entries.map(e => e.certificate), last === undefined ? null : this.blobs.get(hex(last.header.stateHash)) ?? null, this.now)
    } catch (e) {
      this.log.push({ peer: to, action: { type: 'reject', code: 'sync-failed', reason: (e as Error).message, peer: from }, at: this.now })
    }
  }

  actions<T extends PeerAction['type']> (type: T, peer?: number): Array<Extract<PeerAction, { type: T }>> {
    return this.log.filter(l => l.action.type === type && (peer === undefined || l.peer === peer)).map(l => l.action as Extract<PeerAction, { type: T }>)
  }

  honest (): number[] { return this.peers.map((_, i) => i).filter(i => this.online[i]) }
}
