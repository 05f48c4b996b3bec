/**
 * A member node's encrypted-inference holder: its own listener (host.ts) on the addresses the
 * node's config names, the protocol handler (service.ts) and the SEAL worker (he-engine.ts),
 * serving the consortium's chosen certified he-cnn from the data directory.
 */
import type { Startable } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'
import type { Manifest } from '../../protocol/manifest.ts'
import { HE_CNN } from '../../training/models.ts'
import { chosenModel } from '../chosen-model.ts'
import { DataDir } from '../datadir.ts'
import type { Logger } from '../logger.ts'
import { streamNetwork } from '../network.ts'
import { HeEngine } from './he-engine.ts'
import { createInferenceListener } from './host.ts'
import { systemClock, type Clock } from '../clock.ts'
import { createInferenceService, type InferenceOptions, type InferenceService, type ServedModel } from './service.ts'

/** Who may query: members and the manifest's clients, by name. */
export function allowedClients (manifest: Manifest): Map<string, string> {
  return new Map([...manifest.members, ...(manifest.params.inference?.clients ?? [])].map(m => [m.peerId, m.name]))
}

/** The data directory's chosen model as the holder serves it, or why it cannot. */
export function servedModel (dataDir: string): ServedModel | string {
  let c
  try { c = chosenModel(dataDir) } catch (e) { return `no certified model to serve yet (${(e as Error).message})` }
  if (c.spec.id !== 'medmesh/he-cnn') return `this consortium trains ${c.spec.id}; encrypted inference needs a consortium that trains medmesh/he-cnn`
  if (c.norm === undefined) return 'the consortium has not certified its normalisation statistics yet'
  return {
    round: c.entry.header.round, stateHash: Buffer.from(c.entry.header.stateHash).toString('hex'), weights: c.weights,
    shape: { filters: HE_CNN.filters, hidden: HE_CNN.hidden, classes: c.spec.classes }, classNames: c.classes, mean: c.norm.mean, std: c.norm.std
  }
}

export interface InferenceHolder extends Startable {
  readonly service: InferenceService
  addresses: () => string[]
}

export async function createInferenceHolder (o: { dataDir: string, manifest: Manifest, listen: string[], log: Logger, clock?: Clock, options?: InferenceOptions, model?: () => ServedModel | string, version?: () => unknown }): Promise<InferenceHolder> {
  const allowed = allowedClients(o.manifest)
  const identity = new DataDir(o.dataDir).inferenceIdentity()
  const listener: Libp2p = await createInferenceListener(identity, o.listen, p => allowed.has(p), peer => o.log.warn({ peer }, 'inference connection refused: neither a member nor a client the manifest lists'))
  // the chosen model changes only when a round is certified: read the data directory again then
  let cached: { version: unknown, model: ServedModel | string } | null = null
  const model = o.model ?? (() => {
    const v = o.version?.()
    if (cached === null || v === undefined || cached.version !== v) cached = { version: v, model: servedModel(o.dataDir) }
    return cached.model
  })
  const service = createInferenceService({ network: streamNetwork(listener), allowed: p => allowed.get(p) ?? null, model, engine: new HeEngine(), log: o.log, clock: o.clock ?? systemClock }, o.options)
  return {
    service,
    addresses: () => listener.getMultiaddrs().map(a => a.toString()),
    async start () {
      await listener.start()
      await service.start()
      o.log.info({ addresses: listener.getMultiaddrs().map(a => a.toString()) }, 'serving encrypted inference')
    },
    async stop () {
      await service.stop()
      await listener.stop()
    }
  }
}
