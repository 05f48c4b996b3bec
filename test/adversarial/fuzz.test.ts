/**
 * Every decoder of network input, fed random, truncated, mutated, oversized, wrong-version and
 * wrong-consortium bytes (fast-check): it either rejects with its own typed error or — for valid
 * input only — accepts; nothing else escapes, and a peer fed such bytes never throws, never
 * changes its ledger or model, and sends nothing because of them.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { MemNet } from '../protocol/harness.ts'
import { NodeIdentity, decodeShare, PrivacyError, SHARE_BYTES } from '../../src/privacy/index.ts'
import { decodeBounded, encodeCanonical, hex } from '../../src/protocol/codec.ts'
import { ProtocolError } from '../../src/protocol/errors.ts'
import { openMessage, sealMessage, MAX_MESSAGE_BYTES, PROTOCOL_VERSION } from '../../src/protocol/messages.ts'
import { decodeCertificate, encodeCertificate, verifyCertificate, Ledger } from '../../src/protocol/ledger.ts'
import { decodeState, encodeState, stateHash } from '../../src/protocol/model.ts'
import { verifySignedManifest, ManifestError } from '../../src/protocol/manifest.ts'
import { parseBlobHeader, parseBlobRequest, parseLedgerHeader, parseLedgerRequest } from '../../src/node/wire.ts'

const RUNS = 400
/** inputs tried across this file, printed at the end for the record */
let tried = 0

/** `fn` must throw an instance of `cls` (a rejection), never return and never throw anything else. */
function rejects (fn: () => unknown, cls: abstract new (...a: never[]) => Error, what: string): void {
  tried++
  try {
    fn()
  } catch (e) {
    if (e instanceof cls) return
    throw new Error(`${what}: escaped with ${(e as Error)?.name}: ${(e as Error)?.message}`)
  }
  throw new Error(`${what}: accepted bad input`)
}

// one certified round, to have real messages, a real certificate and a real state to mutate
const net = new MemNet({ n: 4, seed: 31, modelSize: 8, lastRound: 0 })
const wires: Uint8Array[] = []
net.tamper = (_from, _type, wire) => { wires.push(wire); return [wire] }
net.startAll()
net.run(() => net.peers.every(p => p.ledger.lastRound === 0))
const ctx = { consortium: net.peers[0].ledger.consortium, memberKeys: net.peers[0].ledger.memberKeys }
const cert = net.peers[0].ledger.entries[0].certificate
const certBytes = encodeCertificate(cert)
const stateBytes = encodeState(net.peers[0].state)

/** A valid input changed: bits flipped, bytes replaced, cut short, or extended. */
function mutated (valid: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  return fc.tuple(fc.constantFrom(...valid), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.oneof(fc.constant('flip'), fc.constant('cut'), fc.constant('extend')), fc.nat())
    .map(([v, edits, how, k]) => {
      const out = Uint8Array.from(v)
      for (const [pos, val] of edits) out[pos % out.length] ^= (val | 1)
      if (how === 'cut') return out.subarray(0, k % out.length)
      if (how === 'extend') return new Uint8Array([...out, ...edits.map(e => e[1])])
      return out
    })
}

const randomBytes = fc.uint8Array({ maxLength: 2048 })
const cborValues = fc.anything({ maxDepth: 3 }).map(v => { try { return encodeCanonical(v) } catch { return new Uint8Array([0xff]) } })

test('gossip messages: random, CBOR-shaped, mutated and truncated bytes are rejected with a ProtocolError', () => {
  fc.assert(fc.property(fc.oneof(randomBytes, cborValues, mutated(wires)), bytes => {
    rejects(() => openMessage(bytes, ctx), ProtocolError, 'openMessage')
  }), { numRuns: 3 * RUNS })
})

test('gossip messages: oversized, wrong version, wrong consortium, non-member and forged sender are rejected', () => {
  const env = openMessage(wires[0], ctx).env
  const outsider = NodeIdentity.generate()
  fc.assert(fc.property(fc.integer({ min: 0, max: 255 }).filter(v => v !== PROTOCOL_VERSION), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.integer({ min: 4, max: 10_000 }), (v, consortium, s) => {
    rejects(() => openMessage(new Uint8Array(MAX_MESSAGE_BYTES + 1 + (v % 7)), ctx), ProtocolError, 'oversized')
    rejects(() => openMessage(sealMessage(net.identities[env.sender], { ...env, version: v }), ctx), ProtocolError, 'version')
    rejects(() => openMessage(sealMessage(net.identities[env.sender], { ...env, consortium }), ctx), ProtocolError, 'consortium')
    rejects(() => openMessage(sealMessage(net.identities[env.sender], { ...env, sender: s }), ctx), ProtocolError, 'sender index')
    rejects(() => openMessage(sealMessage(outsider, env), ctx), ProtocolError, 'non-member signing as a member')
  }), { numRuns: RUNS / 4 })
})

