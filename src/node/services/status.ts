/**
 * Status and metrics: what the node tells its operators. It logs each event of the protocol peer
 * (a phase entered, a rejection, a certificate, an aborted round), counts it in the Prometheus
 * metrics, and serves the local observability endpoint (127.0.0.1 by default): /health, /status
 * (JSON: peers, round, phase, ε spent, last certificate) and /metrics.
 */
import { candidateFiguresLine, decisionAt, decisionLine, selectionStatus } from '../selection-status.ts'
import type { Startable } from '@libp2p/interface'
import type { Server } from 'node:http'
import type { Clock } from '../clock.ts'
import { startHttp } from '../http.ts'
import type { Logger } from '../logger.ts'
import type { NodeMetrics } from '../metrics.ts'
import { hex } from '../../protocol/codec.ts'
import type { RejectCode } from '../../protocol/errors.ts'
import type { LedgerEntry } from '../../protocol/ledger.ts'
import { consortiumId } from '../../protocol/manifest.ts'
import { stateHash } from '../../protocol/model.ts'
import type { ProtocolPeer } from '../../protocol/peer.ts'
import { bestModel, decodeValidation, degenerateReason, judgedRounds } from '../../protocol/validation.ts'
import type { TrainingSite } from '../../training/worker-site.ts'

/** What /status tells of the node. */
export interface NodeFacts {
  peer: Pick<ProtocolPeer, 'peerId' | 'manifest' | 'ledger' | 'round' | 'state'> & Partial<Pick<ProtocolPeer, 'absent'>>
  site: Pick<TrainingSite, 'options' | 'backend'>
  connectedMembers: () => number
  /** whether other members can dial this node (services/reachability.ts) */
  reachable?: () => string
  /** each other member and how this node is connected to it now */
  memberLinks?: () => Array<{ name: string, peerId: string, link: string }>
  addresses: () => string[]
  /** the round this node is training for and since when (ms), or null */
  training?: () => { round: number, since: number } | null
  clock: Pick<Clock, 'now'>
}

export interface StatusComponents extends NodeFacts {
  /** host:port, or 'off' */
  listen: string
  metrics: NodeMetrics
  log: Logger
}

export interface StatusService extends Startable {
  /** the port it listens on (0 when off) */
  readonly port: number
  status: () => Record<string, unknown>
  /** a round began; `absent`: the members this node does not wait for, each since the round after the last it took part in */
  roundStarted: (round: number, absent?: ReadonlyArray<{ member: number, since: number }>) => void
  phaseEntered: (round: number, phase: string, detail: string) => void
  rejected: (code: RejectCode, member: number, reason: string) => void
  certified: (entry: LedgerEntry) => void
  aborted: (reason: string) => void
}

