/**
 * The two stream protocols, in length-prefixed frames of at most 1 MiB (it-length-prefixed,
 * piped with it-pipe, so a slow reader slows the writer):
 *
 *   /medmesh/blob/1.0.0    request {h: SHA-256}; response {n: length} then n bytes, or {n: -1}
 *   /medmesh/ledger/1.0.0  request {from: round}; response {c: [certificates after it], s: state bytes or empty}
 *
 * Requests and response headers are canonical CBOR, decoded with a size limit; a blob is
 * accepted only if its SHA-256 is the one asked for.
 */
import { pipe } from 'it-pipe'
import * as lp from 'it-length-prefixed'
import type { Uint8ArrayList } from 'uint8arraylist'
import { decodeBounded, encodeCanonical, hash, hex, obj, uint, bytes, arr } from '../protocol/codec.ts'
import { reject } from '../protocol/errors.ts'

export const BLOB_PROTOCOL = '/medmesh/blob/1.0.0'
export const LEDGER_PROTOCOL = '/medmesh/ledger/1.0.0'
export const FRAME_BYTES = 1024 * 1024
export const MAX_BLOB_BYTES = 512 * 1024 * 1024

function * frames (data: Uint8Array): Generator<Uint8Array> {
  for (let off = 0; off < data.length; off += FRAME_BYTES) yield data.subarray(off, Math.min(data.length, off + FRAME_BYTES))
}

/**
 * One stream of a protocol, as the services see it: bytes in, bytes out, and a way to give up.
 * The node's network (network.ts) makes one from a libp2p stream; tests make them in memory.
 */
export interface Channel {
  source: AsyncIterable<Uint8Array | Uint8ArrayList>
  sink: (source: Iterable<Uint8Array | Uint8ArrayList> | AsyncIterable<Uint8Array | Uint8ArrayList>) => Promise<void>
  abort: (err: Error) => void
}

/** Write a header and a body as frames, then close our end. */
export async function sendFramed (channel: Channel, header: unknown, body: Uint8Array = new Uint8Array(0)): Promise<void> {
  await pipe([encodeCanonical(header), ...frames(body)], (src) => lp.encode(src, { maxDataLength: FRAME_BYTES }), channel.sink)
}

/** Read a header (at most `maxHeader` bytes) and then exactly `bodyLength(header)` bytes of frames. */
export async function readFramed<H> (channel: Channel, maxHeader: number, parseHeader: (v: unknown) => H, bodyLength: (h: H) => number): Promise<{ header: H, body: Uint8Array }> {
  return await pipe(channel.source, (src) => lp.decode(src, { maxDataLength: FRAME_BYTES }), async (src) => {
    let header: H | undefined
    let body: Uint8Array | undefined
    let filled = 0
    let need = 0
    for await (const chunk of src) {
      if (header === undefined) {
        header = parseHeader(decodeBounded(chunk.subarray(), maxHeader, 'stream header'))
        need = bodyLength(header)
        if (need < 0) break
        if (need > MAX_BLOB_BYTES) reject('too-large', `peer announced ${need} bytes, more than the ${MAX_BLOB_BYTES} limit`)
        body = new Uint8Array(need)
        if (need === 0) break
        continue
      }
      if (filled + chunk.byteLength > need) reject('too-large', 'peer sent more bytes than it announced')
      // copy the frame's pieces straight into place: chunk.subarray() would first join them
      for (const piece of chunk) { body!.set(piece, filled); filled += piece.byteLength }
      if (filled === need) break
    }
    if (header === undefined) return reject('malformed', 'stream ended before a header')
    if (filled !== need && need > 0) reject('malformed', `stream ended after ${filled} of ${need} bytes`)
    return { header, body: body ?? new Uint8Array(0) }
  })
}

export const parseBlobRequest = (v: unknown): Uint8Array => bytes(obj(v, 'blob request', ['h']).h, 'h', 32)
export const parseBlobHeader = (v: unknown): number => {
  const n = obj(v, 'blob header', ['n']).n
  if (n === -1) return -1
  return uint(n, 'n', MAX_BLOB_BYTES)
}
export const parseLedgerRequest = (v: unknown): number => {
  const from = obj(v, 'ledger request', ['from']).from
  return from === -1 ? -1 : uint(from, 'from')
}
export interface LedgerHeader { certs: Uint8Array[], n: number }
export const parseLedgerHeader = (v: unknown): LedgerHeader => {
  const o = obj(v, 'ledger header', ['c', 'n'])
  return { certs: arr(o.c, 'certificates', 100_000, (x, i) => bytes(x, `certificate ${i}`, undefined, 200_000)), n: uint(o.n, 'n', MAX_BLOB_BYTES) }
}

/** Verify a fetched blob against the hash that named it. */
export function checkBlob (hashHex: string, data: Uint8Array): boolean {
  return hex(hash(data)) === hashHex
}
