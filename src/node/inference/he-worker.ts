/**
 * The holder's SEAL thread: evaluations take hundreds of milliseconds of WebAssembly, which must
 * not stall the node's gossip and rounds, and an abort inside SEAL must not take the node down.
 * It keeps the clinics' loaded keys (by session id) and the compiled model (by state hash).
 */
import { parentPort } from 'node:worker_threads'
import { CkksSuite } from '../../inference/ckks.ts'
import { HeModel, type HeSession } from '../../inference/he-model.ts'
import { splitWeights } from '../../inference/he-layout.ts'
import type { EngineReply, EngineRequest } from './he-engine.ts'

const port = parentPort
if (port === null) throw new Error('he-worker runs as a worker thread')
const suite = await CkksSuite.create()
const sessions = new Map<string, HeSession>()
let model: { key: string, he: HeModel } | null = null

function handle (m: EngineRequest): EngineReply {
  switch (m.type) {
    case 'model': {
      if (model?.key !== m.key) {
        model?.he.delete()
        model = { key: m.key, he: new HeModel(suite, splitWeights(m.weights, m.shape)) }
      }
      return { id: m.id, ok: true }
    }
    case 'open': {
      if (model === null) throw new Error('no model loaded')
      sessions.get(m.session)?.delete()
      sessions.set(m.session, model.he.openSession(m.keys))
      return { id: m.id, ok: true }
    }
    case 'close': {
      for (const s of m.sessions) { sessions.get(s)?.delete(); sessions.delete(s) }
      return { id: m.id, ok: true }
    }
    case 'eval': {
      const s = sessions.get(m.session)
      if (s === undefined) throw new Error('no such session')
      if (model === null) throw new Error('no model loaded')
      const out = model.he.evaluate(s, m.ciphertext)
      return { id: m.id, ok: true, ciphertext: out }
    }
  }
}

port.on('message', (m: EngineRequest) => {
  let reply: EngineReply
  try { reply = handle(m) } catch (e) { reply = { id: m.id, ok: false, error: (e as Error).message } }
  // copied, not transferred: SEAL's arrays may be views into its WebAssembly memory
  port.postMessage(reply)
})
port.postMessage({ id: 0, ok: true, parameters: suite.parametersId })
