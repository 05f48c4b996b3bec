import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { sha256 } from '@noble/hashes/sha2.js'
import { MemNet, defaultInput, expectedAggregate, ROUND_MODES } from './harness.ts'
import { hex } from '../../src/protocol/codec.ts'
import { stateHash } from '../../src/protocol/model.ts'
import { decodeHeader, Ledger } from '../../src/protocol/ledger.ts'
import { openMessage } from '../../src/protocol/messages.ts'

const hashOf = (v: Uint32Array): string => hex(sha256(new Uint8Array(v.buffer)))

function certifiedRounds (net: MemNet, peer: number): number {
  return net.peers[peer].ledger.entries.length
}

for (const mode of ROUND_MODES) {
  for (const n of [3, 5, 10]) {
    test(`n=${n}: two rounds complete; every peer has the same ledger, certificate and model hash [${mode.name}]`, () => {
      const net = new MemNet({ ...mode.options, n, seed: n, modelSize: 24, lastRound: 1 })
      net.startAll()
      // a peer certified by the others' signatures before its own sum was done fetches the state
      net.run(() => net.peers.every((p, i) => certifiedRounds(net, i) === 2 && p.stateCurrent))
      const heads = new Set(net.peers.map(p => hex(p.ledger.head)))
      const states = new Set(net.peers.map(p => hex(stateHash(p.state))))
      assert.is(heads.size, 1, 'one ledger head')
      assert.is(states.size, 1, 'one model')
      for (const round of [0, 1]) {
        const certs = new Set(net.peers.map(p => hex(p.ledger.entries[round].certificate.header)))
        assert.is(certs.size, 1, `one certificate header for round ${round}`)
        const header = net.peers[0].ledger.entries[round].header
        assert.equal(header.survivors, Array.from({ length: n }, (_, i) => i), 'everyone survived')
        assert.is(hex(header.aggregateHash), hashOf(expectedAggregate(24, header.survivors, round)), 'aggregate is the exact sum of the quantised inputs')
        assert.is(header.sliceHashes?.length, mode.options.slicing === undefined ? undefined : mode.options.slicing.slices, 'slice hashes in sliced headers only')
      }
      // the model moved by the mean update of each round: FedAvg with server lr 1, in float32
      const input = defaultInput(24)
      const expected = Float32Array.from(net.initial.weights)
      for (const round of [0, 1]) {
        const survivors = net.peers[0].ledger.entries[round].header.survivors
        for (let j = 0; j < 24; j++) expected[j] = expected[j] + Math.fround(survivors.reduce((acc, u) => acc + input(u, round).values[j], 0) / survivors.length)
      }
      const w = net.peers[0].state.weights
      for (let j = 0; j < 24; j++) assert.ok(Math.abs(w[j] - expected[j]) <= 1e-7, `weight ${j}: ${w[j]}, expected ${expected[j]}`)
      assert.is(net.actions('reject').length, 0, 'no rejections among honest peers')
    })
  }

  const PHASES: Array<[string, string, boolean]> = [
    // [what is dropped before sending, description, does the dropped peer's input count?]
    ['shareKeys', 'before sharing keys', false],
    ['maskedInput', 'after sharing keys', false],
    ['ack', 'after masked input', true],
    ['reveal', 'during unmasking', true]
  ]

  for (const [msgType, when, counts] of PHASES) {
    test(`dropouts ${when}: n - t peers drop, the round completes with the exact sum of the survivors' inputs [${mode.name}]`, () => {
      const n = 7
      const net = new MemNet({ ...mode.options, n, seed: 11, modelSize: 10, lastRound: 0 })
      const t = net.manifest.params.threshold // 4
      const dropped = [1, 5, 6].slice(0, n - t)
      for (const d of dropped) net.dropBefore.set(d, msgType)
      net.startAll()
      net.run(() => net.honest().every(i => certifiedRounds(net, i) === 1))
      const live = net.honest()
      assert.equal(live, [0, 2, 3, 4])
      const header = net.peers[0].ledger.entries[0].header
      const expectedSurvivors = counts ? Array.from({ length: n }, (_, i) => i) : live
      assert.equal(header.survivors, expectedSurvivors)
      assert.is(hex(header.aggregateHash), hashOf(expectedAggregate(10, header.survivors, 0)))
      assert.is(new Set(live.map(i => hex(net.peers[i].ledger.head))).size, 1)
    })
  }

  test(`below the threshold the round aborts cleanly and the next one begins [${mode.name}]`, () => {
    const n = 5
    const net = new MemNet({ ...mode.options, n, seed: 12, modelSize: 8, lastRound: 1 })
    const t = net.manifest.params.threshold // 3
    for (const d of [0, 1, 2].slice(0, n - t + 1)) net.dropBefore.set(d, 'shareKeys')
    net.startAll()
    net.run(() => net.honest().every(i => net.actions('round-started', i).some(a => a.round === 1)), 60_000)
    for (const i of net.honest()) {
      assert.ok(net.actions('aborted', i).length >= 1, `peer ${i} aborted round 0`)
      assert.is(net.peers[i].ledger.entries.length, 0, 'nothing certified')
      assert.ok(net.actions('round-started', i).some(a => a.round === 1), `peer ${i} started round 1`)
    }
  })

  test(`a statistics round securely averages the sites\' normalisation statistics [${mode.name}]`, () => {
    const n = 4
    // per site: [mean, mean of squares] of the pixels, then the fractions of its images in each of two classes
    const pixels = [[0.2, 0.1, 0.9, 0.1], [0.4, 0.3, 0.5, 0.5], [0.5, 0.35, 0.2, 0.8], [0.3, 0.15, 0.25, 0.75]]
    const counts = [100, 300, 200, 400]
    const net = new MemNet({ ...mode.options,
      n, seed: 13, modelSize: 8, lastRound: 0, kindOf: () => 'stats',
      params: p => { p.quantization.maxSampleCount = 1000 },
      input: (i) => ({ values: pixels[i], count: counts[i] })
    })
    net.startAll()
    net.run(() => net.peers.every(p => p.ledger.entries.length === 1))
    const total = counts.reduce((a, b) => a + b, 0)
    const mean = pixels.reduce((s, p, i) => s + p[0] * counts[i], 0) / total
    const sq = pixels.reduce((s, p, i) => s + p[1] * counts[i], 0) / total
    for (const p of net.peers) {
      assert.ok(p.stats !== null)
      assert.ok(Math.abs(p.stats![0] - mean) < 1e-4, `mean ${p.stats![0]} vs ${mean}`)
      assert.ok(Math.abs(p.stats![1] - sq) < 1e-4)
      const normal = pixels.reduce((s, p, i) => s + p[2] * counts[i], 0) / total
      assert.ok(Math.abs(p.stats![2] - normal) < 1e-4, `the pooled fraction of class 0: ${p.stats![2]} vs ${normal}`)
      assert.ok(Math.abs(p.stats![2] + p.stats![3] - 1) < 1e-4)
      assert.is(hex(stateHash(p.state)), hex(stateHash(net.initial)), 'a stats round leaves the model alone')
    }
    const header = decodeHeader(net.peers[0].ledger.entries[0].certificate.header)
    assert.is(header.kind, 'stats')
  })

  test(`an offline peer catches up from the ledger and takes part in a later round [${mode.name}]`, () => {
    const n = 5
    const net = new MemNet({ ...mode.options, n, seed: 14, modelSize: 12, lastRound: 4 })
    net.online[4] = false
    net.startAll()
    net.run(() => [0, 1, 2, 3].every(i => certifiedRounds(net, i) === 2))
    assert.is(net.peers[4].ledger.entries.length, 0)
    // it comes back: certificates and the certified state from a member that holds that state (one
    // certified by the others' signatures before its own sum was done is still fetching it), verified, not trusted
    net.online[4] = true
    const donor = net.peers.find((p, i) => i !== 4 && p.stateCurrent)
    assert.ok(donor !== undefined, 'a member holds the certified state')
    const certs = donor.ledger.entries.map(e => e.certificate)
    const stateBlob = net.blobs.get(hex(donor.ledger.last!.header.stateHash))!
    net.peers[4].catchUp(certs, stateBlob, net.now)
    net.flush(4)
    assert.is(net.peers[4].ledger.entries.length, 2)
    assert.is(hex(stateHash(net.peers[4].state)), hex(stateHash(donor.state)))
    net.run(() => net.peers.every(p => p.ledger.entries.length === 5))
    const last = net.peers[0].ledger.entries[4].header
    assert.ok(last.survivors.includes(4), `member 4 is among round 4's survivors: ${last.survivors}`)
    assert.is(new Set(net.peers.map(p => hex(p.ledger.head))).size, 1)
  })

  test(`repeated dropouts: a member away for a whole round syncs when it finds a quorum ahead; no round is lost [${mode.name}]`, () => {
    const n = 5
    for (const seed of [3, 4, 21]) {
      const net = new MemNet({ ...mode.options, n, seed, modelSize: 12, lastRound: 1000 })
      net.startAll()
      const away = new Map<number, number>()
      for (let k = 0; k < 12; k++) {
        // one random member misses everything of the next round (and the start of the one after)
        const absent = Math.floor(net.rand() * n)
        const present = net.peers.map((_, i) => i).filter(i => i !== absent)
        // the round now beginning somewhere (an earlier one may be decided already)
        const target = Math.max(...net.peers.map(p => Math.max(p.ledger.lastRound + 1, p.round?.number ?? 0)))
        away.set(target, absent)
        net.online[absent] = false
        net.run(() => present.some(i => net.peers[i].ledger.lastRound >= target), 25_000)
        net.online[absent] = true
      }
      const last = Math.max(...away.keys())
      net.run(() => net.peers.every(p => p.ledger.lastRound >= last), 25_000)
      const rounds = net.peers[0].ledger.entries.map(e => e.header.round)
      assert.equal(rounds.slice(0, last + 1), Array.from({ length: last + 1 }, (_, r) => r), `seed ${seed}: every round certified: ${rounds}`)
      assert.is(net.actions('aborted').filter(a => a.reason.includes('timed out')).length, 0, `seed ${seed}: no round timed out`)
      for (const p of net.peers) assert.ok(p.ledger.lastRound >= last, `seed ${seed}: every member holds round ${last}`)
      const heads = new Set(net.peers.map(p => hex(p.ledger.entries[last].hash)))
      assert.is(heads.size, 1, 'one ledger')
      assert.ok(net.actions('sync').length >= 1, 'the returning members synced')
      for (const [r, absent] of away) {
        const u = net.peers[0].ledger.entries[r].header.survivors
        assert.not.ok(u.includes(absent), `member ${absent} was away in round ${r}: ${u}`)
      }
    }
  })

  test(`a member that crashes after committing never runs that round again: it restarts in the next one and learns the certificate [${mode.name}]`, () => {
    const n = 5
    const net = new MemNet({ ...mode.options, n, seed: 9, modelSize: 12, lastRound: 4 })
    net.startAll()
    const ctx = { consortium: net.peers[0].ledger.consortium, memberKeys: net.peers[0].ledger.memberKeys }
    const committed = (): boolean => net.log.some(l => l.peer === 4 && l.action.type === 'broadcast' && l.action.msgType === 'commit' && openMessage(l.action.wire, ctx).env.round === 2)
    net.run(committed)
    assert.ok(committed(), 'member 4 signed a commit for round 2')
    // it crashes; what it had on disk: the certificates before round 2, and the round it was in
    // (round 2, or round 3 when its commit completed round 2's quorum and it went straight on)
    const disk = Ledger.verify(net.manifest, net.peers[4].ledger.entries.filter(e => e.header.round < 2).map(e => e.certificate))
    const wasIn = net.peers[4].round?.number ?? 2
    const logFrom = net.log.length
    net.peers[4] = net.makePeer(4, { ledger: disk, state: net.peers[4].state, firstRound: wasIn + 1 })
    net.peers[4].start(net.now)
    net.flush(4)
    net.run(() => net.peers.every(p => p.ledger.lastRound === 4))
    const sentAgain = net.log.slice(logFrom).filter(l => l.peer === 4 && l.action.type === 'broadcast').map(l => openMessage((l.action as { wire: Uint8Array }).wire, ctx).env.round)
    assert.not.ok(sentAgain.includes(2), `after the restart member 4 sent nothing for round 2: ${sentAgain}`)
    assert.is(new Set(net.peers.map(p => hex(p.ledger.head))).size, 1)
    assert.ok(net.peers[0].ledger.entries.find(e => e.header.round === 4)!.header.survivors.includes(4), 'member 4 takes part again')
    assert.is(net.actions('reject').filter(a => a.code === 'equivocation').length, 0, 'no equivocation seen')
  })

  // A member that comes back after missing a round often misses an advertisement of its first round
  // (it was not yet back in the mesh when it went out), or the others miss its own. Either way it and
  // that member are inconsistent, and the masking set can keep only one of them: the one that stayed
  // up keeps its place (it was among the last round's survivors), the rejoiner waits one round.
  for (const [missed, what] of [[[1, 4], "the rejoiner misses a member's advertisement"], [[4, 1], "a member misses the rejoiner's advertisement"]] as const) {
    test(`a member that stayed up keeps its place when another rejoins (${what}) [${mode.name}]`, () => {
      const n = 5
      const net = new MemNet({ ...mode.options, n, seed: 29, modelSize: 12, lastRound: 4 })
      net.startAll()
      const ctx = { consortium: net.peers[0].ledger.consortium, memberKeys: net.peers[0].ledger.memberKeys }
      net.run(() => net.peers.every(p => p.ledger.lastRound === 1))
      // the advertisement is lost whenever it is sent (a member may advertise round 3 before 4 is back,
      // and a message still in flight then would reach it)
      const [from, to] = missed
      net.tamper = (sender, msgType, wire, recipient) =>
        sender === from && recipient === to && msgType === 'advertise' && openMessage(wire, ctx).env.round === 3 ? [] : [wire]
      net.online[4] = false // member 4 goes down for round 2, and comes back as round 3 begins
      net.run(() => [0, 1, 2, 3].some(i => net.peers[i].ledger.lastRound === 2))
      // back, it has learnt round 2's certificate and model (as a node does from its peers' ledgers)
      net.online[4] = true
      const source = net.peers.find(p => p.ledger.lastRound === 2)!
      net.peers[4] = net.makePeer(4, { ledger: Ledger.verify(net.manifest, source.ledger.entries.map(e => e.certificate)), state: source.state, firstRound: 3 })
      net.peers[4].start(net.now)
      net.flush(4)
      net.run(() => net.peers.every(p => p.ledger.lastRound === 4))
      const entry = (r: number) => net.peers[0].ledger.entries.find(e => e.header.round === r)!.header
      assert.equal(entry(2).survivors, [0, 1, 2, 3], 'round 2: without member 4')
      assert.equal(entry(3).survivors, [0, 1, 2, 3], 'round 3: the members that stayed up, without the rejoiner')
      assert.equal(entry(4).survivors, [0, 1, 2, 3, 4], 'round 4: everyone')
      assert.is(new Set(net.peers.map(p => hex(p.ledger.head))).size, 1)
    })
  }

  test(`a halted member sends nothing for later rounds and is in none of them; the others go on without it [${mode.name}]`, () => {
    const n = 5
    const net = new MemNet({ ...mode.options, n, seed: 17, modelSize: 12, lastRound: 3 })
    net.startAll()
    net.run(() => net.peers.every(p => p.ledger.lastRound >= 1))
    const ctx = { consortium: net.peers[0].ledger.consortium, memberKeys: net.peers[0].ledger.memberKeys }
    net.peers[4].halt()
    const halted = net.peers[4].ledger.lastRound
    assert.is(net.peers[4].round === null || net.peers[4].round!.done, true, 'no round under way')
    const logFrom = net.log.length
    net.run(() => [0, 1, 2, 3].every(i => net.peers[i].ledger.lastRound === 3))
    const sent = net.log.slice(logFrom).filter(l => l.peer === 4 && l.action.type === 'broadcast').map(l => openMessage((l.action as { wire: Uint8Array }).wire, ctx).env.round)
    assert.equal(sent.filter(r => r > halted), [], 'nothing sent for a round after it halted')
    for (const e of net.peers[0].ledger.entries.filter(e => e.header.round > halted)) assert.not.ok(e.header.survivors.includes(4), `member 4 is not in round ${e.header.round}`)
    assert.ok(net.peers[0].ledger.lastRound === 3, 'the others certified every round')
  })

  test(`every member stops in the same round (a consortium-wide outage): restarted, they wait roundMs for its certificate, then go on from the next round [${mode.name}]`, () => {
    const n = 5
    const net = new MemNet({ ...mode.options, n, seed: 23, modelSize: 12, lastRound: 5 })
    net.startAll()
    const ctx = { consortium: net.peers[0].ledger.consortium, memberKeys: net.peers[0].ledger.memberKeys }
    const advertised = (i: number): boolean => net.log.some(l => l.peer === i && l.action.type === 'broadcast' && l.action.msgType === 'advertise' && openMessage(l.action.wire, ctx).env.round === 2)
    // a member may begin round 2 before it holds round 1's certificate (it aborts round 1 when others
    // are past it and catches up): the outage strikes once all of them are in round 2 with round 1
    net.run(() => net.peers.every((p, i) => advertised(i) && p.ledger.lastRound >= 1))
    assert.ok(net.peers.every(p => p.ledger.lastRound === 1), `all were in round 2, none had certified it: ${net.peers.map(p => p.ledger.lastRound).join(',')}`)
    const logFrom = net.log.length
    const restartedAt = net.now
    for (let i = 0; i < n; i++) {
      const disk = Ledger.verify(net.manifest, net.peers[i].ledger.entries.map(e => e.certificate))
      net.peers[i] = net.makePeer(i, { ledger: disk, state: net.peers[i].state, firstRound: 3 })
    }
    net.startAll()
    net.run(() => net.peers.every(p => p.ledger.lastRound === 5), 10 * net.manifest.params.timeouts.roundMs)
    assert.ok(net.peers.every(p => p.ledger.lastRound === 5), `rounds 3 to 5 certified: ${net.peers.map(p => p.ledger.lastRound)}`)
    const sentFor2 = net.log.slice(logFrom).filter(l => l.action.type === 'broadcast' && openMessage((l.action as { wire: Uint8Array }).wire, ctx).env.round === 2)
    assert.is(sentFor2.length, 0, 'nobody ran round 2 again')
    assert.not.ok(net.peers[0].ledger.entries.some(e => e.header.round === 2), 'round 2 has no certificate')
    const r3 = net.log.slice(logFrom).find(l => l.action.type === 'broadcast' && openMessage((l.action as { wire: Uint8Array }).wire, ctx).env.round === 3)!
    assert.ok(r3.at - restartedAt >= net.manifest.params.timeouts.roundMs, 'they waited roundMs first')
    assert.is(new Set(net.peers.map(p => hex(p.ledger.head))).size, 1)
    assert.is(net.actions('reject').filter(a => a.code === 'equivocation').length, 0)
  })

}