test('a peer fed hostile bytes in the middle of a round never throws, keeps its ledger and model, and sends nothing for them', () => {
  const live = new MemNet({ n: 4, seed: 32, modelSize: 8, lastRound: 3 })
  live.startAll()
  live.run(() => live.peers[0].round?.phase === 'masked-input' || live.peers[0].ledger.lastRound >= 0, 5_000)
  const peer = live.peers[0]
  fc.assert(fc.property(fc.oneof(randomBytes, cborValues, mutated(wires)), bytes => {
    tried++
    const head = hex(peer.ledger.head); const model = hex(stateHash(peer.state))
    peer.takeActions()
    peer.receive(bytes, live.now)
    const actions = peer.takeActions()
    assert.ok(actions.every(a => a.type === 'reject'), `only rejections: ${actions.map(a => a.type)}`)
    assert.is(actions.length, 1, 'each hostile input is logged once')
    assert.is(hex(peer.ledger.head), head)
    assert.is(hex(stateHash(peer.state)), model)
  }), { numRuns: RUNS })
})

test('certificates (ledger protocol): mutated and random bytes never verify', () => {
  fc.assert(fc.property(fc.oneof(randomBytes, cborValues, mutated([certBytes])), bytes => {
    rejects(() => verifyCertificate(decodeCertificate(bytes), net.manifest), ProtocolError, 'certificate')
  }), { numRuns: RUNS })
  fc.assert(fc.property(mutated([certBytes]), bytes => {
    rejects(() => Ledger.verify(net.manifest, [decodeCertificate(bytes)]), ProtocolError, 'ledger')
  }), { numRuns: RUNS })
})

test('model states (blob protocol): random and mutated bytes are rejected, or decode to a state whose hash is not the certified one', () => {
  const certified = hex(stateHash(net.peers[0].state))
  fc.assert(fc.property(fc.oneof(randomBytes, cborValues, mutated([stateBytes])), bytes => {
    tried++
    try {
      const s = decodeState(bytes, 1 << 20)
      // a mutation can leave valid CBOR of the right shape: the hash check still refuses it
      assert.is.not(hex(stateHash(s)), certified)
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw new Error(`decodeState escaped with ${(e as Error).name}: ${(e as Error).message}`)
    }
  }), { numRuns: RUNS })
})

test('stream headers (blob and ledger protocols): arbitrary values are rejected with a ProtocolError or parsed within their limits', () => {
  for (const [name, parse] of [['blob request', parseBlobRequest], ['blob header', parseBlobHeader], ['ledger request', parseLedgerRequest], ['ledger header', parseLedgerHeader]] as const) {
    fc.assert(fc.property(fc.oneof(fc.anything({ maxDepth: 3 }), randomBytes.map(b => { try { return decodeBounded(b, 4096, 'x') } catch { return null } })), v => {
      tried++
      try {
        (parse as (x: unknown) => unknown)(v)
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw new Error(`${name}: escaped with ${(e as Error).name}`)
      }
    }), { numRuns: RUNS })
  }
  rejects(() => decodeBounded(new Uint8Array(5000), 4096, 'stream header'), ProtocolError, 'an oversized header')
})

test('secret shares (inside sealed boxes): random bytes are rejected with a PrivacyError', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }).filter(b => b.length !== SHARE_BYTES), b => {
    rejects(() => decodeShare(b), PrivacyError, 'share')
  }), { numRuns: RUNS })
})

test('manifests (shared by founders): random JSON and tampered manifests are rejected with a ManifestError', () => {
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), v => {
    rejects(() => verifySignedManifest(v as never), ManifestError, 'manifest')
  }), { numRuns: RUNS })
  console.log(`  fuzz: ${tried} hostile inputs tried, none accepted, none crashed`)
})

test.run()
