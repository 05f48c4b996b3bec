/** Status and metrics: events logged and counted, /status built from the node's facts. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createStatusService, validationStatus } from '../../../src/node/services/status.ts'
import { encodeValidation, validationCounts, validationFigures } from '../../../src/protocol/validation.ts'
import type { LedgerEntry } from '../../../src/protocol/ledger.ts'
import { createMetrics, ROUNDS_KEPT } from '../../../src/node/metrics.ts'
import type { Site } from '../../../src/training/site.ts'
import { MemNet } from '../../protocol/harness.ts'
import { ManualClock } from '../../../src/node/clock.ts'
import { recordingLogger } from './stubs.ts'

function setup () {
  const net = new MemNet({ n: 3, seed: 2, modelSize: 4, lastRound: 0 })
  net.startAll()
  net.run(() => net.peers.every(p => p.ledger.lastRound >= 0))
  const clock = new ManualClock(1000)
  const { log, lines } = recordingLogger()
  const metrics = createMetrics()
  const status = createStatusService({
    listen: 'off', metrics, log, clock, peer: net.peers[0], site: { options: { budget: null }, backend: null } as unknown as Site,
    connectedMembers: () => 2, addresses: () => ['/ip4/127.0.0.1/tcp/1']
  })
  return { net, status, metrics, lines, advance: async (ms: number) => { await clock.advance(ms) } }
}

test('/status: the round, the phase entered last, the last certificate and the links', () => {
  const s = setup()
  s.status.phaseEntered(1, 'share-keys', 'keys advertised')
  // one statement per line: what was done, then the phase now entered, each said once
  assert.ok(s.lines.some(l => l.msg === 'round 1: keys advertised; now share-keys'), s.lines.map(l => l.msg).join('\n'))
  const st = s.status.status()
  assert.is(st.phase, 'share-keys')
  assert.is(st.connectedMembers, 2)
  assert.is(st.certifiedRounds, 1)
  assert.equal((st.lastCertificate as { survivors: number[] }).survivors, [0, 1, 2])
  assert.equal((st.lastCertificate as { survivorNames: string[] }).survivorNames, s.net.manifest.members.map(m => m.name), 'survivors by name too')
  assert.is(st.peerId, s.net.manifest.members[0].peerId)
})

test('absent members are named once when they go, once when all are back, and in /status', () => {
  const s = setup()
  s.status.roundStarted(4, [{ member: 2, since: 4 }])
  s.status.roundStarted(5, [{ member: 2, since: 4 }])
  s.status.roundStarted(6, [])
  const said = s.lines.map(l => l.msg).filter(m => /absent|present/.test(m))
  const name = s.net.manifest.members[2].name
  assert.equal(said, [`round 4: not waiting for absent members: ${name} (since round 4)`, 'round 6: every member is present again'])
  assert.equal(s.status.status().absent, [], 'nobody absent in this network')
})

test('each phase is timed per round, and per-round series are kept for the last rounds only', async () => {
  const s = setup()
  s.status.phaseEntered(1, 'advertise', '')
  await s.advance(1500)
  s.status.phaseEntered(1, 'share-keys', '')
  await s.advance(250)
  s.status.phaseEntered(2, 'advertise', '')
  const perRound = await s.metrics.registry.getSingleMetric('medmesh_round_phase_seconds')!.get()
  assert.equal(perRound.values.map(v => [v.labels.round, v.labels.phase, v.value]), [['1', 'advertise', 1.5], ['1', 'share-keys', 0.25]])
  for (let r = 3; r < 3 + ROUNDS_KEPT + 2; r++) { s.metrics.sent('gossip', r, 10); s.status.phaseEntered(r, 'advertise', '') }
  const bytes = await s.metrics.registry.getSingleMetric('medmesh_round_bytes_sent_total')!.get()
  const rounds = bytes.values.map(v => Number(v.labels.round))
  assert.ok(rounds.length <= ROUNDS_KEPT && Math.min(...rounds) > 3, `kept ${rounds.length} rounds from ${Math.min(...rounds)}`)
  const total = await s.metrics.registry.getSingleMetric('medmesh_bytes_sent_total')!.get()
  assert.is(total.values[0].value, 10 * (ROUNDS_KEPT + 2), 'the total keeps everything')
})

test('rejections, certificates and aborted rounds are logged and counted', async () => {
  const s = setup()
  s.status.rejected('bad-signature', 2, 'bad signature from member 2')
  s.status.certified(s.net.peers[0].ledger.last!)
  s.status.aborted('round 3 timed out')
  const get = async (name: string): Promise<number> => (await s.metrics.registry.getSingleMetric(name)!.get()).values.reduce((a, v) => a + v.value, 0)
  assert.is(await get('medmesh_rejected_messages_total'), 1)
  assert.is(await get('medmesh_rounds_certified_total'), 1)
  assert.is(await get('medmesh_rounds_aborted_total'), 1)
  assert.ok(s.lines.some(l => l.level === 'warn' && l.fields.member === 2 && /rejected: bad signature/.test(l.msg)))
  assert.ok(s.lines.some(l => /round 0 certified \(update\)/.test(l.msg)))
})

test('metric names never repeat a word (medmesh_process_cpu_seconds_total, not medmesh_process_process_…)', async () => {
  const names = (await createMetrics().registry.getMetricsAsJSON()).map(m => m.name)
  assert.ok(names.includes('medmesh_process_cpu_seconds_total'), names.join(' '))
  for (const name of names) {
    const words = name.split('_')
    assert.ok(words.every((w, i) => i === 0 || w !== words[i - 1]), `${name} repeats a word`)
  }
})

test('a degenerate model is said with a warning when its eval round is certified, and /status names it and chooses a better round', () => {
  const s = setup()
  const layout = { classes: 2, bins: 1000 }
  const labels = Array.from({ length: 20 }, (_, i) => i % 2)
  const dead = validationFigures(validationCounts(labels.flatMap(() => [0, 1]), labels, layout), layout)
  const good = validationFigures(validationCounts(labels.flatMap((y, i) => y === 1 ? [0.3 - i / 100, 0.7 + i / 100] : [0.6, 0.4]), labels, layout), layout)
  const entry = (round: number, kind: string, extra: Uint8Array) => ({ header: { kind, round, survivors: [0, 1, 2], stateHash: Uint8Array.of(round), extra }, hash: Uint8Array.of(round), certificate: { signatures: [] } }) as unknown as LedgerEntry
  const entries = [entry(1, 'update', new Uint8Array(0)), entry(2, 'eval', encodeValidation(good)), entry(3, 'update', new Uint8Array(0)), entry(4, 'eval', encodeValidation({ ...dead, auc: 0.99 }))]
  s.status.certified(entries[3])
  const warned = s.lines.find(l => l.level === 'warn' && l.msg.includes('DEGENERATE'))
  assert.ok(warned !== undefined, s.lines.map(l => l.msg).join('\n'))
  assert.match(warned!.msg, /every validation score is tied/)
  assert.is(warned!.fields.degenerate, true)
  s.status.certified(entries[1])
  assert.is(s.lines.filter(l => l.msg.includes('DEGENERATE')).length, 1, 'a model that learnt is said as before')
  const v = validationStatus({ manifest: s.net.manifest, ledger: { entries } as never }) as { last: { round: number, degenerate: string | null }, chosen: { round: number }, degenerateRounds: number[] }
  assert.is(v.last.round, 3)
  assert.is(v.last.degenerate, 'every validation score is tied')
  assert.is(v.chosen.round, 1, 'the degenerate round is not chosen, though its AUC is higher')
  assert.equal(v.degenerateRounds, [3])
})

test.run()