test('where the live members are exactly a quorum, one that gave up on a round for want of the last signature certifies it when that signature comes late, with the ones it had heard, and all go on', () => {
  const n = 5
  const net = new MemNet({ n, seed: 29, modelSize: 12, lastRound: 3 })
  // members 3 and 4 are away: 0, 1 and 2 are exactly the quorum of 3
  net.online[3] = false
  net.online[4] = false
  assert.is(net.manifest.params.quorum, 3)
  const ctx = { consortium: net.peers[0].ledger.consortium, memberKeys: net.peers[0].ledger.memberKeys }
  // member 0's signature of round 0, and what it sends after, reach member 1 only once member 1's
  // round 0 has timed out (had they come, member 1 would have followed the two into round 1)
  const held: Uint8Array[] = []
  let holding = true
  net.tamper = (from, type, wire, to) => {
    if (holding && from === 0 && to === 1 && (type !== 'commit' || openMessage(wire, ctx).env.round === 0) && (type === 'commit' || openMessage(wire, ctx).env.round >= 1)) { held.push(wire); return [] }
    return [wire]
  }
  net.startAll()
  const timedOut = (): boolean => net.log.some(l => l.peer === 1 && l.action.type === 'aborted' && /timed out/.test((l.action as { reason: string }).reason))
  net.run(timedOut)
  assert.ok(timedOut(), 'member 1\'s round 0 timed out')
  assert.ok(held.length > 0, 'member 0\'s commit was held back')
  assert.is(net.peers[1].ledger.lastRound, -1, 'member 1 gave up on round 0 without its certificate')
  assert.ok(net.peers[0].ledger.lastRound >= 0 && net.peers[2].ledger.lastRound >= 0, 'members 0 and 2 certified round 0 with member 1\'s signature')
  holding = false
  for (const wire of held) net.peers[1].receive(wire, net.now)
  net.flush(1)
  assert.is(net.peers[1].ledger.lastRound, 0, 'member 1 adopted round 0\'s certificate at once, from the late signature and the two it had heard')
  net.run(() => [0, 1, 2].every(i => net.peers[i].ledger.lastRound === 3))
  // round 1 was lost to member 1's wait; the next round all three begin on one head is certified
  // (without the late certificate member 1 stayed on a stale head, its commits matching nobody's until it synced, and round 2 was lost too)
  for (const i of [0, 1, 2]) assert.equal(net.peers[i].ledger.entries.map(e => e.header.round), [0, 2, 3], `member ${i}'s rounds`)
  assert.is(new Set([0, 1, 2].map(i => hex(net.peers[i].ledger.head))).size, 1)
})

