/**
 * bench/learning: the simulator with its defaults on every data set the project has, one run each
 * (5 hospitals, Dirichlet α = 1, tcp, seed 1, the run's own centralised baseline):
 *   - PneumoniaMNIST at 28 px (bundled), RetinaMNIST at 28 px (bundled),
 *   - the Kermany paediatric chest X-ray folders (normal / bacterial / viral, PriMIA's task) at
 *     128 and at 224 px, from ../shared/data/chest-xray or --chest-xray DIR (skipped, and said,
 *     where absent).
 * One table: federated and centralised test AUC / accuracy, the gap, the published single-site
 * figure where one exists, whether the chosen model is degenerate, the 90 % prediction sets'
 * coverage on the test split, seconds per round and peak memory per node. Targets (issue #37):
 * federated within 2 AUC points of centralised and at or above the published AUC and accuracy; no
 * degenerate default. Last line: one JSON object.
 *
 * With --select C (for example `default`), each set runs a second time with federated recipe
 * selection (`medmesh simnet --select C`, without the baselines), and a second table sets it
 * beside the one recipe: test AUC / accuracy of each, the recipe chosen, and the time the
 * selection cost (whole run's seconds, and their ratio).
 *
 * Usage: npm run bench:learning [-- --sets pneumonia,retina,chest-128,chest-224 --rounds 10 --out reports/learning --select default --rung-rounds 2 --baselines centralised|all|none]
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { runSimnet } from '../scripts/simnet/simnet.ts'
import { BUNDLED_PNEUMONIAMNIST, BUNDLED_RETINAMNIST } from '../src/training/data/npz.ts'
import { recipeWords } from '../src/node/selection-status.ts'

const root = fileURLToPath(new URL('../', import.meta.url))
const { values } = parseArgs({
  options: {
    sets: { type: 'string', default: 'pneumonia,retina,chest-128,chest-224' },
    rounds: { type: 'string', default: '10' },
    out: { type: 'string', default: join(root, 'reports', 'learning') },
    'chest-xray': { type: 'string', default: join(root, '..', 'shared', 'data', 'chest-xray') },
    select: { type: 'string' },
    'rung-rounds': { type: 'string', default: '2' },
    // the table needs the centralised baseline only; each hospital alone would double the time
    baselines: { type: 'string', default: 'centralised' }
  }
})

/** A set: where it is, the simulator's flags for it, and the published single-site figures (AUC, ACC) it is held to. */
interface LearningSet { name: string, path: string, flags: string[], published: { auc: number, accuracy: number, source: string } | null, note?: string }

const chest = values['chest-xray']
const SETS: Record<string, LearningSet> = {
  pneumonia: { name: 'PneumoniaMNIST (28 px)', path: BUNDLED_PNEUMONIAMNIST, flags: [], published: { auc: 0.944, accuracy: 0.854, source: 'MedMNIST v2 ResNet-18 (28)' } },
  retina: { name: 'RetinaMNIST (28 px)', path: BUNDLED_RETINAMNIST, flags: [], published: { auc: 0.717, accuracy: 0.524, source: 'MedMNIST v2 ResNet-18 (28)' } },
  'chest-128': { name: 'chest X-ray, 3 classes (128 px)', path: chest, flags: ['--size', '128'], published: null, note: 'Kermany et al. report binary tasks only (pneumonia vs normal AUC 0.968, 5,232 training images, ImageNet-pretrained): compare the pneumonia-vs-normal column' },
  'chest-224': { name: 'chest X-ray, 3 classes (224 px)', path: chest, flags: ['--size', '224'], published: null, note: 'as at 128 px' }
}

interface Row {
  set: string, federated: { auc: number, accuracy: number } | null, centralised: { auc: number, accuracy: number } | null, gap: number | null,
  published: LearningSet['published'], pneumoniaVsNormal: { federated: number, centralised: number } | null, degenerate: string | null,
  coverage90: number | null, secondsPerRound: number, peakRssPerNodeMB: number, modelRound: number, skipped?: string,
  seconds: number,
  /** the same set with recipe selection (--select): its test figures, the recipe it chose, its whole run's seconds */
  selected?: { auc: number, accuracy: number, modelRound: number, winner: string | null, seconds: number, degenerate: string | null } | null
}

/** One simulator run of a set; its report. */
async function simulate (set: LearningSet, out: string, extra: string[]): Promise<any> {
  const args = ['--dataset', set.path, ...set.flags, '--rounds', values.rounds, '--out', out, ...extra]
  console.log(`${set.name}: medmesh simnet ${args.join(' ')}`)
  const code = await runSimnet(args, line => { if (/certified|baseline|model medmesh|DEGENERATE|diverged|recipe selection/.test(line)) console.log(`  ${line}`) })
  if (code !== 0) throw new Error(`${set.name}: the simulation failed (exit ${code})`)
  return JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'))
}

