/**
 * What the pure protocol asks its driver (the libp2p node, the in-memory network) to do. A round
 * (round.ts) and the chain of rounds (peer.ts) never send, store or log anything themselves: they
 * return these, and the driver carries each out (src/node/node.ts maps each to one service call).
 */
import type { RejectCode } from './errors.ts'
import type { Certificate, CertificateHeader } from './ledger.ts'
import type { GlobalState } from './model.ts'

export type Phase = 'advertise' | 'share-keys' | 'masked-input' | 'survivor-set' | 'unmask' | 'commit' | 'certified' | 'aborted'

export type RoundKind = 'update' | 'stats' | 'eval'

/** The actions of one round. */
export type RoundAction =
  | { type: 'broadcast', msgType: string, wire: Uint8Array, round: number }
  /** hold a blob for the members to fetch: a masked vector of the round, or a certified state */
  | { type: 'publish-blob', hash: string, data: Uint8Array, what: 'masked-vector' | 'state', round: number }
  /** fetch a blob by hash from any member (`owner` first): a masked vector, or a certified state this peer did not compute */
  | { type: 'fetch-blob', hash: string, owner: number, what: 'masked-vector' | 'state' }
  | { type: 'reject', code: RejectCode, reason: string, peer: number }
  | { type: 'phase', phase: Phase, detail: string, round: number }
  /** stateBytes: the state's canonical encoding where `state` is given (what the peer publishes), null otherwise */
  | { type: 'certified', certificate: Certificate, header: CertificateHeader, state: GlobalState | null, stats: Float64Array | null, stateBytes: Uint8Array | null }
  | { type: 'aborted', reason: string }

/** The actions of a peer: its rounds' and its own. */
export type PeerAction =
  | RoundAction
  | { type: 'round-started', round: number, kind: RoundKind }
  | { type: 'caught-up', round: number }
  /** a quorum certified a round on a ledger head this peer lacks: fetch the ledger from one of `from` and call catchUp */
  | { type: 'sync', round: number, from: number[] }
