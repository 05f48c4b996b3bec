export const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'))
export const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
/** A deterministic 32-byte seed for tests: byte i = (tag + i) mod 256. */
export const testSeed = (tag: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (tag + i) & 0xff)
