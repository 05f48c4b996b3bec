/**
 * The consortium's gossip topic (/medmesh/<consortium id>/v1), which carries the signed control
 * messages. Each message is checked once, in the topic validator, before gossipsub forwards it
 * (so that peer scoring penalises a sender of bad ones): the sender must be a member and the
 * message must open (size, schema, consortium, membership, signature). What the validator opened
 * is what the protocol peer receives. This node's own messages of the round in progress are
 * published again to a member that subscribes late (it restarted, or it was cut off).
 */
import type { Startable, PeerId } from '@libp2p/interface'
import { TopicValidatorResult, type GossipSub, type GossipSubEvents } from '@libp2p/gossipsub'
import { openMessage, type MessageContext, type OpenedMessage } from '../../protocol/messages.ts'
import { orReject } from '../../protocol/errors.ts'
import type { Logger } from '../logger.ts'
import type { NodeMetrics } from '../metrics.ts'

export interface GossipComponents {
  pubsub: Pick<GossipSub, 'topicValidators' | 'subscribe' | 'unsubscribe' | 'publish' | 'getSubscribers' | 'addEventListener' | 'removeEventListener'>
  topic: string
  isMember: (peerId: string) => boolean
  context: () => MessageContext
  /** an opened message from a member, for the protocol peer */
  deliver: (msg: OpenedMessage) => void
  /** the round in progress: only its messages are published again */
  round: () => number | null
  log: Logger
  metrics: Pick<NodeMetrics, 'rejected' | 'sent' | 'gossipAccepted'>
}

export interface Gossip extends Startable {
  /** publish a message of `round`; kept until the next round, to publish again to late subscribers */
  broadcast: (wire: Uint8Array, round: number) => void
  /** members subscribed to the topic now */
  subscribers: () => string[]
}

export function createGossip (c: GossipComponents): Gossip {
  /** opened by the validator, taken by the message listener (gossipsub hands both the same data) */
  const opened = new WeakMap<Uint8Array, OpenedMessage>()
  let own: { round: number, wires: Uint8Array[] } = { round: -1, wires: [] }

  const validate = (from: PeerId, msg: { data: Uint8Array }): TopicValidatorResult => {
    const peer = from.toString()
    if (!c.isMember(peer)) { c.log.warn({ peer }, 'gossip from a non-member dropped'); return TopicValidatorResult.Reject }
    const m = orReject(() => openMessage(msg.data, c.context()), e => {
      c.metrics.rejected.inc({ code: e.code })
      c.log.warn({ peer, code: e.code }, `message rejected: ${e.message}`)
    })
    if (m === undefined) return TopicValidatorResult.Reject
    opened.set(msg.data, m)
    c.metrics.gossipAccepted.inc()
    return TopicValidatorResult.Accept
  }
  const onMessage = (evt: GossipSubEvents['message']): void => {
    if (evt.detail.topic !== c.topic) return
    const msg = opened.get(evt.detail.data)
    // every message on the topic passed the validator; one that did not is not taken
    if (msg === undefined) { c.log.warn('a gossip message arrived without validation: dropped'); return }
    opened.delete(evt.detail.data)
    c.deliver(msg)
  }
  const onSubscription = (evt: GossipSubEvents['subscription-change']): void => {
    if (!evt.detail.subscriptions.some(s => s.topic === c.topic && s.subscribe) || !c.isMember(evt.detail.peerId.toString())) return
    if (own.round !== c.round()) return
    for (const wire of own.wires) void c.pubsub.publish(c.topic, wire).catch(() => {})
  }

  return {
    start () {
      c.pubsub.topicValidators.set(c.topic, validate)
      c.pubsub.subscribe(c.topic)
      c.pubsub.addEventListener('message', onMessage)
      c.pubsub.addEventListener('subscription-change', onSubscription)
    },
    stop () {
      c.pubsub.removeEventListener('message', onMessage)
      c.pubsub.removeEventListener('subscription-change', onSubscription)
      c.pubsub.topicValidators.delete(c.topic)
    },
    broadcast (wire, round) {
      if (own.round !== round) own = { round, wires: [] }
      own.wires.push(wire)
      // counted once per member it went to (gossipsub floods a node's own messages to every peer)
      void c.pubsub.publish(c.topic, wire).then(
        r => c.metrics.sent('gossip', round, wire.length * r.recipients.length),
        e => c.log.warn(`publish failed: ${(e as Error).message}`))
    },
    subscribers: () => c.pubsub.getSubscribers(c.topic).map(p => p.toString()).filter(c.isMember)
  }
}
