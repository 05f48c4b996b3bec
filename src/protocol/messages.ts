/**
 * Protocol messages: a signed envelope around a typed body, all in canonical CBOR.
 *
 * Wire form:   [ payload: bytes, signature: bytes(64) ]
 * payload:     { v: PROTOCOL_VERSION (2), t: type, c: consortium id (32 bytes), r: round, a: attempt, s: sender's member index, b: body }
 * signature:   Ed25519 by member s over payload, purpose "protocol-message" (see privacy/identity.ts)
 *
 * `openMessage` checks, in this order and before any work that scales with the input: size,
 * CBOR well-formedness, envelope schema, version, consortium, sender membership, signature, body
 * schema. Anything else is a ProtocolError naming the reason.
 */
import { NodeIdentity, verifySignature, SHARE_BYTES } from '../privacy/index.ts'
import { arr, bytes, decodeBounded, encodeCanonical, equalBytes, hash, obj, uint, type Obj } from './codec.ts'
import { reject } from './errors.ts'
import { MAX_MEMBERS, MAX_SLICES } from './manifest.ts'

/**
 * 2 (2026-12-05): Shamir shares of 35 bytes (GF(2^256 + 297)) and slices dealt to their aggregators
 * by blocks; a version-1 peer's messages are turned away as `bad-version` rather than misread.
 * 3 (2026-12-07): an eval certificate's figures include the classes predicted, the score bins and
 * the conformal thresholds (validation.ts); a version-2 peer would sign a different header for the
 * same sum, so its messages are turned away rather than split the quorum.
 */
export const PROTOCOL_VERSION = 3
/** below gossipsub's 4 MiB message limit (@libp2p/gossipsub's default maxTransmitSize): a masking-set proposal of 100 members is about 2.2 MB */
export const MAX_MESSAGE_BYTES = 3 * 1024 * 1024
export const MAX_ROUND = 2 ** 40
export const MAX_ATTEMPT = 1000

export const MSG = { advertise: 1, shareKeys: 2, proposal: 3, maskedInput: 4, ack: 5, reveal: 6, commit: 7, sliceSums: 8 } as const
export type MsgType = typeof MSG[keyof typeof MSG]
export const MSG_NAME: Record<number, string> = Object.fromEntries(Object.entries(MSG).map(([k, v]) => [v, k]))

export interface AdvertiseBody { boxKey: Uint8Array, maskKey: Uint8Array, selfMaskCommitment: Uint8Array }
export interface ShareKeysBody { advertsSeen: Array<[number, Uint8Array]>, boxes: Array<[number, Uint8Array]> }
/** set 1: the masking set (advertisements + share keys); set 2: the survivor set (masked-input commitments) */
export interface ProposalBody { set: 1 | 2, maskingSetId: Uint8Array, messages: Uint8Array[] }
/** sliced mode: `sliceHashes` are the hashes of the vector's slices and `vectorHash` their root (sliced.ts commitSlices, sliceRoot) */
export interface MaskedInputBody { maskingSetId: Uint8Array, vectorHash: Uint8Array, length: number, sliceHashes?: Uint8Array[] }
export interface AckBody { proposalId: Uint8Array }
export interface RevealBody { proposalId: Uint8Array, selfMaskShares: Array<[number, Uint8Array]>, keyShares: Array<[number, Uint8Array]> }
export interface CommitBody { header: Uint8Array, signature: Uint8Array }
/** an aggregator's sums of its slices over the certified survivor set `proposalId`: [slice, SHA-256 of the unmasked slice sum] */
export interface SliceSumsBody { proposalId: Uint8Array, sums: Array<[number, Uint8Array]> }

export type Body = AdvertiseBody | ShareKeysBody | ProposalBody | MaskedInputBody | AckBody | RevealBody | CommitBody | SliceSumsBody

export interface Envelope<B = Body> {
  version: number
  type: MsgType
  consortium: Uint8Array
  round: number
  attempt: number
  sender: number
  body: B
}

export interface OpenedMessage<B = Body> {
  env: Envelope<B>
  /** SHA-256 of the payload: the message's identity */
  id: Uint8Array
  /** the exact wire bytes, for re-broadcast or inclusion in a proposal */
  wire: Uint8Array
}

export interface MessageContext {
  consortium: Uint8Array
  /** Ed25519 public keys of the members, by member index */
  memberKeys: readonly Uint8Array[]
}

/**
 * Each body's keys on the wire (name in memory → short key on the wire). The short keys keep
 * messages small and the wire format unchanged; in memory every field says what it is.
 */
const WIRE_KEYS: Record<MsgType, Record<string, string>> = {
  [MSG.advertise]: { boxKey: 'ck', maskKey: 'sk', selfMaskCommitment: 'bc' },
  [MSG.shareKeys]: { advertsSeen: 'adv', boxes: 'box' },
  [MSG.proposal]: { set: 'ph', maskingSetId: 'mh', messages: 'm' },
  [MSG.maskedInput]: { maskingSetId: 'mh', vectorHash: 'h', length: 'n', sliceHashes: 'sh' },
  [MSG.ack]: { proposalId: 'ph' },
  [MSG.reveal]: { proposalId: 'ph', selfMaskShares: 'bs', keyShares: 'ks' },
  [MSG.commit]: { header: 'hdr', signature: 'sig' },
  [MSG.sliceSums]: { proposalId: 'ph', sums: 'ss' }
}

function bodyToWire (t: MsgType, body: Body): Record<string, unknown> {
  const named = body as unknown as Record<string, unknown>
  // an optional field that is absent stays off the wire (all-to-all masked inputs are unchanged)
  return Object.fromEntries(Object.entries(WIRE_KEYS[t]).filter(([name]) => named[name] !== undefined).map(([name, key]) => [key, named[name]]))
}

