/**
 * Compact, canonical binary encoding: deterministic CBOR (RFC 8949 section 4.2, through cborg),
 * decoded strictly (no duplicate keys, no indefinite lengths, no undefined/NaN/Infinity/bigint),
 * and only after a size check. Small schema helpers validate every decoded field.
 */
import { encode as cborEncode, decode as cborDecode } from 'cborg'
import { createHash } from 'node:crypto'
import { reject } from './errors.ts'

const DECODE_OPTIONS = {
  strict: true,
  rejectDuplicateMapKeys: true,
  allowIndefinite: false,
  allowUndefined: false,
  allowInfinity: false,
  allowNaN: false,
  allowBigInt: false
} as const

export function encodeCanonical (value: unknown): Uint8Array {
  return cborEncode(value)
}

/** Decode at most `maxBytes` of CBOR; anything else is a ProtocolError. */
export function decodeBounded (bytes: Uint8Array, maxBytes: number, what: string): unknown {
  if (!(bytes instanceof Uint8Array)) reject('malformed', `${what}: not bytes`)
  if (bytes.length > maxBytes) reject('too-large', `${what}: ${bytes.length} bytes, limit ${maxBytes}`)
  try {
    return cborDecode(bytes, DECODE_OPTIONS)
  } catch (e) {
    return reject('malformed', `${what}: undecodable CBOR (${(e as Error).message.slice(0, 80)})`)
  }
}

/** SHA-256 (native: masked vectors are tens of MB) */
export const hash = (bytes: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(bytes).digest())
export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
export const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.from(a).equals(Buffer.from(b))

// ---- schema helpers: each returns the validated value or throws ProtocolError('malformed') ----

export type Obj = Record<string, unknown>

export function obj (v: unknown, what: string, keys: readonly string[], optional: readonly string[] = []): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) reject('malformed', `${what} must be a map`)
  const o = v as Obj
  for (const k of Object.keys(o)) if (!keys.includes(k) && !optional.includes(k)) reject('malformed', `${what} has unexpected field '${k.slice(0, 20)}'`)
  for (const k of keys) if (!(k in o)) reject('malformed', `${what} lacks field '${k}'`)
  return o
}

export function uint (v: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) reject('malformed', `${what} must be an integer in [0, ${max}]`)
  return v as number
}

export function bytes (v: unknown, what: string, len?: number, maxLen = 1 << 22): Uint8Array {
  if (!(v instanceof Uint8Array)) reject('malformed', `${what} must be bytes`)
  const b = v as Uint8Array
  if (len !== undefined && b.length !== len) reject('malformed', `${what} must be ${len} bytes`)
  if (b.length > maxLen) reject('malformed', `${what} is longer than ${maxLen} bytes`)
  return b
}

export function arr<T> (v: unknown, what: string, maxLen: number, item: (x: unknown, i: number) => T): T[] {
  if (!Array.isArray(v)) reject('malformed', `${what} must be an array`)
  const a = v as unknown[]
  if (a.length > maxLen) reject('malformed', `${what} has more than ${maxLen} items`)
  return a.map(item)
}
