import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MemNet, expectedAggregate, ROUND_MODES } from './harness.ts'
import { sha256 } from '@noble/hashes/sha2.js'
import { NodeIdentity, seededRandom, decodeShare, encodeShare } from '../../src/privacy/index.ts'
import { decodeBounded, encodeCanonical, hex } from '../../src/protocol/codec.ts'
import { sealMessage, openMessage, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, type Envelope, type RevealBody, type MaskedInputBody } from '../../src/protocol/messages.ts'

const hashOf = (v: Uint32Array): string => hex(sha256(new Uint8Array(v.buffer)))
const ctxOf = (net: MemNet) => ({ consortium: net.peers[0].ledger.consortium, memberKeys: net.peers[0].ledger.memberKeys })

function rejectsOf (net: MemNet, code: string): Array<{ peer: number, reason: string }> {
  return net.log.filter(l => l.action.type === 'reject' && (l.action as { code: string }).code === code).map(l => ({ peer: l.peer, reason: (l.action as { reason: string }).reason }))
}

function finishRound (net: MemNet, honest: number[], rounds = 1): void {
  net.run(() => honest.every(i => net.peers[i].ledger.entries.length >= rounds))
  assert.ok(honest.every(i => net.peers[i].ledger.entries.length >= rounds), 'honest peers certified the round')
  assert.is(new Set(honest.map(i => hex(net.peers[i].ledger.head))).size, 1, 'honest peers agree')
}