test('a member that timed out of the statistics round the others certified waits for its late certificate before it trains, and trains normalised', () => {
  const n = 5
  const held: Uint8Array[] = []
  const trainedWith: Array<{ member: number, stats: boolean }> = []
  const net: MemNet = new MemNet({
    n, seed: 31, modelSize: 12, lastRound: 1, kindOf: r => r === 0 ? 'stats' : 'update',
    params: p => { p.quantization.maxSampleCount = 1000 },
    input: (i, _round, kind) => {
      if (kind === 'stats') return { values: [0.2, 0.1, 0.5, 0.5], count: 100 }
      trainedWith.push({ member: i, stats: net.peers[i].stats !== null })
      return { values: Array.from({ length: 12 }, (_, j) => (i + j) / 1024), count: 100 }
    }
  })
  const ctx = { consortium: net.peers[0].ledger.consortium, memberKeys: net.peers[0].ledger.memberKeys }
  // member 0 hears none of the others' commits for the statistics round, until it is in round 1
  net.tamper = (_from, msgType, wire, to) => {
    if (to === 0 && msgType === 'commit' && openMessage(wire, ctx).env.round === 0) { held.push(wire); return [] }
    return [wire]
  }
  net.startAll()
  net.run(() => net.peers[0].round?.number === 1)
  assert.is(net.peers[0].ledger.lastRound, -1, 'member 0 began round 1 without the statistics certificate')
  net.tamper = null
  for (const w of held) net.inject(0, w)
  net.run(() => net.peers.every(p => p.ledger.lastRound === 1))
  const mine = trainedWith.filter(t => t.member === 0)
  assert.ok(mine.length > 0, 'member 0 trained in round 1')
  assert.ok(mine.every(t => t.stats), 'member 0 trained with the certified statistics')
  assert.is(new Set(net.peers.map(p => hex(p.ledger.head))).size, 1, net.peers.map(p => p.ledger.entries.map(e => `${e.header.round}:${hex(e.hash).slice(0, 6)}:${e.header.survivors}`).join(' ')).join(' | ') + JSON.stringify(net.actions('reject', 0).slice(0, 4)))
})

test.run()
