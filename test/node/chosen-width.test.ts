/** The chosen model after recipe selection chose another width: built at that width; a round of candidates side by side is no model to use. */
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
import { roundCandidates, sizedCandidates } from '../../src/protocol/selection.ts'
import { roundKind } from '../../src/protocol/validation.ts'
import { MemNet } from '../protocol/harness.ts'

const BINS = 20
/** one member's validation counts whose AUC is k/10 (as chosen-model.test makes them) */
function counts (k: number): number[] {
  const c = new Array<number>(4 + 2 * BINS).fill(0)
  c[0] = k; c[1] = 10 - k; c[3] = 1
  c[4 + 12] = 1
  c[4 + BINS + 2] = k; c[4 + BINS + 18] = 10 - k
  return c
}

// the model (8 weights) and its half width (4 weights, its own initial weights); the half width validates better
const SELECTION = sizedCandidates({ candidates: [{ learningRate: 1e-3, epochs: 1 }, { learningRate: 1e-3, epochs: 1, width: 0.5 }], rungRounds: 1 }, () => Float32Array.of(0.1, 0.2, 0.3, 0.4))
const SKILL = [6, 9]

test('selection chose the half width: the chosen model is built at width ×0.5 from its 4 weights; the round of both candidates side by side is refused by name', () => {
  const p = { selection: SELECTION, model: { size: 8, classes: 2 } }
  const net: MemNet = new MemNet({
    n: 3, seed: 4, modelSize: 8, lastRound: 6, kindOf: roundKind, initialOf: () => Float32Array.of(0.1, 0.2, 0.3, 0.4),
    params: q => { q.validation = { bins: BINS, patience: 0 }; q.training.rounds = 4; q.selection = SELECTION },
    input: (member, round, kind) => {
      if (kind === 'stats') return { values: [0.5, 0.3, 0.4, 0.6], count: 10 }
      const live = roundCandidates(net.peers[member].ledger.entries, p, round, kind)!
      if (kind === 'eval') return { values: live.flatMap(c => counts(SKILL[c])), count: 11 }
      return { values: new Float32Array(net.peers[member].roundState.weights.length).fill(0.01), count: 100 }
    }
  })
  const states = new Map<number, GlobalState>()
  net.startAll()
  net.run(() => {
    const q = net.peers[0]
    const last = q.ledger.lastOf('update')
    if (last !== undefined && hex(stateHash(q.state)) === hex(last.header.stateHash)) states.set(last.header.round, q.state)
    return net.peers.every(x => x.ledger.lastRound >= 6) && states.size === 3
  })
  assert.equal([...states.values()].map(s => s.weights.length), [12, 4, 4], 'both candidates in round 1, the half width alone after')
  const dir = new DataDir(mkdtempSync(join(tmpdir(), 'medmesh-chosen-width-')))
  try {
    dir.saveManifest({ manifest: net.manifest, signatures: Object.fromEntries(net.identities.map(id => [id.peerId, signManifest(net.manifest, id)])) })
    for (const e of net.peers[0].ledger.entries) dir.saveCertificate(e.header.round, e.certificate)
    const keep = [...states.values()].map(s => hex(stateHash(s)))
    for (const s of states.values()) dir.saveState(s, keep)
    const c = chosenModel(dir.root)
    assert.ok(c.entry.header.round >= 3, `round ${c.entry.header.round}`)
    assert.is(c.spec.widthFactor, 0.5)
    assert.is(c.weights.length, 4)
    assert.throws(() => chosenModel(dir.root, { round: 1 }), /certified 12 weights, the candidates' models of recipe selection side by side/)
  } finally {
    rmSync(dir.root, { recursive: true })
  }
})

test.run()
