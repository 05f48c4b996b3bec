/** Run fingerprints and `simnet --compare`: two runs with one seed agree round by round; another seed differs, and says where. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runSimnet } from '../../scripts/simnet/simnet.ts'
import { compareReports } from '../../scripts/simnet/compare.ts'

const round = (k: number, state: string, participants = [0, 1, 2]) => ({ round: k, stateHash: state, participants, validation: { auc: 0.9, accuracy: 0.8, n: 30 } })

test('compare: agreement needs the same certified state, participants and validation in every round', () => {
  const fp = { seed: 1, command: ['--seed', '1'], version: '0.1.0', commit: 'abc', backend: 'wasm', node: 'v22', cores: 2 }
  const a = { fingerprint: fp, rounds: [round(1, 'aa'), round(2, 'bb')] }
  assert.ok(compareReports(a, structuredClone(a)).agree)
  const otherState = compareReports(a, { fingerprint: fp, rounds: [round(1, 'aa'), round(2, 'cc')] })
  assert.not.ok(otherState.agree)
  assert.equal(otherState.firstDifference, { round: 2, what: 'certified state', a: '"bb"', b: '"cc"' })
  const fewer = compareReports(a, { fingerprint: fp, rounds: [round(1, 'aa', [0, 2]), round(2, 'bb')] })
  assert.is(fewer.firstDifference!.what, 'participants')
  assert.is(fewer.firstDifference!.round, 1)
  const shorter = compareReports(a, { fingerprint: { ...fp, cores: 16 }, rounds: [round(1, 'aa')] })
  assert.equal(shorter.firstDifference, { round: 2, what: 'rounds run', a: '2', b: '1' })
  assert.equal(shorter.setting, [{ field: 'cores', a: '2', b: '16' }])
})

test('simnet: the report carries the run’s fingerprint and each round’s certified state; the same seed twice agrees, another seed does not', async () => {
  const dirs = [0, 1, 2].map(() => mkdtempSync(join(tmpdir(), 'medmesh-compare-')))
  try {
    const run = async (dir: string, seed: string) => await runSimnet(['--transport', 'memory', '--nodes', '3', '--rounds', '2', '--epochs', '0.1', '--partition', 'iid', '--no-baselines', '--seed', seed, '--out', dir], () => {})
    assert.is(await run(dirs[0], '3'), 0)
    assert.is(await run(dirs[1], '3'), 0)
    assert.is(await run(dirs[2], '4'), 0)
    const report = JSON.parse(readFileSync(join(dirs[0], 'report.json'), 'utf8'))
    assert.is(report.fingerprint.seed, 3)
    assert.ok(report.fingerprint.command.includes('--seed'))
    assert.match(report.fingerprint.node, /^v\d+/)
    assert.ok(report.fingerprint.cores >= 1)
    assert.ok(report.rounds.every((r: { stateHash: string }) => /^[0-9a-f]{64}$/.test(r.stateHash)))
    const lines: string[] = []
    assert.is(await runSimnet(['--compare', dirs[0], dirs[1]], s => lines.push(s)), 0, lines.join('\n'))
    assert.match(lines.join('\n'), /agree on all 2 round\(s\)/)
    const other: string[] = []
    assert.is(await runSimnet(['--compare', dirs[0], dirs[2]], s => other.push(s)), 1)
    assert.match(other.join('\n'), /first differ at round 1: certified state/)
    assert.match(other.join('\n'), /setting differs: seed 3 .* vs 4/)
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
})

test('with DP too: the noise of a simulation follows from its seed, so two runs agree', async () => {
  const dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), 'medmesh-compare-dp-')))
  try {
    for (const d of dirs) assert.is(await runSimnet(['--transport', 'memory', '--nodes', '3', '--rounds', '1', '--epochs', '0.1', '--dp-epsilon', '50', '--partition', 'iid', '--no-baselines', '--out', d], () => {}), 0)
    const lines: string[] = []
    assert.is(await runSimnet(['--compare', dirs[0], dirs[1]], s => lines.push(s)), 0, lines.join('\n'))
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
})

test('--repeat K: K seeds, each in its own folder, and the mean and spread of the final figures', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-repeat-'))
  try {
    const lines: string[] = []
    const code = await runSimnet(['--transport', 'memory', '--nodes', '3', '--rounds', '1', '--epochs', '0.1', '--partition', 'iid', '--seed', '5', '--repeat', '2', '--out', dir], s => lines.push(s))
    assert.is(code, 0, lines.join('\n'))
    const summary = JSON.parse(readFileSync(join(dir, 'repeat.json'), 'utf8'))
    assert.equal(summary.seeds, [5, 6])
    const aucs = [5, 6].map(k => JSON.parse(readFileSync(join(dir, `seed-${k}`, 'report.json'), 'utf8')).final.auc as number)
    const mean = (aucs[0] + aucs[1]) / 2
    assert.ok(Math.abs(summary.federated.auc.mean - mean) < 1e-12)
    assert.ok(Math.abs(summary.federated.auc.sd - Math.abs(aucs[0] - aucs[1]) / Math.SQRT2) < 1e-12)
    assert.is(summary.centralised.auc.n, 2)
    assert.ok(lines.some(l => /federated test AUC 0\.\d{3} ± 0\.\d{3} \(.*2 runs\)/.test(l)), lines.slice(-5).join('\n'))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test.run()
