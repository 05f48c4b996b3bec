/**
 * The clinic's link to a holder: one stream per request of he-wire.ts. Responses are checked like
 * any bytes from the network (header size, schema, announced lengths within the limits).
 */
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import { channelOf } from '../network.ts'
import { readFramed, sendFramed } from '../wire.ts'
import type { EvaluationKeyBytes } from '../../inference/ckks.ts'
import { INFER_PROTOCOL, parseResponse, type ServedInfo } from '../../inference/he-wire.ts'

const RESPONSE_HEADER_BYTES = 64 * 1024

export class HolderLink {
  private readonly host: Libp2p
  private readonly address: string
  readonly timeoutMs: number

  constructor (host: Libp2p, address: string, timeoutMs = 60_000) {
    if (!address.includes('/p2p/')) throw new Error(`the holder's address must end in /p2p/<peer id>, got '${address}'`)
    this.host = host
    this.address = address
    this.timeoutMs = timeoutMs
  }

  private async request (header: Record<string, unknown>, body?: Uint8Array): Promise<{ header: ReturnType<typeof parseResponse>, body: Uint8Array }> {
    const stream = await this.host.dialProtocol(multiaddr(this.address), INFER_PROTOCOL, { signal: AbortSignal.timeout(this.timeoutMs) })
    const channel = channelOf(stream)
    await sendFramed(channel, header, body)
    return await readFramed(channel, RESPONSE_HEADER_BYTES, parseResponse, h => h.n ?? 0)
  }

  async info (): Promise<ServedInfo> {
    const r = await this.request({ op: 'info' })
    if (r.header.info === undefined) throw new Error('the holder answered info without a model description')
    return r.header.info
  }

  async openSession (keys: EvaluationKeyBytes): Promise<{ session: Uint8Array, expires: number }> {
    const body = new Uint8Array(keys.publicKey.length + keys.relinKeys.length + keys.galoisKeys.length)
    body.set(keys.publicKey, 0); body.set(keys.relinKeys, keys.publicKey.length); body.set(keys.galoisKeys, keys.publicKey.length + keys.relinKeys.length)
    const r = await this.request({ op: 'keys', pk: keys.publicKey.length, rk: keys.relinKeys.length, gk: keys.galoisKeys.length }, body)
    if (r.header.s === undefined || r.header.exp === undefined) throw new Error('the holder answered keys without a session')
    return { session: r.header.s, expires: r.header.exp }
  }

  async query (session: Uint8Array, ciphertext: Uint8Array): Promise<{ ciphertext: Uint8Array, round: number, state: string }> {
    const r = await this.request({ op: 'query', s: session, n: ciphertext.length }, ciphertext)
    if (r.body.length === 0 || r.header.round === undefined || r.header.state === undefined) throw new Error('the holder answered without a ciphertext')
    return { ciphertext: r.body, round: r.header.round, state: r.header.state }
  }
}