export function createStatusService (c: StatusComponents): StatusService {
  let http: { server: Server, port: number } | null = null
  let phase = 'starting'
  let absentSaid = ''
  const status = (): Record<string, unknown> => nodeStatus(c, phase)
  return {
    get port () { return http?.port ?? 0 },
    async start () {
      if (c.listen === 'off') return
      http = await startHttp(c.listen, status, c.metrics)
      c.log.info(`status on http://${c.listen.replace(/:\d+$/, '')}:${http.port}/status`)
    },
    async stop () {
      const server = http?.server
      http = null
      if (server !== undefined) await new Promise<void>(resolve => server.close(() => resolve()))
    },
    status,
    roundStarted (round, absent = []) {
      c.metrics.round.set(round)
      const said = absent.map(a => `${c.peer.manifest.members[a.member]?.name ?? a.member} (since round ${a.since})`).join(', ')
      if (said !== absentSaid) c.log.info({ round, absent: absent.map(a => ({ name: c.peer.manifest.members[a.member]?.name, since: a.since })) }, said === '' ? `round ${round}: every member is present again` : `round ${round}: not waiting for absent members: ${said}`)
      absentSaid = said
    },
    phaseEntered (round, name, detail) {
      phase = name
      c.metrics.phaseEntered(round, name, c.clock.now())
      // the detail says what was just done; the phase is the one now entered
      c.log.info({ round, phase: name }, name === 'certified' || name === 'aborted' ? `round ${round}: ${detail}` : `round ${round}: ${detail}; now ${name}`)
    },
    rejected (code, member, reason) {
      c.metrics.rejected.inc({ code })
      c.log.warn({ member, code }, `rejected: ${reason}`)
    },
    certified (e) {
      c.metrics.certified.inc()
      c.log.info({ round: e.header.round, kind: e.header.kind, survivors: e.header.survivors.map(i => c.peer.manifest.members[i]?.name ?? String(i)), certificate: hex(e.hash).slice(0, 16), model: hex(e.header.stateHash).slice(0, 16) }, `round ${e.header.round} certified (${e.header.kind})`)
      const candidates = candidateFiguresLine(c.peer.manifest, c.peer.ledger.entries, e)
      if (candidates !== null) c.log.info({ round: e.header.round, selection: true }, candidates)
      const decision = decisionAt(c.peer.manifest, c.peer.ledger.entries, e)
      if (decision !== null) c.log.info({ round: e.header.round, selection: { rung: decision.rung + 1, live: decision.live.map(x => x + 1) } }, decisionLine(c.peer.manifest.params.selection!, decision))
      const v = e.header.kind === 'eval' ? decodeValidation(e.header.extra) : null
      if (v === null) return
      const degenerate = degenerateReason(v, c.peer.manifest.params.model.classes)
      const line = `round ${e.header.round}: consortium validation AUC ${v.auc.toFixed(3)}  ACC ${v.accuracy.toFixed(3)}  (n=${v.n}, pooled from ${e.header.survivors.length} sites)`
      if (degenerate === null) c.log.info({ round: e.header.round, auc: v.auc, accuracy: v.accuracy, degenerate: false }, line)
      else c.log.warn({ round: e.header.round, auc: v.auc, accuracy: v.accuracy, degenerate: true }, `${line}; DEGENERATE: ${degenerate}, so it has learnt nothing usable (the recipe may diverge on this data: see docs/OPERATIONS.md)`)
    },
    aborted (reason) {
      c.metrics.aborted.inc()
      c.log.warn(`round aborted: ${reason}`)
    }
  }
}

/** What /status answers: who this node is, its links, the round and phase, the last certificate, ε spent. */
export function nodeStatus (f: NodeFacts, phase: string): Record<string, unknown> {
  const { peer, site } = f
  const last = peer.ledger.last
  return {
    peerId: peer.peerId,
    consortium: peer.manifest.name,
    consortiumId: hex(consortiumId(peer.manifest)),
    members: peer.manifest.members.length,
    connectedMembers: f.connectedMembers(),
    reachable: f.reachable?.() ?? 'unknown',
    memberLinks: f.memberLinks?.() ?? [],
    absent: (peer.absent ?? []).map(a => ({ name: peer.manifest.members[a.member]?.name ?? String(a.member), since: a.since })),
    round: peer.round?.number ?? null,
    phase,
    certifiedRounds: peer.ledger.entries.length,
    lastCertificate: last === undefined ? null : { round: last.header.round, kind: last.header.kind, hash: hex(last.hash), survivors: last.header.survivors, survivorNames: last.header.survivors.map(i => peer.manifest.members[i]?.name ?? String(i)) },
    modelHash: hex(stateHash(peer.state)),
    validation: validationStatus(peer),
    selection: selectionStatus(peer.manifest, peer.ledger),
    epsilonSpent: site.options.budget?.spent.epsilon ?? null,
    backend: site.backend?.name ?? null,
    training: ((t) => t === null ? null : { round: t.round, seconds: Math.round((f.clock.now() - t.since) / 100) / 10 })(f.training?.() ?? null),
    addresses: f.addresses()
  }
}

/** The last validated model round and the chosen one (protocol/validation.ts bestModel), each with whether it is degenerate. */
export function validationStatus (peer: Pick<ProtocolPeer, 'manifest' | 'ledger'>): Record<string, unknown> {
  const classes = peer.manifest.params.model.classes
  const judged = judgedRounds(peer.ledger, classes)
  const last = judged.at(-1)
  const best = bestModel(peer.ledger, classes)
  const view = (j: typeof last) => j === undefined ? null : { round: j.model.header.round, auc: j.figures.auc, accuracy: j.figures.accuracy, smoothedAuc: j.smoothedAuc, degenerate: j.degenerate }
  return { last: view(last), chosen: view(best), degenerateRounds: judged.filter(j => j.degenerate !== null).map(j => j.model.header.round) }
}
