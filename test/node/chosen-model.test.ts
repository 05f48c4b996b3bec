/** The chosen model as a data directory holds it: by smoothed validation AUC, an earlier directory's fallback, a named round. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chosenModel } from '../../src/node/chosen-model.ts'
import { DataDir } from '../../src/node/datadir.ts'
import { hex } from '../../src/protocol/codec.ts'
import { signManifest } from '../../src/protocol/manifest.ts'
import { stateHash, type GlobalState } from '../../src/protocol/model.ts'
import { roundKind } from '../../src/protocol/validation.ts'
import { MemNet, defaultInput } from '../protocol/harness.ts'

const BINS = 20
/** the pooled validation AUC of each model round 1, 3, 5, 7, 9 (tenths): the single best is round 3, the best stretch round 5 */
const AUC_TENTHS = [6, 10, 8, 9, 5]

/** One member's validation counts whose AUC is k/10: a positive scored 0.6, ten negatives of which k are scored 0.1 and the rest 0.9. */
function counts (k: number): Float64Array {
  const c = new Float64Array(4 + 2 * BINS)
  c[0] = k; c[1] = 10 - k; c[3] = 1 // confusion: true 0 predicted 0 / 1, true 1 predicted 1
  c[4 + 12] = 1 // p_1 of the positive
  c[4 + BINS + 2] = k; c[4 + BINS + 18] = 10 - k // p_1 of the negatives
  return c
}

/** A consortium's ledger through five validated model rounds, and the model after each model round. */
function history (): { net: MemNet, states: Map<number, GlobalState> } {
  const net = new MemNet({
    n: 3, seed: 6, modelSize: 8, lastRound: 10, kindOf: roundKind,
    params: p => { p.validation = { bins: BINS, patience: 0 } },
    input: (member, round, kind) => kind === 'stats'
      ? { values: [0.5, 0.3, 0.4, 0.6], count: 10 }
      : kind === 'eval' ? { values: counts(AUC_TENTHS[round / 2 - 1]), count: 11 } : defaultInput(8)(member, round)
  })
  const states = new Map<number, GlobalState>()
  net.startAll()
  // member 0's model after each model round, taken while it is the one its last certificate names
  const watch = (): boolean => {
    const p = net.peers[0]
    const last = p.ledger.lastOf('update')
    if (last !== undefined && hex(stateHash(p.state)) === hex(last.header.stateHash)) states.set(last.header.round, p.state)
    return net.peers.every(p => p.ledger.lastRound >= 10) && states.size === 5
  }
  net.run(watch)
  assert.equal([...states.keys()], [1, 3, 5, 7, 9], 'the model of every model round')
  return { net, states }
}

/** A data directory with the signed manifest, every certificate and the models of `held` rounds, given to `use`, then removed. */
function withDataDir (held: number[], use: (dir: DataDir) => void): void {
  const dir = dataDir(net, states, held)
  try { use(dir) } finally { rmSync(dir.root, { recursive: true }) }
}

function dataDir (net: MemNet, states: Map<number, GlobalState>, held: number[]): DataDir {
  const dir = new DataDir(mkdtempSync(join(tmpdir(), 'medmesh-chosen-')))
  dir.saveManifest({ manifest: net.manifest, signatures: Object.fromEntries(net.identities.map(id => [id.peerId, signManifest(net.manifest, id)])) })
  for (const e of net.peers[0].ledger.entries) dir.saveCertificate(e.header.round, e.certificate)
  // saveState keeps only the state it writes and those named: name them all
  const keep = held.map(r => hex(stateHash(states.get(r)!)))
  for (const r of held) dir.saveState(states.get(r)!, keep)
  return dir
}

const { net, states } = history()

test('the ledger holds five validated model rounds with the AUCs the counts were made for', () => {
  const evals = net.peers[0].ledger.entries.filter(e => e.header.kind === 'eval')
  assert.equal(evals.map(e => e.header.round), [2, 4, 6, 8, 10])
})

test('chosen: the round whose AUC averaged with its neighbours is best (round 5), not the single best (round 3)', () => {
  withDataDir([1, 3, 5, 7, 9], dir => {
    const c = chosenModel(dir.root)
    assert.is(c.entry.header.round, 5)
    assert.is(c.reason, 'best validation AUC averaged with its neighbours')
    assert.ok(Math.abs(c.validation!.auc - 0.8) < 1e-9, `AUC ${c.validation!.auc}`)
    assert.ok(Math.abs(c.validation!.smoothedAuc - 0.9) < 1e-9, `smoothed ${c.validation!.smoothedAuc}`)
    assert.is(c.degenerate, null)
    assert.equal(Array.from(c.weights), Array.from(states.get(5)!.weights), 'the weights of round 5')
  })
})

test('a directory kept before smoothed choice, without round 5: the best by smoothed AUC among the rounds it holds', () => {
  withDataDir([3, 7, 9], dir => {
    const c = chosenModel(dir.root)
    assert.is(c.entry.header.round, 3, 'round 3 (smoothed 0.80) above round 7 (0.73) and round 9 (0.70)')
    assert.is(c.reason, 'best validation AUC among the models kept')
  })
})

test('no validated model held: a clear error, not another model', () => {
  withDataDir([], dir => {
    assert.throws(() => chosenModel(dir.root), /round 5 .* is not in .*states/)
  })
})

test('a named round is that round', () => {
  withDataDir([7], dir => {
    assert.is(chosenModel(dir.root, { round: 7 }).entry.header.round, 7)
    assert.throws(() => chosenModel(dir.root, { round: 4 }), /round 4 certified no model/)
  })
})

test.run()
