/**
 * What a Round is given (its options) and the shape of its progress: the round's contract with
 * ProtocolPeer (peer.ts), apart from its mechanics (round.ts).
 */
import type { NodeIdentity, RandomSource } from '../privacy/index.ts'
import type { CertificateKind } from './ledger.ts'
import type { Manifest } from './manifest.ts'
import type { AdvertiseBody } from './messages.ts'
import type { GlobalState } from './model.ts'

export interface RoundOptions {
  manifest: Manifest
  consortium: Uint8Array
  memberKeys: readonly Uint8Array[]
  identity: NodeIdentity
  round: number
  /** hash of the last certificate (the consortium id before the first) */
  prev: Uint8Array
  state: GlobalState
  /** the candidates' models `state` holds while recipe selection runs (selection.ts roundCandidates; absent: 1) */
  parts?: number
  kind: Exclude<CertificateKind, 'membership'>
  rng: RandomSource
  now: number
  /** how long the survivor-set proposer waits for missing inputs after its own (default: the phase timeout; ProtocolPeer adapts it) */
  inputWaitMs?: number
  /** how long to wait for every member's advertisement before sharing keys (default: the phase timeout) */
  advertiseWaitMs?: number
  /** the last certified round's survivors: a proposer outside them is away (presence.ts), and the masking-set proposer keeps them over others in a tie */
  lastSurvivors?: readonly number[]
  /** this peer lacks the previous round's certificate (it jumped ahead to the others' round) */
  behind?: boolean
  /** the members whose advertisements are awaited before sharing keys (default: all; presence.ts) */
  expectedAdverts?: readonly number[]
  /** sliced mode: fetch and sum every survivor's whole masked vector, and sign only a sum that matches (sliced.ts) */
  checkAll?: boolean
}

export interface Advert { id: Uint8Array, wire: Uint8Array, body: AdvertiseBody }
/** an agreed set: the masking set (proposal 1) */
export interface Proposal { id: Uint8Array, attempt: number, members: number[] }
/** the round's aggregate: its certificate header and what it certifies (the state's encoding made once) */
export type Result = { header: Uint8Array, state: GlobalState | null, stats: Float64Array | null, stateBytes: Uint8Array | null }

/** How far a peer has come in its round after the masking set (masking-set.ts keeps the steps before): each step's fact, absent until it happened (no sentinels). */
export interface Progress {
  inputSent: boolean
  revealed: boolean
  result?: Result
}
