/**
 * bench/x25519: X25519 key agreement through node:crypto (what medmesh uses, src/privacy/keys.ts)
 * against @noble/curves (pure JS, what it used before), side by side on the same keys; both give
 * the same bytes (test/privacy/keys.test.ts). A round does about 2n agreements per peer.
 * Last line: one JSON object.
 *
 * Usage: node bench/x25519.ts [--ops 400]
 */
import { parseArgs } from 'node:util'
import { x25519 } from '@noble/curves/ed25519.js'
import { generateX25519KeyPair, x25519SharedSecret, seededRandom } from '../src/privacy/index.ts'

const { values } = parseArgs({ options: { ops: { type: 'string', default: '400' } } })
const ops = Number(values.ops)
const rng = seededRandom(new Uint8Array(32).fill(3))
const pairs = Array.from({ length: ops }, () => [generateX25519KeyPair(rng), generateX25519KeyPair(rng)])
const time = (f: (i: number) => unknown): number => { f(0); const t = performance.now(); for (let i = 0; i < ops; i++) f(i); return (performance.now() - t) / ops }
const noble = time(i => x25519.getSharedSecret(pairs[i][0].secretKey, pairs[i][1].publicKey))
const native = time(i => x25519SharedSecret(pairs[i][0].secretKey, pairs[i][1].publicKey))
console.log(`X25519 agreement, ${ops} each: @noble/curves ${noble.toFixed(3)} ms, node:crypto ${native.toFixed(3)} ms; node:crypto is ${(noble / native).toFixed(1)}x faster`)
console.log(JSON.stringify({ bench: 'x25519', ops, nobleMs: +noble.toFixed(4), nativeMs: +native.toFixed(4), ratio: +(noble / native).toFixed(2) }))
