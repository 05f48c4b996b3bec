/**
 * One Round (member 0 of three) fed hand-made signed messages: the two other members are scripted
 * here from the protocol's building blocks (their own keys, sealed shares, masked vectors, reveals
 * and signed commits), with no other Round and no network. Each step checks what the round asks its
 * driver to do, and the end checks the certified aggregate and model exactly, in both exchanges.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { sha256 } from '@noble/hashes/sha2.js'
import { MemNet, defaultInput, expectedAggregate, ROUND_MODES } from './harness.ts'
import { generateX25519KeyPair, randomBytes, secretCommitment, seededRandom } from '../../src/privacy/index.ts'
import { hex } from '../../src/protocol/codec.ts'
import { Ledger, decodeHeader, signHeader } from '../../src/protocol/ledger.ts'
import { MSG, PROTOCOL_VERSION, openMessage, sealMessage, type Body, type MsgType, type OpenedMessage } from '../../src/protocol/messages.ts'
import { Round } from '../../src/protocol/round.ts'
import type { RoundAction } from '../../src/protocol/actions.ts'
import { openShares, sealShares, sharesToReveal, type SharePair } from '../../src/protocol/shares.ts'
import { maskedInput } from '../../src/protocol/masked-input.ts'
import { commitSlices } from '../../src/protocol/sliced.ts'
import { proposerOf } from '../../src/protocol/presence.ts'
import { sliceBounds } from '../../src/protocol/slices.ts'

const SIZE = 12

for (const mode of ROUND_MODES) {
  test(`one round fed hand-made signed messages: its actions at each step, and the exact aggregate and model [${mode.name}]`, () => {
    const net = new MemNet({ ...mode.options, n: 3, seed: 5, modelSize: SIZE })
    const { manifest, identities } = net
    const params = manifest.params
    const ledger = new Ledger(manifest)
    const ctx = { consortium: ledger.consortium, memberKeys: ledger.memberKeys }
    const peerIds = manifest.members.map(m => m.peerId)
    const roundBytes = new Uint8Array(8)
    const context = new Uint8Array([...ledger.consortium, ...roundBytes]) // round 0
    let now = 0

    const round = new Round({ manifest, ...ctx, identity: identities[0], round: 0, prev: ledger.head, state: net.initial, kind: 'update', rng: seededRandom(new Uint8Array(32).fill(9)), now })
    const taken: RoundAction[] = []
    const take = (): RoundAction[] => { const a = round.takeActions(); taken.push(...a); return a }
    const broadcasts = (a: RoundAction[]): OpenedMessage[] => a.flatMap(x => x.type === 'broadcast' ? [openMessage(x.wire, ctx)] : [])
    const phases = (a: RoundAction[]): string[] => a.flatMap(x => x.type === 'phase' ? [x.phase] : [])
    const feed = (wire: Uint8Array): void => { now += 1; round.receive(openMessage(wire, ctx), now) }

    // the scripted members: their keys for this round
    const rng = seededRandom(new Uint8Array(32).fill(3))
    const script = [1, 2].map(k => ({ k, box: generateX25519KeyPair(rng), mask: generateX25519KeyPair(rng), self: randomBytes(rng, 32), shares: new Map<number, SharePair>() }))
    const seal = (k: number, type: MsgType, body: Body, attempt = 0): Uint8Array =>
      sealMessage(identities[k], { version: PROTOCOL_VERSION, type, consortium: ledger.consortium, round: 0, attempt, sender: k, body })

    // 1. the round advertises its keys
    let a = take()
    assert.equal(phases(a), ['advertise'])
    const [advert0] = broadcasts(a)
    assert.is(advert0.env.type, MSG.advertise)
    const adverts = new Map<number, OpenedMessage>([[0, advert0]])
    const maskKeyOf = (u: number): Uint8Array => u === 0 ? (advert0.env.body as { maskKey: Uint8Array }).maskKey : script[u - 1].mask.publicKey
    const boxKeyOf = (u: number): Uint8Array => u === 0 ? (advert0.env.body as { boxKey: Uint8Array }).boxKey : script[u - 1].box.publicKey
    for (const s of script) {
      const wire = seal(s.k, MSG.advertise, { boxKey: s.box.publicKey, maskKey: s.mask.publicKey, selfMaskCommitment: secretCommitment(s.self) })
      adverts.set(s.k, openMessage(wire, ctx))
      feed(wire)
    }

    // 2. every advertisement in: it shares its keys, a sealed box for each of the others
    a = take()
    assert.equal(phases(a), ['share-keys'])
    const [shareKeys0] = broadcasts(a)
    assert.is(shareKeys0.env.type, MSG.shareKeys)
    const boxes0 = (shareKeys0.env.body as { boxes: Array<[number, Uint8Array]> }).boxes
    assert.equal(boxes0.map(([u]) => u), [1, 2])
    const shareKeys = new Map<number, OpenedMessage>([[0, shareKeys0]])
    const boxesFrom = new Map<number, Array<[number, Uint8Array]>>([[0, boxes0]])
    const view = new Map([0, 1, 2].map(u => [u, boxKeyOf(u)]))
    for (const s of script) {
      const { mine, boxes } = sealShares({ me: s.k, view, threshold: params.threshold, selfMaskSeed: s.self, maskSecretKey: s.mask.secretKey, boxSecretKey: s.box.secretKey, context, rng })
      s.shares.set(s.k, mine)
      boxesFrom.set(s.k, boxes)
      const wire = seal(s.k, MSG.shareKeys, { advertsSeen: [0, 1, 2].map(u => [u, adverts.get(u)!.id] as [number, Uint8Array]), boxes })
      shareKeys.set(s.k, openMessage(wire, ctx))
      feed(wire)
    }
    // each scripted member opens the boxes the others sealed for it
    for (const s of script) {
      for (const [from, boxes] of boxesFrom) {
        if (from === s.k) continue
        const pair = openShares(boxes.find(([u]) => u === s.k)![1], { me: s.k, from, fromBoxKey: boxKeyOf(from), boxSecretKey: s.box.secretKey, context })
        assert.ok(pair !== null, `member ${s.k} opens member ${from}'s shares`)
        s.shares.set(from, pair)
      }
    }

    // 3. the masking set: proposed by the round if it is the proposer, else by hand
    const maskingProposer = proposerOf(1, 0, 0, 3)
    a = take()
    let maskingProposal = broadcasts(a).find(m => m.env.type === MSG.proposal)
    if (maskingProposer === 0) assert.ok(maskingProposal !== undefined, 'the proposer proposes the masking set')
    else {
      assert.is(maskingProposal, undefined, 'only the proposer proposes')
      const wire = seal(maskingProposer, MSG.proposal, { set: 1, maskingSetId: new Uint8Array(32), messages: [0, 1, 2].map(u => adverts.get(u)!.wire).concat([0, 1, 2].map(u => shareKeys.get(u)!.wire)) })
      maskingProposal = openMessage(wire, ctx)
      feed(wire)
      a = take()
    }
    assert.equal(phases([...taken]).slice(-1), ['masked-input'], 'the masking set is agreed')
    const M = maskingProposal.id

    // 4. its input: a masked input and its vector (whole, or one blob per slice) published
    const input = defaultInput(SIZE)
    now += 1
    round.setInput(input(0, 0).values, input(0, 0).count, now)
    a = take()
    assert.equal(phases(a), ['survivor-set'])
    const published = a.flatMap(x => x.type === 'publish-blob' ? [x] : [])
    assert.is(published.length, mode.options.slicing?.slices ?? 1)
    const maskedInputs = new Map<number, OpenedMessage>([[0, broadcasts(a).find(m => m.env.type === MSG.maskedInput)!]])
    const blobs = new Map<string, Uint8Array>(published.map(p => [p.hash, p.data]))
    for (const s of script) {
      const { values, count } = input(s.k, 0)
      const y = maskedInput({ values, count, encoding: 'weighted', members: 3, quantization: params.quantization, me: s.k, peerIds, others: new Map([0, 1, 2].filter(v => v !== s.k).map(v => [v, maskKeyOf(v)])), selfMaskSeed: s.self, maskSecretKey: s.mask.secretKey, context, rng })
      const bytes = new Uint8Array(y.buffer, y.byteOffset, y.byteLength)
      let body: Body
      if (mode.options.slicing === undefined) {
        const h = sha256(bytes)
        blobs.set(hex(h), bytes)
        body = { maskingSetId: M, vectorHash: h, length: y.length }
      } else {
        const c = commitSlices(y, mode.options.slicing.slices)
        for (const b of c.blobs) blobs.set(b.hash, b.data)
        body = { maskingSetId: M, vectorHash: c.root, length: y.length, sliceHashes: c.hashes }
      }
      const wire = seal(s.k, MSG.maskedInput, body)
      maskedInputs.set(s.k, openMessage(wire, ctx))
      feed(wire)
    }
    // the round asks for what it lacks of the others' vectors, and only for blobs they committed to
    const serve = (acts: RoundAction[]): void => {
      for (const f of acts) {
        if (f.type !== 'fetch-blob') continue
        assert.ok(blobs.has(f.hash), `the round fetches only committed blobs (${f.hash.slice(0, 8)})`)
        assert.ok(f.owner !== 0, 'never its own')
        now += 1
        round.receiveBlob(f.hash, blobs.get(f.hash)!, now)
      }
    }
    serve(take())
    // a blob that matches nothing it asked for is not taken, and says nothing
    round.receiveBlob('00'.repeat(32), new Uint8Array(4), now)

    // 5. the survivor set: proposed by its proposer, acked by t members
    const survivorProposer = proposerOf(2, 0, 0, 3)
    a = take()
    serve(a)
    let survivorProposal = broadcasts([...taken]).find(m => m.env.type === MSG.proposal && (m.env.body as { set: number }).set === 2)
    if (survivorProposer === 0) assert.ok(survivorProposal !== undefined, 'the proposer proposes the survivor set once every vector is in')
    else {
      const wire = seal(survivorProposer, MSG.proposal, { set: 2, maskingSetId: M, messages: [0, 1, 2].map(u => maskedInputs.get(u)!.wire) })
      survivorProposal = openMessage(wire, ctx)
      feed(wire)
    }
    const U3 = survivorProposal.id
    for (const s of script) feed(seal(s.k, MSG.ack, { proposalId: U3 }))
    a = take()
    serve(a)
    const seenSoFar = [...taken]
    assert.ok(phases(seenSoFar).includes('unmask'), 'the survivor set is certified')
    const acks0 = broadcasts(seenSoFar).filter(m => m.env.type === MSG.ack)
    assert.is(acks0.length, 1, 'the round acks once')
    const reveals0 = broadcasts(seenSoFar).filter(m => m.env.type === MSG.reveal)
    assert.is(reveals0.length, 1, 'and reveals its shares once, for that set')
    assert.is(hex((reveals0[0].env.body as { proposalId: Uint8Array }).proposalId), hex(U3))

    // 6. t reveals: the secrets; the sum (sliced: each slice's aggregators sign its sum); a commit
    for (const s of script) feed(seal(s.k, MSG.reveal, { proposalId: U3, ...sharesToReveal([0, 1, 2], [0, 1, 2], s.shares) }))
    a = take()
    serve(a)
    const sum = expectedAggregate(SIZE, [0, 1, 2], 0)
    if (mode.options.slicing !== undefined) {
      // the scripted members sign each slice's true sum (the claims of a slice's aggregators count;
      // the round signs the slices it aggregates, and fetches the others' agreed sums)
      const truth = sliceBounds(sum.length, mode.options.slicing.slices).map(b => sum.slice(b.from, b.to))
      const truthHashes = truth.map(v => sha256(new Uint8Array(v.buffer)))
      truth.forEach((v, j) => blobs.set(hex(truthHashes[j]), new Uint8Array(v.buffer)))
      const announced = broadcasts([...taken]).filter(m => m.env.type === MSG.sliceSums)
      assert.is(announced.length, 1, 'the round announces its slice sums once')
      for (const [j, h] of (announced[0].env.body as { sums: Array<[number, Uint8Array]> }).sums) assert.is(hex(h), hex(truthHashes[j]), `the round's sum of slice ${j} is the true one`)
      for (const s of script) feed(seal(s.k, MSG.sliceSums, { proposalId: U3, sums: truthHashes.map((h, j) => [j, h] as [number, Uint8Array]) }))
      serve(take())
    }
    const commit0 = broadcasts([...taken]).find(m => m.env.type === MSG.commit)
    assert.ok(commit0 !== undefined, 'the round commits to an aggregate')
    const headerBytes = (commit0.env.body as { header: Uint8Array }).header
    const header = decodeHeader(headerBytes)
    assert.is(hex(header.aggregateHash), hex(sha256(new Uint8Array(sum.buffer))), 'the aggregate is the exact sum of the three quantised inputs')
    assert.equal(header.survivors, [0, 1, 2])
    assert.is(header.sliceHashes?.length, mode.options.slicing?.slices)

    // 7. a quorum of matching signed commits: certified, with the new model
    for (const s of script) feed(seal(s.k, MSG.commit, { header: headerBytes, signature: signHeader(identities[s.k], headerBytes) }))
    a = take()
    assert.equal(phases(a), ['certified'])
    const certified = a.find(x => x.type === 'certified')
    assert.ok(certified !== undefined && certified.type === 'certified' && certified.state !== null)
    assert.is(certified.certificate.signatures.length >= params.quorum, true)
    // FedAvg, server learning rate 1: w + mean of the three updates, each value exact in the quantisation
    const w0 = net.initial.weights
    const got = certified.state!.weights
    for (let j = 0; j < SIZE; j++) {
      const mean = [0, 1, 2].reduce((acc, u) => acc + input(u, 0).values[j], 0) / 3
      assert.ok(Math.abs(got[j] - (w0[j] + mean)) <= 1e-7, `weight ${j}: ${got[j]} vs ${w0[j] + mean}`)
    }
    assert.ok(round.done)
    assert.is(taken.filter(x => x.type === 'reject').length, 0, 'nothing hand-made was rejected')
  })
}

test('a hand-made masked input for another masking set is rejected with the sender named, and changes nothing', () => {
  const net = new MemNet({ n: 3, seed: 6, modelSize: SIZE })
  const ledger = new Ledger(net.manifest)
  const ctx = { consortium: ledger.consortium, memberKeys: ledger.memberKeys }
  const round = new Round({ manifest: net.manifest, ...ctx, identity: net.identities[0], round: 0, prev: ledger.head, state: net.initial, kind: 'update', rng: seededRandom(new Uint8Array(32).fill(1)), now: 0 })
  round.takeActions()
  const wire = sealMessage(net.identities[2], { version: PROTOCOL_VERSION, type: MSG.maskedInput, consortium: ledger.consortium, round: 0, attempt: 0, sender: 2, body: { maskingSetId: new Uint8Array(32).fill(7), vectorHash: new Uint8Array(32), length: SIZE + 1 } })
  // before any masking set is agreed it waits (bounded); a second, different one is equivocation
  round.receive(openMessage(wire, ctx), 1)
  assert.equal(round.takeActions().filter(x => x.type !== 'phase'), [])
  const other = sealMessage(net.identities[2], { version: PROTOCOL_VERSION, type: MSG.advertise, consortium: ledger.consortium, round: 0, attempt: 0, sender: 2, body: { boxKey: new Uint8Array(32).fill(1), maskKey: new Uint8Array(32).fill(2), selfMaskCommitment: new Uint8Array(32) } })
  const again = sealMessage(net.identities[2], { version: PROTOCOL_VERSION, type: MSG.advertise, consortium: ledger.consortium, round: 0, attempt: 0, sender: 2, body: { boxKey: new Uint8Array(32).fill(3), maskKey: new Uint8Array(32).fill(2), selfMaskCommitment: new Uint8Array(32) } })
  round.receive(openMessage(other, ctx), 2)
  round.receive(openMessage(again, ctx), 3)
  const rejects = round.takeActions().filter(x => x.type === 'reject')
  assert.equal(rejects.map(x => x.type === 'reject' ? [x.code, x.peer] : []), [['equivocation', 2]])
})

test.run()