for (const mode of ROUND_MODES) {
  test(`a peer that sends different masked vectors to different peers is caught by its commitments [${mode.name}]`, () => {
    const net = new MemNet({ ...mode.options, n: 5, seed: 21, modelSize: 10, lastRound: 0 })
    const evil = 2
    net.tamper = (from, type, wire, to) => {
      if (from !== evil || type !== 'maskedInput') return [wire]
      // a second, different commitment (validly signed) for the odd-numbered peers; gossip relays
      // it to the even-numbered ones too, after the first
      const { env } = openMessage(wire, ctxOf(net))
      const body = env.body as MaskedInputBody
      const h = Uint8Array.from(body.vectorHash); h[0] ^= 1
      const other = sealMessage(net.identities[evil], { ...env, body: { ...body, vectorHash: h } } as Envelope)
      return to % 2 === 1 ? [other] : [wire, other]
    }
    net.startAll()
    finishRound(net, [0, 1, 2, 3, 4].filter(i => i !== evil))
    const eq = rejectsOf(net, 'equivocation').concat(rejectsOf(net, 'bad-blob'))
    assert.ok(eq.length > 0, 'the equivocation was noticed and logged')
    const header = net.peers[0].ledger.entries[0].header
    assert.not.ok(header.survivors.includes(evil), 'the equivocator\'s input is not aggregated')
    assert.is(hex(header.aggregateHash), hashOf(expectedAggregate(10, header.survivors, 0)), 'the aggregate is still exact')
  })

  test(`bad signatures, malformed and oversized bytes, replays and non-members are rejected with a reason [${mode.name}]`, () => {
    const net = new MemNet({ ...mode.options, n: 4, seed: 22, modelSize: 6, lastRound: 1 })
    const ctx = ctxOf(net)
    let captured: Uint8Array | undefined
    net.tamper = (from, type, wire) => { if (from === 1 && type === 'advertise' && captured === undefined) captured = wire; return [wire] }
    net.startAll()
    // bad signature: flip a bit of a real message
    const bad = Uint8Array.from(captured!); bad[bad.length - 5] ^= 1
    net.inject(0, bad)
    // malformed: random bytes; oversized: more than the limit
    net.inject(0, Uint8Array.from({ length: 200 }, (_, i) => (i * 37) & 0xff))
    net.inject(0, new Uint8Array(MAX_MESSAGE_BYTES + 1))
    // wrong version and another consortium, validly signed by a member
    const env = openMessage(captured!, ctx).env
    net.inject(0, sealMessage(net.identities[1], { ...env, version: PROTOCOL_VERSION - 1 })) // the version before (eval figures of 24 bytes)
    net.inject(0, sealMessage(net.identities[1], { ...env, consortium: new Uint8Array(32) }))
    // a non-member, pretending to be member 1, and naming an index past the members
    const outsider = NodeIdentity.generate(seededRandom(new Uint8Array(32).fill(99)))
    net.inject(0, sealMessage(outsider, { ...env }))
    net.inject(0, sealMessage(outsider, { ...env, sender: 9 }))
    finishRound(net, [0, 1, 2, 3], 1)
    // replay of a round-0 message two rounds later
    net.run(() => net.peers.every(p => p.ledger.entries.length === 2))
    net.peers[0].start(net.now, 3)
    net.peers[0].receive(captured!, net.now)
    net.flush(0)
    const codes = new Set(net.log.filter(l => l.peer === 0 && l.action.type === 'reject').map(l => (l.action as { code: string }).code))
    for (const c of ['bad-signature', 'malformed', 'too-large', 'bad-version', 'wrong-consortium', 'not-member', 'old-round']) assert.ok(codes.has(c), `rejected as ${c}: ${[...codes]}`)
    for (const l of net.log.filter(l => l.action.type === 'reject')) assert.ok(((l.action as { reason: string }).reason).length > 10, 'each rejection says why')
  })

  test(`a duplicate of a message is harmless; a different one of the same kind is equivocation [${mode.name}]`, () => {
    const net = new MemNet({ ...mode.options, n: 4, seed: 23, modelSize: 6, lastRound: 0 })
    const evil = 3
    net.tamper = (from, type, wire, to) => {
      if (from !== evil || type !== 'advertise') return [wire]
      if (to !== 0) return [wire, wire] // duplicate
      const { env } = openMessage(wire, ctxOf(net))
      const other = { ...env, body: { ...(env.body as object), selfMaskCommitment: new Uint8Array(32).fill(7) } } as Envelope
      return [wire, sealMessage(net.identities[evil], other)]
    }
    net.startAll()
    finishRound(net, [0, 1, 2])
    assert.ok(rejectsOf(net, 'equivocation').some(r => r.peer === 0 && /member 3 sent two different advertise/.test(r.reason)))
    assert.is(rejectsOf(net, 'equivocation').filter(r => r.peer !== 0).length, 0, 'a plain duplicate is not equivocation')
  })

  test(`a peer that reveals wrong shares is detected, named, and the honest peers finish [${mode.name}]`, () => {
    const net = new MemNet({ ...mode.options, n: 7, seed: 24, modelSize: 8, lastRound: 0 })
    const evil = 4
    net.tamper = (from, type, wire) => {
      if (from !== evil || type !== 'reveal') return [wire]
      const { env } = openMessage(wire, ctxOf(net))
      const body = env.body as RevealBody
      const corrupt = (list: Array<[number, Uint8Array]>) => list.map(([u, s]): [number, Uint8Array] => {
        const share = decodeShare(s)
        const y = Uint8Array.from(share.y); y[27] ^= 0x5a
        return [u, encodeShare({ x: share.x, y })]
      })
      return [sealMessage(net.identities[evil], { ...env, body: { ...body, selfMaskShares: corrupt(body.selfMaskShares), keyShares: corrupt(body.keyShares) } } as Envelope)]
    }
    net.startAll()
    finishRound(net, [0, 1, 2, 3, 5, 6])
    const named = rejectsOf(net, 'bad-share').filter(r => /member 4 revealed a share inconsistent/.test(r.reason))
    assert.ok(named.length > 0, 'the cheater is named')
    const header = net.peers[0].ledger.entries[0].header
    assert.is(hex(header.aggregateHash), hashOf(expectedAggregate(8, header.survivors, 0)))
  })

  test(`a proposer that stays silent only costs its own slot: the next proposer takes over [${mode.name}]`, () => {
    const net = new MemNet({ ...mode.options, n: 5, seed: 25, modelSize: 6, lastRound: 0 })
    net.tamper = (from, type, wire) => (from === 0 && type === 'proposal') ? [] : [wire] // member 0 proposes round 0's masking set
    net.startAll()
    finishRound(net, [0, 1, 2, 3, 4])
    const phases = net.actions('phase', 1).map(p => p.detail)
    const second = net.manifest.members[1].name // proposers are named as the manifest names them
    assert.ok(phases.some(d => d.includes(`(proposer ${second}, attempt 1)`)), phases.join('\n'))
  })

  test(`decoding hostile bytes never throws anything but a ProtocolError [${mode.name}]`, () => {
    const net = new MemNet({ ...mode.options, n: 3, seed: 26, modelSize: 4 })
    const ctx = ctxOf(net)
    const rand = net.rand
    let rejected = 0
    for (let i = 0; i < 500; i++) {
      const len = Math.floor(rand() * 300)
      const bytes = Uint8Array.from({ length: len }, () => Math.floor(rand() * 256))
      // half the time, wrap random content in a well-formed outer array
      const wire = i % 2 === 0 ? bytes : encodeCanonical([bytes, new Uint8Array(64)])
      try { openMessage(wire, ctx); assert.unreachable('accepted garbage') } catch (e) {
        assert.is((e as Error).name, 'ProtocolError', String(e))
        rejected++
      }
    }
    assert.is(rejected, 500)
    assert.is(decodeBounded(encodeCanonical({ a: 1 }), 100, 'x') !== null, true)
  })

}

test.run()