export function sealMessage (identity: NodeIdentity, env: Envelope): Uint8Array {
  const payload = encodeCanonical({ v: env.version, t: env.type, c: env.consortium, r: env.round, a: env.attempt, s: env.sender, b: bodyToWire(env.type, env.body) })
  return encodeCanonical([payload, identity.sign('protocol-message', payload)])
}

const MAX_N = MAX_MEMBERS
const pairList = (v: unknown, what: string, len?: number, maxLen?: number): Array<[number, Uint8Array]> =>
  arr(v, what, MAX_N, (x, i) => {
    const p = arr(x, `${what}[${i}]`, 2, y => y)
    if (p.length !== 2) reject('malformed', `${what}[${i}] must be a pair`)
    return [uint(p[0], `${what}[${i}][0]`, MAX_N - 1), bytes(p[1], `${what}[${i}][1]`, len, maxLen)]
  })

function validateBody (t: number, b: unknown): Body {
  switch (t) {
    case MSG.advertise: {
      const o = obj(b, 'advertise', ['ck', 'sk', 'bc'])
      return { boxKey: bytes(o.ck, 'ck', 32), maskKey: bytes(o.sk, 'sk', 32), selfMaskCommitment: bytes(o.bc, 'bc', 32) }
    }
    case MSG.shareKeys: {
      const o = obj(b, 'shareKeys', ['adv', 'box'])
      return { advertsSeen: pairList(o.adv, 'adv', 32), boxes: pairList(o.box, 'box', undefined, 1024) }
    }
    case MSG.proposal: {
      const o = obj(b, 'proposal', ['ph', 'mh', 'm'])
      const ph = uint(o.ph, 'ph', 2)
      if (ph !== 1 && ph !== 2) reject('malformed', 'proposal.ph must be 1 or 2')
      return { set: ph as 1 | 2, maskingSetId: bytes(o.mh, 'mh', 32), messages: arr(o.m, 'proposal.m', 2 * MAX_N, (x, i) => bytes(x, `proposal.m[${i}]`, undefined, 64 * 1024)) }
    }
    case MSG.maskedInput: {
      const o = obj(b, 'maskedInput', ['mh', 'h', 'n'], ['sh'])
      const body: MaskedInputBody = { maskingSetId: bytes(o.mh, 'mh', 32), vectorHash: bytes(o.h, 'h', 32), length: uint(o.n, 'n', 2 ** 28) }
      if (o.sh !== undefined) body.sliceHashes = arr(o.sh, 'maskedInput.sh', MAX_SLICES, (x, i) => bytes(x, `maskedInput.sh[${i}]`, 32))
      return body
    }
    case MSG.ack: {
      const o = obj(b, 'ack', ['ph'])
      return { proposalId: bytes(o.ph, 'ph', 32) }
    }
    case MSG.reveal: {
      const o = obj(b, 'reveal', ['ph', 'bs', 'ks'])
      return { proposalId: bytes(o.ph, 'ph', 32), selfMaskShares: pairList(o.bs, 'bs', SHARE_BYTES), keyShares: pairList(o.ks, 'ks', SHARE_BYTES) }
    }
    case MSG.commit: {
      const o = obj(b, 'commit', ['hdr', 'sig'])
      return { header: bytes(o.hdr, 'hdr', undefined, 4096), signature: bytes(o.sig, 'sig', 64) }
    }
    case MSG.sliceSums: {
      const o = obj(b, 'sliceSums', ['ph', 'ss'])
      const sums = arr(o.ss, 'sliceSums.ss', MAX_SLICES, (x, i) => {
        const p = arr(x, `ss[${i}]`, 2, y => y)
        if (p.length !== 2) reject('malformed', `ss[${i}] must be a pair`)
        return [uint(p[0], `ss[${i}][0]`, MAX_SLICES - 1), bytes(p[1], `ss[${i}][1]`, 32)] as [number, Uint8Array]
      })
      return { proposalId: bytes(o.ph, 'ph', 32), sums }
    }
    default:
      return reject('malformed', `unknown message type ${t}`)
  }
}

export function openMessage (wire: Uint8Array, ctx: MessageContext, maxBytes = MAX_MESSAGE_BYTES): OpenedMessage {
  const outer = decodeBounded(wire, maxBytes, 'message')
  if (!Array.isArray(outer) || outer.length !== 2) reject('malformed', 'message must be [payload, signature]')
  const [payload, sig] = outer as unknown[]
  const p = bytes(payload, 'payload', undefined, maxBytes)
  const s = bytes(sig, 'signature', 64)
  const o = obj(decodeBounded(p, maxBytes, 'payload'), 'payload', ['v', 't', 'c', 'r', 'a', 's', 'b']) as Obj
  if (o.v !== PROTOCOL_VERSION) reject('bad-version', `protocol version ${String(o.v).slice(0, 10)}, expected ${PROTOCOL_VERSION}`)
  const t = uint(o.t, 'type', 255)
  const c = bytes(o.c, 'consortium', 32)
  if (!equalBytes(c, ctx.consortium)) reject('wrong-consortium', 'message is for another consortium')
  const r = uint(o.r, 'round', MAX_ROUND)
  const a = uint(o.a, 'attempt', MAX_ATTEMPT)
  const sender = uint(o.s, 'sender', 255)
  if (sender >= ctx.memberKeys.length) reject('not-member', `sender index ${sender} is not a member`)
  if (!verifySignature(ctx.memberKeys[sender], 'protocol-message', p, s)) reject('bad-signature', `bad signature from member ${sender}`)
  const b = validateBody(t, o.b)
  return { env: { version: PROTOCOL_VERSION, type: t as MsgType, consortium: c, round: r, attempt: a, sender: sender, body: b }, id: hash(p), wire }
}
