import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runSimnet } from '../../scripts/simnet/simnet.ts'
import { BUNDLED_RETINAMNIST } from '../../src/training/data/npz.ts'
import { validationLength } from '../../src/protocol/validation.ts'
import { buildModel, countParameters } from '../../src/training/models.ts'
import { exportModel } from '../../src/node/export.ts'

test('tcp: a small consortium of node processes runs end to end, writes a report whose figures agree with its run, and repeats given its seed', async () => {
  const out = mkdtempSync(join(tmpdir(), 'medmesh-simnet-'))
  const out2 = mkdtempSync(join(tmpdir(), 'medmesh-simnet-'))
  try {
    const lines: string[] = []
    const code = await runSimnet(['--nodes', '3', '--rounds', '2', '--epochs', '0.3', '--partition', 'iid', '--dropout', '0', '--out', out], s => lines.push(s))
    assert.is(code, 0, lines.join('\n'))
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'))
    assert.is(report.config.nodes, 3)
    assert.is(report.config.transport, 'tcp')
    assert.match(report.transport, /TCP/)
    assert.ok(report.peakRssPerNodeMB > 50, `peak memory per node process ${report.peakRssPerNodeMB} MB`)
    assert.is(report.rounds.length, 2)
    assert.ok(report.agree, 'no conflicting certificates')
    for (const r of report.rounds) {
      assert.equal(r.participants, [0, 1, 2])
      assert.ok(r.metrics.auc > 0.7 && r.metrics.auc <= 1, `round ${r.round} AUC ${r.metrics.auc}`)
      // counted where sent: each hospital's masked vector (the weights and the sample weight, as uint32) went to the two others
      assert.is(r.bytesByKind['masked-vector'], 3 * 2 * (report.config.modelBytes + 4 + 4 * (validationLength({ classes: 2, bins: 1000 }) + 1)), `round ${r.round}: ${JSON.stringify(r.bytesByKind)}`)
      assert.ok(r.validation.auc > 0.7 && r.validation.n > 300, `round ${r.round}: pooled validation ${JSON.stringify(r.validation)}`)
      assert.ok(r.bytesByKind.gossip > 0)
      assert.ok(Math.abs(r.modelSizes - r.bytes / report.config.modelBytes) < 1e-9 && r.modelSizes > 6)
    }
    assert.is(report.centralised.length, 2)
    assert.is(report.local.length, 3)
    assert.is(report.partition.reduce((s: number, p: { size: number }) => s + p.size, 0), 4708)
    const html = readFileSync(join(out, 'report.html'), 'utf8')
    assert.match(html, /<svg[^>]*aria-label="Test ROC-AUC per round"/)
    assert.match(html, /federated \(medmesh\)/)
    assert.ok(lines.some(l => /round 2: certified, 3\/3 hospitals — validation AUC [0-9.]+ — test AUC/.test(l)), 'a progress line per round')
    assert.match(html, /every round certified with all 3 hospitals/)
    // the same command again, over separate processes and real sockets: the same certified states
    const again = await runSimnet(['--nodes', '3', '--rounds', '2', '--epochs', '0.3', '--partition', 'iid', '--dropout', '0', '--no-baselines', '--out', out2], () => {})
    assert.is(again, 0)
    const compared: string[] = []
    assert.is(await runSimnet(['--compare', out, out2], s => compared.push(s)), 0, compared.join('\n'))
    assert.is(compared[compared.length - 1], `${out} and ${out2} agree on all 2 round(s): the same faults, certified states, participants and pooled validation`)
    // the only setting that differs is the command's --no-baselines (where the report went is none)
    assert.equal(compared.slice(0, -1).map(l => l.replace(/ \[.*/, '')), ['setting differs: command'])
    assert.match(compared[0], /"--no-baselines"\] \(/)
  } finally {
    rmSync(out, { recursive: true, force: true })
    rmSync(out2, { recursive: true, force: true })
  }
})

test('tcp: the consortium chooses its recipe: two candidates (the second at half the model\'s width) trained side by side, one dropped after the first rung, the winner trained on; the log, the report and the nodes say so', async () => {
  const out = mkdtempSync(join(tmpdir(), 'medmesh-simnet-'))
  try {
    const lines: string[] = []
    const code = await runSimnet(['--nodes', '3', '--rounds', '3', '--epochs', '0.2', '--partition', 'iid', '--select', '1e-3,3e-3::0.5', '--rung-rounds', '1', '--no-baselines', '--out', out], s => lines.push(s))
    assert.is(code, 0, lines.join('\n'))
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'))
    assert.ok(report.agree, 'no conflicting certificates')
    assert.equal(report.rounds.map((r: { participants: number[] }) => r.participants), [[0, 1, 2], [0, 1, 2], [0, 1, 2]])
    const s = report.selection
    assert.is(s.decisions.length, 1)
    assert.equal(s.decisions[0].scores.map((x: { kept: boolean }) => x.kept).filter(Boolean).length, 1, 'one of the two kept')
    assert.is(s.winner.candidate, s.decisions[0].scores.find((x: { kept: boolean }) => x.kept).candidate)
    // the selection round is no model to choose or test; the winner's rounds are
    assert.is(report.rounds[0].validation, null)
    assert.is(report.rounds[0].metrics, null)
    assert.ok(report.rounds[2].metrics.auc > 0.7, `the winner's model: ${JSON.stringify(report.rounds[2].metrics)}`)
    assert.ok(report.chosenRound >= 2)
    // each model round's masked vector: two models side by side in round 1 (the model and its half-width variant), the winner's alone after
    const half = buildModel({ id: 'medmesh/cnn-small', height: 28, width: 28, channels: 1, classes: 2, seed: 1, widthFactor: 0.5 })
    const halfBytes = 4 * countParameters(half)
    half.dispose()
    assert.ok(halfBytes < report.config.modelBytes / 2)
    const loserBytes = s.winner.candidate === 1 ? halfBytes : report.config.modelBytes
    assert.is(report.rounds[0].bytesByKind['masked-vector'] - report.rounds[1].bytesByKind['masked-vector'], 3 * 2 * (loserBytes + 4 * validationLength({ classes: 2, bins: 1000 })))
    // the decision line names both candidates (in the manifest's order, each kept or dropped) and then the winner
    assert.ok(lines.some(l => /recipe selection, rung 1 \(model rounds 1-1\).* dropped;.* #[12] \(lr 0\.00[13], [0-9.]+ epoch\(s\)(, width ×0\.5)?\) is the consortium's recipe from now on/.test(l)), lines.join('\n'))
    const log = readFileSync(join(out, 'nodes', 'hospital-0.log'), 'utf8')
    assert.match(log, /trained \d+ images for 2 candidate recipes \(#1 lr 0\.001 × 0\.2 epoch\(s\), #2 lr 0\.003 × 0\.2 epoch\(s\) at width ×0\.5\)/)
    assert.match(readFileSync(join(out, 'report.html'), 'utf8'), /recipe selection among #1 \(lr 0\.001, 0\.2 epoch\(s\)\), #2 \(lr 0\.003, 0\.2 epoch\(s\), width ×0\.5\)/)
    // the manifest the nodes ran pins the half-width model by its size and initial hash
    const manifest = JSON.parse(readFileSync(join(out, 'nodes', 'manifest.json'), 'utf8')).manifest
    assert.equal(manifest.params.selection.candidates[1].size * 4, halfBytes)
    assert.match(manifest.params.selection.candidates[1].initialHash, /^[0-9a-f]{64}$/)
    // a hospital exports the winner's model at the winner's width, and its card says which
    const exported = await exportModel(join(out, 'nodes', 'hospital-0'), join(out, 'export'))
    const card = exported.card as { model: { widthFactor: number, parameters: number } }
    assert.is(card.model.widthFactor, s.winner.candidate === 2 ? 0.5 : 1)
    assert.is(card.model.parameters * 4, s.winner.candidate === 2 ? halfBytes : report.config.modelBytes)
    assert.match(readFileSync(join(out, 'export', 'MODEL_CARD.md'), 'utf8'), s.winner.candidate === 2 ? /at width ×0\.5 \(the width recipe selection chose\)/ : /A medmesh\/cnn-small model \(/)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

test('DP: each round reports the ε spent through its own training, rising, within the budget', async () => {
  const out = mkdtempSync(join(tmpdir(), 'medmesh-simnet-'))
  try {
    const code = await runSimnet(['--transport', 'memory', '--nodes', '3', '--rounds', '2', '--epochs', '0.1', '--dp-epsilon', '50', '--partition', 'iid', '--no-baselines', '--out', out], () => {})
    assert.is(code, 0)
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'))
    const [r1, r2] = report.rounds.map((r: { epsilon: number[] }) => r.epsilon)
    for (let i = 0; i < 3; i++) {
      assert.ok(r1[i] > 0 && r2[i] > r1[i] && r2[i] <= 50, `hospital ${i}: ε ${r1[i]} then ${r2[i]}`)
    }
    // the same work each round, the same bytes: three masked vectors, each to the two others
    for (const r of report.rounds) assert.is(r.bytesByKind['masked-vector'], 3 * 2 * (report.config.modelBytes + 4 + 4 * (validationLength({ classes: 2, bins: 1000 }) + 1)), `round ${r.round}`)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

test('colour and five classes end to end: RetinaMNIST through secure aggregation, resized to 32 px', async () => {
  const out = mkdtempSync(join(tmpdir(), 'medmesh-simnet-'))
  try {
    const lines: string[] = []
    const code = await runSimnet(['--transport', 'memory', '--dataset', BUNDLED_RETINAMNIST, '--size', '32', '--nodes', '3', '--rounds', '2', '--epochs', '1', '--partition', 'iid', '--no-baselines', '--out', out], s => lines.push(s))
    assert.is(code, 0, lines.join('\n'))
    assert.ok(lines.some(l => /of 32×32×3, 5 classes: 0, 1, 2, 3, 4/.test(l)), lines.join('\n'))
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'))
    for (const r of report.rounds) {
      assert.equal(r.participants, [0, 1, 2])
      assert.is(r.metrics.confusion.length, 5)
      assert.ok(r.metrics.auc > 0.5, `round ${r.round}: macro AUC ${r.metrics.auc}`)
    }
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

test('a recipe made to diverge: every round flagged degenerate in the progress, the report, the nodes\' status, and by predict and export', async () => {
  const out = mkdtempSync(join(tmpdir(), 'medmesh-simnet-'))
  try {
    const lines: string[] = []
    // Adam at 9.9 with the guards off: every prediction saturates on one class within the first round
    const code = await runSimnet(['--nodes', '3', '--rounds', '2', '--epochs', '0.3', '--learning-rate', '9.9', '--warmup-steps', '0', '--clip-grad', '1000000', '--partition', 'iid', '--no-baselines', '--out', out], s => lines.push(s))
    assert.is(code, 0, lines.join('\n'))
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'))
    assert.equal(report.degenerateRounds, [1, 2])
    assert.match(report.chosenDegenerate, /tied|one class/)
    assert.ok(lines.filter(l => /^round \d: certified.*\(DEGENERATE: /.test(l)).length === 2, lines.join('\n'))
    assert.match(readFileSync(join(out, 'report.html'), 'utf8'), /WARNING: the chosen model is DEGENERATE/)
    // a member's data directory: offline status, predict and export all say it
    const dataDir = join(out, 'nodes', 'hospital-0')
    const { offlineStatus } = await import('../../src/node/setup.ts')
    assert.match((offlineStatus(dataDir) as { ledger: { bestValidated: { degenerate: string } } }).ledger.bestValidated.degenerate, /tied|one class/)
    const said: string[] = []
    const predict = await import('../../src/cli/predict.ts')
    assert.is(await predict.run(['--data-dir', dataDir, 'data/examples/test-000-pneumonia.png'], () => {}, e => said.push(e)), 0)
    assert.ok(said.some(l => /WARNING: this model is degenerate/.test(l)), said.join('\n'))
    const exported = join(out, 'export')
    const exportCli = await import('../../src/cli/export.ts')
    said.length = 0
    assert.is(await exportCli.run(['--data-dir', dataDir, '--out', exported], () => {}, e => said.push(e)), 0)
    assert.ok(said.some(l => /WARNING: the exported model is degenerate/.test(l)), said.join('\n'))
    assert.match(readFileSync(join(exported, 'MODEL_CARD.md'), 'utf8'), /## WARNING: this model is degenerate/)
    said.length = 0
    assert.is(await predict.run(['--model', exported, 'data/examples/test-000-pneumonia.png'], () => {}, e => said.push(e)), 0)
    assert.ok(said.some(l => /WARNING: this model is degenerate/.test(l)), 'the export carries it to whoever runs it')
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

test('faults: a crash and restart, a malicious hospital and dropouts; rounds still certify, no conflicting certificates', async () => {
  const out = mkdtempSync(join(tmpdir(), 'medmesh-simnet-'))
  try {
    const lines: string[] = []
    const code = await runSimnet(['--transport', 'memory', '--nodes', '5', '--rounds', '5', '--epochs', '0.1', '--kill-at', '1', '--malicious', '--dropout', '0.2', '--latency', '20', '--no-baselines', '--out', out], s => lines.push(s))
    assert.is(code, 0, lines.join('\n'))
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'))
    assert.ok(report.agree)
    assert.ok(report.rejections > 0, 'the malicious hospital\'s garbage was rejected and logged')
    const certified = report.rounds.filter((r: { participants: number[] }) => r.participants.length > 0)
    // every round certifies whose honest members present make the threshold (3): all but the
    // crashed hospital 1 (rounds 1 and 2), the offline ones and the malicious hospital 4
    for (const r of report.rounds as Array<{ round: number, offline: number[], participants: number[] }>) {
      const down = new Set([...r.offline, ...(r.round <= 2 ? [1] : []), 4])
      if (5 - down.size >= 3) assert.ok(r.participants.length > 0, `round ${r.round}: ${5 - down.size} honest members present, certified`)
      assert.ok(r.participants.every(p => !down.has(p) || p === 4), `round ${r.round}: only members present take part`)
    }
    const enough = (report.rounds as Array<{ round: number, offline: number[] }>).filter(r => 5 - new Set([...r.offline, ...(r.round <= 2 ? [1] : []), 4]).size >= 3).length
    assert.ok(enough >= 2 && certified.length >= enough, `${certified.length} of 5 rounds certified, ${enough} had enough honest members`)
    assert.ok(lines.some(l => /hospital 1 restarts, verifies \d+ certificates/.test(l)))
    // the report lists exactly the faults injected: the crash, the restart, the malicious hospital, the dropouts
    const faults = (report.rounds as Array<{ faults: Array<{ round: number, hospital: number, fault: string }> }>).flatMap(r => r.faults)
    assert.equal(faults.filter(f => f.fault === 'crash' || f.fault === 'restart'), [{ round: 1, hospital: 1, fault: 'crash' }, { round: 3, hospital: 1, fault: 'restart' }])
    assert.is(faults.filter(f => f.fault === 'malicious' && f.hospital === 4).length, report.rounds.length)
    for (const r of report.rounds as Array<{ round: number, offline: number[], faults: Array<{ hospital: number, fault: string }> }>) assert.equal(r.faults.filter(f => f.fault === 'offline').map(f => f.hospital), r.offline)
    assert.ok(lines.some(l => l.startsWith('faults injected: round 1 hospital 1 crashes')), lines.join('\n'))
    assert.ok(certified.some((r: { round: number, participants: number[] }) => r.round >= 3 && r.participants.includes(1)), `the restarted hospital takes part again: ${JSON.stringify(report.rounds.map((x: { participants: number[] }) => x.participants))}`)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

test('tcp: 20% of the node processes killed every round and restarted after it: every round certifies without them or aborts cleanly, the run finishes, and the same seed meets the same dropouts again', async () => {
  const out = mkdtempSync(join(tmpdir(), 'medmesh-simnet-'))
  const again = mkdtempSync(join(tmpdir(), 'medmesh-simnet-again-'))
  try {
    const lines: string[] = []
    const args = ['--nodes', '5', '--epochs', '0.1', '--partition', 'iid', '--dropout', '0.2', '--seed', '5', '--no-baselines']
    const code = await runSimnet([...args, '--rounds', '3', '--out', out], s => lines.push(s))
    assert.is(code, 0, lines.join('\n'))
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'))
    assert.ok(report.agree, 'no conflicting certificates')
    const certified = report.rounds.filter((r: { participants: number[] }) => r.participants.length > 0)
    assert.ok(certified.length >= 3, lines.join('\n'))
    for (const r of report.rounds) {
      assert.is(r.offline.length, 1)
      assert.equal(r.faults, [{ round: r.round, hospital: r.offline[0], fault: 'offline' }])
      assert.not.ok(r.participants.includes(r.offline[0]), `round ${r.round}: the offline hospital is not among the participants`)
    }
    assert.ok(lines.some(l => l === `faults injected: ${report.rounds.map((r: { round: number, offline: number[] }) => `round ${r.round} hospital ${r.offline[0]} offline`).join('; ')}`), lines.join('\n'))
    // a shorter run with the same seed: the same hospitals go offline in the same rounds
    assert.is(await runSimnet([...args, '--rounds', '2', '--out', again], () => {}), 0)
    const second = JSON.parse(readFileSync(join(again, 'report.json'), 'utf8'))
    assert.equal(second.rounds.map((r: { faults: unknown }) => r.faults), report.rounds.slice(0, 2).map((r: { faults: unknown }) => r.faults))
  } finally {
    rmSync(out, { recursive: true, force: true })
    rmSync(again, { recursive: true, force: true })
  }
})

test.run()