const rows: Row[] = []
for (const key of values.sets.split(',')) {
  const set = SETS[key]
  if (set === undefined) throw new Error(`unknown set '${key}': known are ${Object.keys(SETS).join(', ')}`)
  if (!existsSync(set.path)) { rows.push({ set: set.name, skipped: `no data at ${set.path}` } as Row); console.log(`${set.name}: skipped, no data at ${set.path}`); continue }
  const r = await simulate(set, join(values.out, key), ['--baselines', values.baselines])
  const sel = values.select === undefined ? null : await simulate(set, join(values.out, `${key}-select`), ['--select', values.select, '--rung-rounds', values['rung-rounds'], '--no-baselines'])
  const winner = sel?.selection?.winner
  const selected = sel === null ? undefined : sel.final === null ? null : { auc: sel.final.auc, accuracy: sel.final.accuracy, modelRound: sel.chosenRound, winner: winner == null ? null : `#${winner.candidate} (${recipeWords(winner)})`, seconds: sel.federatedSeconds, degenerate: sel.chosenDegenerate }
  const central = r.centralisedChosen > 0 ? r.centralised[r.centralisedChosen - 1] : null
  const normal = (m: { classAucs?: number[] } | null): number | null => m?.classAucs?.[1] ?? null // classes sort as bacterial, normal, viral
  const fedNormal = normal(r.final)
  const cenNormal = normal(central)
  rows.push({
    set: set.name,
    federated: r.final === null ? null : { auc: r.final.auc, accuracy: r.final.accuracy },
    centralised: central === null ? null : { auc: central.auc, accuracy: central.accuracy },
    gap: r.final === null || central === null ? null : r.final.auc - central.auc,
    published: set.published,
    pneumoniaVsNormal: key.startsWith('chest') && fedNormal !== null && cenNormal !== null ? { federated: fedNormal, centralised: cenNormal } : null,
    degenerate: r.chosenDegenerate,
    coverage90: r.conformal.find((c: { coverage: number }) => c.coverage === 0.9)?.testCoverage ?? null,
    secondsPerRound: r.federatedSeconds / r.rounds.length,
    peakRssPerNodeMB: r.peakRssPerNodeMB,
    modelRound: r.chosenRound,
    seconds: r.federatedSeconds,
    selected
  })
}

const f = (x: number | null | undefined): string => x === null || x === undefined || Number.isNaN(x) ? '—' : x.toFixed(3)
console.log('\n| set | federated AUC / ACC | centralised AUC / ACC | gap (AUC) | published AUC / ACC | pneumonia vs normal AUC (fed / central) | degenerate | 90 % sets cover | s per round | peak MB per node |')
console.log('|---|---|---|---|---|---|---|---|---|---|')
for (const r of rows) {
  if (r.skipped !== undefined) { console.log(`| ${r.set} | skipped: ${r.skipped} |||||||||`); continue }
  console.log(`| ${r.set} | ${f(r.federated?.auc)} / ${f(r.federated?.accuracy)} | ${f(r.centralised?.auc)} / ${f(r.centralised?.accuracy)} | ${r.gap === null ? '—' : (r.gap >= 0 ? '+' : '') + r.gap.toFixed(3)} | ${r.published === null ? '—' : `${f(r.published.auc)} / ${f(r.published.accuracy)}`} | ${r.pneumoniaVsNormal === null ? '—' : `${f(r.pneumoniaVsNormal.federated)} / ${f(r.pneumoniaVsNormal.centralised)}`} | ${r.degenerate ?? 'no'} | ${r.coverage90 === null ? '—' : `${(100 * r.coverage90).toFixed(1)} %`} | ${r.secondsPerRound.toFixed(0)} | ${r.peakRssPerNodeMB} |`)
}
for (const key of values.sets.split(',')) if (SETS[key]?.note !== undefined) console.log(`${SETS[key].name}: ${SETS[key].note}`)
if (values.select !== undefined) {
  console.log(`\n| set | one recipe: AUC / ACC (round) | recipe selection (--select ${values.select}, ${values['rung-rounds']} rounds a rung): AUC / ACC (round) | recipe chosen | AUC difference | federated seconds, one recipe / selection | time ratio |`)
  console.log('|---|---|---|---|---|---|---|')
  for (const r of rows) {
    if (r.skipped !== undefined || r.selected === undefined) continue
    const sel = r.selected
    console.log(`| ${r.set} | ${f(r.federated?.auc)} / ${f(r.federated?.accuracy)} (${r.modelRound}) | ${sel === null ? 'no model' : `${f(sel.auc)} / ${f(sel.accuracy)} (${sel.modelRound})${sel.degenerate === null ? '' : ' DEGENERATE'}`} | ${sel?.winner ?? '—'} | ${sel === null || r.federated === null ? '—' : (sel.auc - r.federated.auc >= 0 ? '+' : '') + (sel.auc - r.federated.auc).toFixed(3)} | ${r.seconds.toFixed(0)} / ${sel === null ? '—' : sel.seconds.toFixed(0)} | ${sel === null ? '—' : (sel.seconds / r.seconds).toFixed(2)} |`)
  }
}
const run = rows.filter(r => r.skipped === undefined)
const within = run.every(r => r.gap !== null && r.gap >= -0.02)
const published = run.every(r => r.published === null || (r.federated !== null && r.federated.auc >= r.published.auc && r.federated.accuracy >= r.published.accuracy))
const healthy = run.every(r => r.degenerate === null)
console.log(JSON.stringify({ bench: 'learning', rounds: Number(values.rounds), sets: rows, withinTwoPoints: within, atOrAbovePublished: published, noDegenerateDefault: healthy }))
