/**
 * The exchange a round's parameters ask for (exchange.ts): all-to-all without `params.slicing`,
 * sliced with it, its slices cut for the round's input length. A round makes it at the start, and
 * again if a late certificate changes that length before any masked input (recipe selection).
 */
import type { Exchange } from './exchange.ts'
import type { SlicingParams } from './manifest.ts'
import { assignmentSeed } from './slices.ts'
import { WholeExchange } from './whole-exchange.ts'
import { SlicedExchange } from './sliced-exchange.ts'

export interface ExchangeSpec {
  slicing: SlicingParams | undefined
  me: number
  peerIds: string[]
  /** the round's input length in words */
  length: number
  /** the ledger head the round extends (it may move: rebase), which seeds the slices' aggregators */
  prev: () => Uint8Array
  consortium: Uint8Array
  round: number
  phaseMs: number
  checkAll: boolean | undefined
}

export function exchangeFor (s: ExchangeSpec): Exchange {
  if (s.slicing === undefined) return new WholeExchange()
  return new SlicedExchange({ me: s.me, peerIds: s.peerIds, slicing: s.slicing, length: s.length, prev: s.prev, seedOf: prev => assignmentSeed(s.consortium, s.round, prev), phaseMs: s.phaseMs, checkAll: s.checkAll })
}
