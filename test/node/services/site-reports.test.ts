/** Site reports with a stubbed gossipsub: signed by their own member, checked before they are kept, republished when ε changes. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { peerIdFromString } from '@libp2p/peer-id'
import { createSiteReports, openSiteReport, sealSiteReport, storedSiteReports, MAX_REPORT_BYTES, type SiteFigures } from '../../../src/node/services/site-reports.ts'
import { encodeCanonical } from '../../../src/protocol/codec.ts'
import { NodeIdentity } from '../../../src/privacy/index.ts'
import { ManualClock } from '../../../src/node/clock.ts'
import { recordingLogger, settle } from './stubs.ts'

const TOPIC = '/medmesh/test/sites/1'
const CONSORTIUM = new Uint8Array(32).fill(7)

class StubPubsub extends EventTarget {
  readonly topicValidators = new Map<string, (from: unknown, msg: { data: Uint8Array }) => Promise<TopicValidatorResult>>()
  readonly published: Uint8Array[] = []
  subscribe (): void {}
  unsubscribe (): void {}
  async publish (_topic: string, data: Uint8Array): Promise<{ recipients: unknown[] }> { this.published.push(data); return { recipients: [] } }
}

const figures = (t: number, e: number | null = null): SiteFigures => ({ trainImages: t, validationImages: Math.round(t / 10), epsilonSpent: e })

test('a report opens only when signed by the peer it names, for this consortium, within its size', () => {
  const [a, b] = [NodeIdentity.generate(), NodeIdentity.generate()]
  const r = openSiteReport(sealSiteReport(a, CONSORTIUM, 5n, figures(1200, 1.25)), CONSORTIUM)
  assert.equal([r.peer, r.seq, r.trainImages, r.validationImages, r.epsilonSpent], [a.peerId, 5n, 1200, 120, 1.25])
  assert.is(openSiteReport(sealSiteReport(a, CONSORTIUM, 6n, figures(10)), CONSORTIUM).epsilonSpent, null)
  const throwsWith = (wire: Uint8Array, re: RegExp): void => {
    try { openSiteReport(wire, CONSORTIUM); assert.unreachable('opened') } catch (e) { assert.match((e as Error).message, re) }
  }
  throwsWith(sealSiteReport(a, new Uint8Array(32), 5n, figures(1)), /another consortium/)
  // b signs a payload that names a
  const payload = encodeCanonical({ v: 1, c: CONSORTIUM, p: a.peerId, q: 9, t: 1, va: 1, e: null })
  throwsWith(encodeCanonical([payload, b.sign('site-report', payload)]), /bad signature/)
  throwsWith(encodeCanonical([payload, a.sign('manifest', payload)]), /bad signature/)
  throwsWith(new Uint8Array(MAX_REPORT_BYTES + 1), /limit 1024/)
  const extra = encodeCanonical({ v: 1, c: CONSORTIUM, p: a.peerId, q: 9, t: 1, va: 1, e: null, x: 1 })
  throwsWith(encodeCanonical([extra, a.sign('site-report', extra)]), /unexpected field/)
  const negative = encodeCanonical({ v: 1, c: CONSORTIUM, p: a.peerId, q: 9, t: -1, va: 1, e: null })
  throwsWith(encodeCanonical([negative, a.sign('site-report', negative)]), /training images must be an integer/)
})

test('published at start and when ε changes; others\' checked, kept newest-first, stored; forgeries and replays refused', async () => {
  const [me, b, outsider] = [NodeIdentity.generate(), NodeIdentity.generate(), NodeIdentity.generate()]
  const members = new Set([me.peerId, b.peerId])
  const pubsub = new StubPubsub()
  const { log, lines } = recordingLogger()
  let mine = figures(800, 0)
  const file: { data: Uint8Array | null } = { data: null }
  const reports = createSiteReports({
    identity: me, consortium: CONSORTIUM, isMember: p => members.has(p), pubsub: pubsub as never, topic: TOPIC, log, clock: new ManualClock(1000),
    figures: () => mine, load: () => file.data, save: d => { file.data = Buffer.from(d) }
  })
  await reports.start()
  assert.is(pubsub.published.length, 1, 'its own report at start')
  assert.is(openSiteReport(pubsub.published[0], CONSORTIUM).trainImages, 800)
  reports.update(); await settle()
  assert.is(pubsub.published.length, 1, 'unchanged figures are not published again')
  mine = figures(800, 0.42)
  reports.update(); await settle()
  assert.is(pubsub.published.length, 2)
  assert.is(openSiteReport(pubsub.published[1], CONSORTIUM).epsilonSpent, 0.42)

  const validate = async (via: NodeIdentity, data: Uint8Array): Promise<TopicValidatorResult> => await pubsub.topicValidators.get(TOPIC)!(peerIdFromString(via.peerId), { data })
  const arrive = async (data: Uint8Array): Promise<void> => { pubsub.dispatchEvent(new CustomEvent('message', { detail: { topic: TOPIC, data } })); await settle() }
  const v5 = sealSiteReport(b, CONSORTIUM, 5n, figures(300))
  assert.is(await validate(b, v5), TopicValidatorResult.Accept)
  await arrive(v5)
  assert.is(reports.records().get(b.peerId)?.trainImages, 300)
  assert.is(await validate(b, sealSiteReport(b, CONSORTIUM, 4n, figures(9999))), TopicValidatorResult.Ignore, 'an older one (a replay)')
  assert.is(await validate(b, sealSiteReport(outsider, CONSORTIUM, 9n, figures(1))), TopicValidatorResult.Reject, 'an outsider\'s report')
  assert.is(await validate(outsider, sealSiteReport(b, CONSORTIUM, 9n, figures(1))), TopicValidatorResult.Reject, 'from a non-member')
  assert.is(await validate(b, new Uint8Array([1, 2, 3])), TopicValidatorResult.Reject, 'garbage')
  assert.ok(lines.filter(l => /site report (rejected|of a non-member|from a non-member)/.test(l.msg)).length >= 3, 'each rejection is logged')
  assert.is(reports.records().get(b.peerId)?.trainImages, 300, 'the forgeries changed nothing')
  reports.stop()

  // what the export reads: the stored reports, checked again (a tampered entry is left out)
  const stored = storedSiteReports(file.data, CONSORTIUM)
  assert.equal([...stored.keys()].sort(), [me.peerId, b.peerId].sort())
  assert.is(stored.get(me.peerId)?.epsilonSpent, 0.42)
  const saved = JSON.parse(Buffer.from(file.data!).toString('utf8'))
  saved.records[b.peerId] = Buffer.from(sealSiteReport(outsider, CONSORTIUM, 9n, figures(1))).toString('base64')
  assert.equal([...storedSiteReports(Buffer.from(JSON.stringify(saved)), CONSORTIUM).keys()], [me.peerId])
  assert.is(storedSiteReports(file.data, new Uint8Array(32)).size, 0, 'another consortium\'s reports are not this one\'s')
})

test.run()
