/** The node store on a temporary data directory: restore after crashes, persist, and a directory that cannot be written. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NodeStore } from '../../../src/node/services/store.ts'
import { DataDir } from '../../../src/node/datadir.ts'
import { hex } from '../../../src/protocol/codec.ts'
import { stateHash, type GlobalState } from '../../../src/protocol/model.ts'
import { MemNet, defaultInput } from '../../protocol/harness.ts'
import { recordingLogger } from './stubs.ts'

/** four certified rounds (a statistics round, then three model rounds), and the model after each */
function history (): { net: MemNet, states: Map<number, GlobalState> } {
  const net = new MemNet({
    n: 3, seed: 5, modelSize: 8, lastRound: 3, kindOf: r => r === 0 ? 'stats' : 'update',
    input: (member, round, kind) => kind === 'stats' ? { values: [0.5, 0.3, 0.4, 0.6], count: 10 } : defaultInput(8)(member, round)
  })
  const states = new Map<number, GlobalState>()
  net.startAll()
  for (let r = 0; r <= 3; r++) {
    net.run(() => net.peers.every(p => p.ledger.lastRound >= r && (r === 0 || hex(stateHash(p.state)) === hex(p.ledger.lastOf('update')!.header.stateHash))))
    states.set(r, net.peers[0].state)
  }
  return { net, states }
}

function store (dir: DataDir): { store: NodeStore, lines: ReturnType<typeof recordingLogger>['lines'], failures: number[] } {
  const { log, lines } = recordingLogger()
  const failures: number[] = []
  return { store: new NodeStore({ dir, log, unwritable: () => failures.push(1) }), lines, failures }
}

const tmp = (): DataDir => new DataDir(mkdtempSync(join(tmpdir(), 'medmesh-store-')))

test('persist writes each certificate once and the last certified model; restore gives them back', () => {
  const { net, states } = history()
  const dir = tmp()
  const s = store(dir)
  s.store.persist(net.peers[0].ledger, states.get(3)!)
  assert.equal(readdirSync(dir.path('ledger')).length, 4)
  assert.equal(readdirSync(dir.path('states')), [`${hex(stateHash(states.get(3)!))}.state`])
  assert.ok(s.store.modelSaved(net.peers[0].ledger))
  s.store.saveRound(5, 'masked-input')
  const r = store(dir).store.restore(net.manifest, 'me')
  assert.is(r.ledger.lastRound, 3)
  assert.is(hex(stateHash(r.state!)), hex(stateHash(states.get(3)!)))
  assert.is(r.firstRound, 6, 'never the round it was in when it stopped')
  rmSync(dir.root, { recursive: true })
})

test('a crash between a certificate and its model: restore goes back to the last model held', () => {
  const { net, states } = history()
  const dir = tmp()
  const ledger = net.peers[0].ledger
  for (const e of ledger.entries) dir.saveCertificate(e.header.round, e.certificate)
  dir.saveState(states.get(2)!) // round 3's model never arrived
  const s = store(dir)
  const r = s.store.restore(net.manifest, 'me')
  assert.is(r.ledger.lastRound, 2, 'the certificate without its model is dropped')
  assert.is(hex(stateHash(r.state!)), hex(stateHash(states.get(2)!)))
  assert.ok(s.lines.some(l => l.level === 'warn' && /round 3 is not in .*resuming from round 2/.test(l.msg)), s.lines.map(l => l.msg).join('\n'))
  assert.is(r.firstRound, 0, 'no round.json: any round')
  rmSync(dir.root, { recursive: true })
})

test('no model at all yet: restore keeps only what came before the first model round', () => {
  const { net } = history()
  const dir = tmp()
  for (const e of net.peers[0].ledger.entries) dir.saveCertificate(e.header.round, e.certificate)
  const r = store(dir).store.restore(net.manifest, 'me')
  assert.is(r.ledger.lastRound, 0, 'the statistics round stays')
  assert.is(r.state, null)
  rmSync(dir.root, { recursive: true })
})

test('modelSaved: false while the last model certificate waits for its model', () => {
  const { net, states } = history()
  const dir = tmp()
  const s = store(dir)
  s.store.persist(net.peers[0].ledger, states.get(2)!) // the state held is round 2's, the ledger names round 3's
  assert.not.ok(s.store.modelSaved(net.peers[0].ledger))
  assert.not.ok(existsSync(dir.path('states')), 'a state the ledger does not name is not written as the certified one')
  s.store.persist(net.peers[0].ledger, states.get(3)!)
  assert.ok(s.store.modelSaved(net.peers[0].ledger))
  rmSync(dir.root, { recursive: true })
})

test('a data directory that cannot be written stops the node once, with the reason; other errors are thrown', () => {
  const s = store(tmp())
  const enospc = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })
  s.store.guard(() => { throw enospc })
  s.store.guard(() => { throw enospc })
  assert.equal(s.failures, [1], 'unwritable is called once')
  assert.match(s.store.unwritable ?? '', /^ENOSPC/)
  assert.ok(s.lines.some(l => l.level === 'error' && /cannot write to the data directory \(ENOSPC\)/.test(l.msg)))
  assert.throws(() => s.store.guard(() => { throw new TypeError('a bug') }), /a bug/)
})

test.run()
