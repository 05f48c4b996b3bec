/**
 * Prometheus metrics of a node (prom-client), served at /metrics. Bytes are counted where they
 * are sent, by kind and by the round they belong to (a gossip message's round, the round a masked
 * vector was made in, the round that certified a state, the round in progress for ledger sync),
 * so that a figure per round is exact; per-round series are kept for the last ROUNDS_KEPT rounds.
 */
import { Registry, Counter, Gauge, collectDefaultMetrics } from 'prom-client'

/** what a node sends: control messages, masked vectors, certified states, certificates on catch-up */
export type TrafficKind = 'gossip' | 'masked-vector' | 'state' | 'ledger'
export const ROUNDS_KEPT = 64

export function createMetrics () {
  const registry = new Registry()
  // prom-client's own names already say process_ or nodejs_: the prefix adds only medmesh_
  collectDefaultMetrics({ register: registry, prefix: 'medmesh_' })
  const bytesSent = new Counter({ name: 'medmesh_bytes_sent_total', help: 'bytes this node sent, by kind', labelNames: ['kind'], registers: [registry] })
  const roundBytes = new Counter({ name: 'medmesh_round_bytes_sent_total', help: 'bytes this node sent for a round, by kind', labelNames: ['round', 'kind'], registers: [registry] })
  const phaseSeconds = new Gauge({ name: 'medmesh_phase_seconds', help: 'seconds the last round spent in each phase', labelNames: ['phase'], registers: [registry] })
  const roundPhaseSeconds = new Gauge({ name: 'medmesh_round_phase_seconds', help: 'seconds a round spent in each phase here', labelNames: ['round', 'phase'], registers: [registry] })
  const labelled = new Map<number, Array<Record<string, string>>>()
  let phase: { round: number, name: string, since: number } | null = null
  return {
    registry,
    round: new Gauge({ name: 'medmesh_round', help: 'the round in progress', registers: [registry] }),
    certified: new Counter({ name: 'medmesh_rounds_certified_total', help: 'rounds certified by a quorum', registers: [registry] }),
    aborted: new Counter({ name: 'medmesh_rounds_aborted_total', help: 'rounds this node gave up', registers: [registry] }),
    peers: new Gauge({ name: 'medmesh_connected_members', help: 'members connected now', registers: [registry] }),
    epsilon: new Gauge({ name: 'medmesh_epsilon_spent', help: 'differential privacy ε spent by this hospital', registers: [registry] }),
    gossipAccepted: new Counter({ name: 'medmesh_gossip_accepted_total', help: 'gossip messages that passed validation (and so are relayed)', registers: [registry] }),
    rejected: new Counter({ name: 'medmesh_rejected_messages_total', help: 'inputs rejected, by reason', labelNames: ['code'], registers: [registry] }),
    refused: new Counter({ name: 'medmesh_refused_connections_total', help: 'connections refused to non-members', registers: [registry] }),
    bytesSent,
    phaseSeconds,

    /** `bytes` sent for `round`, of this kind */
    sent (kind: TrafficKind, round: number, bytes: number): void {
      bytesSent.inc({ kind }, bytes)
      if (round < 0) return
      const labels = { round: String(round), kind }
      roundBytes.inc(labels, bytes)
      remember(round, labels)
    },

    /** this node entered `name` of `round` at `now` (ms): the phase before it is timed */
    phaseEntered (round: number, name: string, now: number): void {
      if (phase !== null) {
        const seconds = (now - phase.since) / 1000
        phaseSeconds.set({ phase: phase.name }, seconds)
        const labels = { round: String(phase.round), phase: phase.name }
        roundPhaseSeconds.set(labels, seconds)
        remember(phase.round, labels)
      }
      phase = { round, name, since: now }
    }
  }

  /** keep per-round series of the last ROUNDS_KEPT rounds only: a node runs for months */
  function remember (round: number, labels: Record<string, string>): void {
    let list = labelled.get(round)
    if (list === undefined) { list = []; labelled.set(round, list) }
    if (!list.some(l => l.kind === labels.kind && l.phase === labels.phase)) list.push(labels)
    for (const [r, sets] of labelled) {
      if (r > round - ROUNDS_KEPT) continue
      for (const l of sets) { if ('kind' in l) roundBytes.remove(l); else roundPhaseSeconds.remove(l) }
      labelled.delete(r)
    }
  }
}
export type NodeMetrics = ReturnType<typeof createMetrics>
