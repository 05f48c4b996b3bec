/**
 * The simulation report rendered: one JSON file with every figure (report-model.ts computes them),
 * and an HTML page of SVG charts and a summary that opens offline.
 */
import { selectionSummary } from '../../src/node/selection-status.ts'
import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { formatMetrics, type ClinicalMetrics } from '../../src/training/metrics.ts'
import { describeFault } from './faults.ts'
import { PHASES, type RoundRecord } from './federation.ts'
import type { ReportModel } from './report-model.ts'

export interface Series { name: string, values: Array<number | null> }

const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf']
const esc = (s: string): string => s.replace(/[&<>"]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)

/** A line chart: x = index (round), y in [lo, hi]. */
export function lineChart (title: string, series: Series[], lo: number, hi: number, yLabel: string): string {
  const W = 640; const H = 300; const L = 56; const R = 170; const T = 30; const B = 40
  const n = Math.max(1, ...series.map(s => s.values.length))
  const x = (i: number): number => L + (n === 1 ? 0 : i * (W - L - R) / (n - 1))
  const y = (v: number): number => T + (hi - v) * (H - T - B) / (hi - lo || 1)
  const grid = Array.from({ length: 5 }, (_, k) => lo + k * (hi - lo) / 4).map(v =>
    `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="${L - 6}" y="${y(v) + 4}" text-anchor="end" font-size="11">${v.toFixed(2)}</text>`).join('')
  const lines = series.map((s, k) => {
    const pts = s.values.map((v, i) => v === null || !Number.isFinite(v) ? null : `${x(i).toFixed(1)},${y(Math.max(lo, Math.min(hi, v))).toFixed(1)}`).filter(p => p !== null)
    const colour = COLOURS[k % COLOURS.length]
    // a series of one point (a chosen round) is drawn as a marker
    const marker = pts.length === 1 ? `<circle cx="${pts[0]!.split(',')[0]}" cy="${pts[0]!.split(',')[1]}" r="6" fill="none" stroke="${colour}" stroke-width="2"/>` : ''
    return `<polyline fill="none" stroke="${colour}" stroke-width="${k === 0 ? 3 : 1.5}" points="${pts.join(' ')}"/>${marker}` +
      `<text x="${W - R + 8}" y="${T + 14 * k + 10}" font-size="11" fill="${colour}">${esc(s.name)}</text>`
  }).join('')
  const ticks = Array.from({ length: n }, (_, i) => i).filter(i => n <= 12 || i % Math.ceil(n / 12) === 0).map(i => `<text x="${x(i)}" y="${H - B + 16}" text-anchor="middle" font-size="11">${i + 1}</text>`).join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" role="img" aria-label="${esc(title)}"><text x="${L}" y="18" font-size="14" font-weight="bold">${esc(title)}</text>${grid}${ticks}` +
    `<text x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle" font-size="11">round</text><text x="14" y="${H / 2}" font-size="11" transform="rotate(-90 14 ${H / 2})" text-anchor="middle">${esc(yLabel)}</text>${lines}</svg>`
}

export function barChart (title: string, labels: string[], values: number[], unit: string): string {
  const W = 640; const rowH = 22; const L = 150; const T = 30
  const H = T + rowH * labels.length + 10
  const max = Math.max(1e-12, ...values)
  const bars = labels.map((l, i) => {
    const w = (W - L - 120) * values[i] / max
    return `<text x="${L - 8}" y="${T + i * rowH + 15}" text-anchor="end" font-size="12">${esc(l)}</text><rect x="${L}" y="${T + i * rowH + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${COLOURS[i % COLOURS.length]}"/>` +
      `<text x="${L + w + 6}" y="${T + i * rowH + 15}" font-size="12">${values[i].toFixed(values[i] >= 100 ? 0 : values[i] >= 10 ? 1 : 3)} ${esc(unit)}</text>`
  }).join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" role="img" aria-label="${esc(title)}"><text x="10" y="18" font-size="14" font-weight="bold">${esc(title)}</text>${bars}</svg>`
}

export function writeReport (dir: string, data: object, charts: string[], summary: string[]): { json: string, html: string } {
  mkdirSync(dir, { recursive: true })
  const json = join(dir, 'report.json')
  const html = join(dir, 'report.html')
  writeFileSync(json, JSON.stringify(data, null, 2) + '\n')
  writeFileSync(html, `<!doctype html><html><head><meta charset="utf-8"><title>medmesh simulation report</title>
<style>body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222} svg{display:block;margin:1.5em 0} li{margin:.2em 0}</style></head>
<body><h1>medmesh simulation report</h1><ul>${summary.map(s => `<li>${esc(s)}</li>`).join('')}</ul>${charts.join('\n')}
<p>Every figure is in <code>report.json</code> beside this page.</p></body></html>\n`)
  return { json, html }
}

/** ROC curves on the unit square, with the chance diagonal. */
export function rocChart (title: string, curves: Array<{ name: string, fpr: number[], tpr: number[] }>): string {
  const S = 300; const L = 50; const T = 30; const R = 200
  const x = (v: number): number => L + v * S
  const y = (v: number): number => T + (1 - v) * S
  const lines = curves.map((c, k) => {
    const colour = COLOURS[k % COLOURS.length]
    return `<polyline fill="none" stroke="${colour}" stroke-width="${k === 0 ? 3 : 1.5}" points="${c.fpr.map((f, i) => `${x(f).toFixed(1)},${y(c.tpr[i]).toFixed(1)}`).join(' ')}"/>` +
      `<text x="${L + S + 12}" y="${T + 14 * k + 10}" font-size="11" fill="${colour}">${esc(c.name)}</text>`
  }).join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${L + S + R}" height="${T + S + 40}" role="img" aria-label="${esc(title)}"><text x="${L}" y="18" font-size="14" font-weight="bold">${esc(title)}</text>` +
    `<rect x="${L}" y="${T}" width="${S}" height="${S}" fill="none" stroke="#999"/><line x1="${x(0)}" y1="${y(0)}" x2="${x(1)}" y2="${y(1)}" stroke="#ccc" stroke-dasharray="4"/>${lines}` +
    `<text x="${L + S / 2}" y="${T + S + 30}" text-anchor="middle" font-size="11">false positive rate</text><text x="14" y="${T + S / 2}" font-size="11" transform="rotate(-90 14 ${T + S / 2})" text-anchor="middle">true positive rate</text></svg>`
}

/** A reliability diagram: accuracy against confidence per bin, the diagonal being perfect calibration. */
export function reliabilityChart (title: string, bins: Array<{ confidence: number, accuracy: number, count: number }>, ece: number): string {
  const S = 300; const L = 50; const T = 30
  const w = S / bins.length
  const bars = bins.map((b, i) => b.count === 0 ? '' : `<rect x="${(L + i * w + 1).toFixed(1)}" y="${(T + (1 - b.accuracy) * S).toFixed(1)}" width="${(w - 2).toFixed(1)}" height="${(b.accuracy * S).toFixed(1)}" fill="${COLOURS[0]}" opacity="0.7"><title>${b.count} predictions, confidence ${b.confidence.toFixed(2)}, accuracy ${b.accuracy.toFixed(2)}</title></rect>`).join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${L + S + 40}" height="${T + S + 40}" role="img" aria-label="${esc(title)}"><text x="${L}" y="18" font-size="14" font-weight="bold">${esc(title)} — ECE ${ece.toFixed(3)}</text>` +
    `<rect x="${L}" y="${T}" width="${S}" height="${S}" fill="none" stroke="#999"/>${bars}<line x1="${L}" y1="${T + S}" x2="${L + S}" y2="${T}" stroke="#d62728" stroke-dasharray="4"/>` +
    `<text x="${L + S / 2}" y="${T + S + 30}" text-anchor="middle" font-size="11">confidence (predicted class)</text><text x="14" y="${T + S / 2}" font-size="11" transform="rotate(-90 14 ${T + S / 2})" text-anchor="middle">accuracy</text></svg>`
}

/** The confusion matrix as a table (rows: true class, columns: predicted). */
export function confusionTable (title: string, classes: string[], matrix: number[][]): string {
  const head = classes.map(c => `<th>${esc(c)}</th>`).join('')
  const rows = matrix.map((row, t) => `<tr><th>${esc(classes[t])}</th>${row.map((v, p) => `<td style="background:${t === p ? '#e6f2e6' : v > 0 ? '#fbeaea' : '#fff'}">${v}</td>`).join('')}</tr>`).join('')
  return `<table role="table" aria-label="${esc(title)}" style="border-collapse:collapse;margin:1.5em 0" border="1" cellpadding="6"><caption style="font-weight:bold;text-align:left">${esc(title)} (rows: true class, columns: predicted)</caption><tr><th></th>${head}</tr>${rows}</table>`
}

/** The faults a run met, in one line. */
export function faultLine (records: RoundRecord[]): string {
  const faults = records.flatMap(r => r.faults)
  return faults.length === 0 ? 'faults injected: none' : `faults injected: ${faults.map(f => `round ${f.round} ${describeFault(f)}`).join('; ')}`
}

/** The page's charts: the figures per round of the federation and the baselines, time, traffic, ε, ROC, confusion, calibration, each hospital's view. */
export function reportCharts (m: ReportModel): string[] {
  const { report: r, options: o } = m
  const chosen = r.chosenRound - 1
  const values = (xs: Array<ClinicalMetrics | null>, pick: (x: ClinicalMetrics) => number): Array<number | null> => xs.map(x => x === null ? null : pick(x))
  const series = (pick: (x: ClinicalMetrics) => number): Series[] => [
    { name: 'federated (medmesh)', values: values(r.rounds.map(x => x.metrics), pick) },
    ...(r.centralised.length > 0 ? [{ name: 'centralised', values: values(r.centralised, pick) }] : []),
    ...r.local.map((s, i) => ({ name: `hospital ${i} alone`, values: values(s, pick) }))
  ]
  const view = r.hospitalView
  return [
    lineChart('Test ROC-AUC per round', series(x => x.auc), 0.5, 1, 'AUC'),
    lineChart('Test accuracy per round', series(x => x.accuracy), 0.3, 1, 'accuracy'),
    lineChart(`Validation AUC per round (pooled by secure aggregation; chosen: round ${chosen + 1})`, [
      { name: 'consortium validation', values: r.rounds.map(x => x.validation?.auc ?? null) },
      { name: 'chosen round', values: r.rounds.map((x, i) => i === chosen ? x.validation?.auc ?? null : null) }
    ], 0.5, 1, 'AUC'),
    barChart(`${o.transport === 'memory' ? 'Simulated time' : 'Time'} per phase (all rounds)`, PHASES, PHASES.map(p => r.rounds.reduce((a, x) => a + (x.phaseMs[p] ?? 0), 0) / 1000), 's'),
    barChart('Bytes sent per hospital (whole run)', r.bytesPerNode.map((_, i) => `hospital ${i}`), r.bytesPerNode.map(b => b / 1e6), 'MB'),
    barChart('Bytes sent per round and hospital, in model sizes', r.rounds.map(x => `round ${x.round}`), r.rounds.map(x => x.modelSizes / o.n), '× model'),
    ...(o.dp !== null ? [barChart('ε spent per hospital', r.epsilon.map((_, i) => `hospital ${i}`), r.epsilon, '')] : []),
    ...(m.curves.length > 0 ? [rocChart(`ROC on the test split${m.classes.length > 2 ? ' (micro-average over the classes)' : ''}`, m.curves)] : []),
    ...(r.final !== null ? [confusionTable(`Confusion matrix of the federated model (round ${chosen + 1}) on the test split`, m.classes, r.final.confusion)] : []),
    ...(r.calibration !== null ? [reliabilityChart('Reliability of the federated model on the test split', r.calibration.bins, r.calibration.ece)] : []),
    ...(view.some(v => v.alone !== null) ? [barChart('Each hospital\'s view: AUC on its own held-out data, federated model / trained alone',
      view.flatMap(v => [`hospital ${v.hospital}: federated`, `hospital ${v.hospital}: alone`]), view.flatMap(v => [v.federated?.auc ?? 0, v.alone?.auc ?? 0]), '')] : [])
  ]
}

/** The page's summary, a line each: how the run was made, what the consortium's model and the baselines scored, faults, safety, memory, ε. */
export function reportSummary (m: ReportModel): string[] {
  const { report: r, options: o } = m
  const f = r.fingerprint; const c = r.config; const t = c.training; const a = c.aggregation
  const n = o.n; const chosen = r.chosenRound - 1
  const short = r.rounds.filter(x => x.participants.length < n)
  return [
    `run: medmesh ${f.version}${f.commit === null ? '' : ` (commit ${f.commit.slice(0, 12)})`}, Node ${f.node}, ${f.cores} cores, seed ${c.seed}; command: medmesh simnet ${f.command.join(' ')}`,
    `transport: ${r.transport}`,
    `${n} hospitals, ${c.rounds} rounds, model ${c.model}, ${c.partition} partition${c.partition === 'iid' ? '' : ` (α=${c.alpha})`}, dropout ${c.dropout}, seed ${c.seed}, backend ${c.backend}`,
    `recipe: ${t.epochs} local epoch(s) per round, batch ${t.batchSize}, Adam at ${t.learningRate}${t.schedule === 'constant' ? '' : ` (${t.schedule} over the rounds)`}, class weighting ${t.classWeighting}${t.priorCorrection === undefined ? '' : `, prior correction ${t.priorCorrection}`}, ${a.rule}${a.rule === 'fedavg' ? '' : ` (β ${a.beta1})`}${a.serverLr === 1 ? '' : `, server learning rate ${a.serverLr}`}` +
      (o.dp === null ? '' : `; DP-SGD at ε ${o.dp.epsilon}, δ 1e-5 per hospital, clipping norm ${o.dp.clip}, noise ${o.dp.noise === 0 ? 'calibrated at each hospital to its budget' : `multiplier ${o.dp.noise}`}`),
    r.final !== null ? `federated model (round ${chosen + 1}, pooled validation AUC ${r.rounds[chosen].validation?.auc.toFixed(3) ?? 'n/a'}${r.choice.smoothedAuc === null ? '' : `, ${r.choice.smoothedAuc.toFixed(3)} averaged with its neighbours`}) on the test split: ${formatMetrics(r.final)}` : 'no certified model round',
    ...(r.final !== null ? [`round chosen by ${r.choice.rule}`] : []),
    ...(r.chosenDegenerate !== null ? [`WARNING: the chosen model is DEGENERATE (on the pooled validation images ${r.chosenDegenerate}): the recipe learnt nothing on this data`] : []),
    ...(r.selection === null ? [] : selectionSummary(r.selection)),
    ...(r.degenerateRounds.length > 0 ? [`degenerate rounds (one class for every validation image, or every score tied): ${r.degenerateRounds.join(', ')}`] : []),
    ...r.conformal.map(c => `prediction sets for ${(100 * c.coverage).toFixed(0)} % coverage (threshold ${c.threshold.toFixed(3)} from the pooled validation): ${(100 * c.testCoverage).toFixed(1)} % of test images covered, ${c.meanSetSize.toFixed(2)} classes per set on average`),
    ...(r.centralisedChosen > 0 ? [`centralised (pooled data, round ${r.centralisedChosen}, chosen by validation as the consortium chooses) on the test split: ${formatMetrics(r.centralised[r.centralisedChosen - 1])}`] : []),
    faultLine(r.rounds),
    short.length === 0 ? `every round certified with all ${n} hospitals` : `rounds without every hospital: ${short.map(x => `${x.round} (${x.participants.length}/${n})`).join(', ')}`,
    `rounds certified: ${r.rounds.filter(x => x.participants.length > 0).length} of ${c.rounds}; no conflicting certificates: ${r.agree}; ${m.atHead} of ${n} peers at the head`,
    o.transport === 'memory'
      ? `peak memory ${r.peakRssMB} MB for the whole process (${r.peakRssPerNodeMB} MB per simulated hospital); ${r.rejections} rejected inputs logged`
      : `peak memory ${r.peakRssPerNodeMB} MB for the largest node process (${r.peakRssMB} MB for all ${n}); ${r.rejections} rejected inputs logged`,
    ...(r.calibration !== null ? [`expected calibration error of the federated model: ${r.calibration.ece.toFixed(3)}`] : []),
    ...r.hospitalView.filter(v => v.federated !== null && v.alone !== null).map(v => `hospital ${v.hospital} on its own held-out data (n=${v.federated!.n}): federated AUC ${v.federated!.auc.toFixed(3)}, alone ${v.alone!.auc.toFixed(3)}`),
    ...(o.dp !== null ? [`DP-SGD: ε budget ${o.dp.epsilon} per hospital, spent ${r.epsilon.map(e => e.toFixed(2)).join(', ')}`] : [])
  ]
}
