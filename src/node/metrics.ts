/** Prometheus metrics of a node (prom-client), served at /metrics. */
import { Registry, Counter, Gauge, collectDefaultMetrics } from 'prom-client'

export function createMetrics () {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'medmesh_process_' })
  return {
    registry,
    round: new Gauge({ name: 'medmesh_round', help: 'the round in progress', registers: [registry] }),
    certified: new Counter({ name: 'medmesh_rounds_certified_total', help: 'rounds certified by a quorum', registers: [registry] }),
    aborted: new Counter({ name: 'medmesh_rounds_aborted_total', help: 'rounds this node gave up', registers: [registry] }),
    peers: new Gauge({ name: 'medmesh_connected_members', help: 'members connected now', registers: [registry] }),
    epsilon: new Gauge({ name: 'medmesh_epsilon_spent', help: 'differential privacy ε spent by this hospital', registers: [registry] }),
    rejected: new Counter({ name: 'medmesh_rejected_messages_total', help: 'inputs rejected, by reason', labelNames: ['code'], registers: [registry] }),
    refused: new Counter({ name: 'medmesh_refused_connections_total', help: 'connections refused to non-members', registers: [registry] }),
    bytesSent: new Counter({ name: 'medmesh_bytes_sent_total', help: 'bytes this node sent in messages and blobs', labelNames: ['kind'], registers: [registry] }),
    phaseSeconds: new Gauge({ name: 'medmesh_phase_seconds', help: 'seconds the last round spent in each phase', labelNames: ['phase'], registers: [registry] })
  }
}
export type NodeMetrics = ReturnType<typeof createMetrics>
