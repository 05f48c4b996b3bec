/** `medmesh predict`: the consortium's chosen model on PNG, JPEG or DICOM images, or every image in a folder. */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { basename, extname, join } from 'node:path'
import { EXIT, UsageError, parseFlags } from './usage.ts'
import { predictionSet } from '../protocol/conformal.ts'

export const help = `Usage: medmesh predict (--data-dir DIR [--round N] | --model EXPORT) [--json | --csv] [--explain OUT_DIR] IMAGE|FOLDER...

Runs the consortium's chosen model (the certified round with the best federated validation AUC;
the latest certified model before any) on PNG, JPEG and DICOM files, and on every such file in a
folder (and its sub-folders), with the preprocessing of training: the model's channels and size,
the consortium's normalisation. One line per image: file, predicted class, the probability of
each class, and, where the consortium's validation gave one, the prediction set: every class whose
probability reaches the split conformal threshold, which holds the true class for at least the
stated share of images like the validation images (a set of more than one class: the model is
unsure). Images that cannot be read are named with the reason on stderr and skipped. A model the
consortium's validation found degenerate (one class for every image, or every score tied) is
used only with a warning on stderr.

Options:
  --data-dir DIR    a member's data directory (manifest, ledger, certified models)
  --round N         the model certified in round N instead of the chosen one
  --model EXPORT    a folder written by medmesh export (or its model.json) instead of a data directory
  --json            one JSON object: the model, a prediction per image, the skipped ones
  --csv             file,predicted,<one column per class>,set
  --coverage P      the prediction sets' coverage: 0.9 (default) or 0.95
  --explain OUT_DIR a Grad-CAM heat map per image (where the model looked, for the predicted
                    class): OUT_DIR/NAME.input.png (the image) and OUT_DIR/NAME.gradcam.png (the
                    map over it)

Exit codes: 0 every image predicted, 65 some could not be read (named on stderr), 64 bad usage,
78 no certified model, no data directory or a broken export.`

const IMAGE_EXTS = new Set(['.png', '.jpg', '.jpeg', '.dcm'])
/** images larger than this are refused before they are decoded */
const MAX_FILE_BYTES = 256 * 1024 * 1024

/** The files named, with folders expanded to the image files in them (sorted). */
export function imageFiles (paths: string[]): { files: string[], missing: Array<{ file: string, reason: string }> } {
  const files: string[] = []
  const missing: Array<{ file: string, reason: string }> = []
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      if (name.startsWith('.')) continue
      const p = join(dir, name)
      if (statSync(p).isDirectory()) walk(p)
      else if (IMAGE_EXTS.has(extname(name).toLowerCase())) files.push(p)
    }
  }
  for (const p of paths) {
    let st
    try { st = statSync(p) } catch { missing.push({ file: p, reason: 'no such file' }); continue }
    if (st.isDirectory()) walk(p)
    else files.push(p)
  }
  return { files, missing }
}

export async function run (args: string[], out: (s: string) => void = s => process.stdout.write(s + '\n'), err: (s: string) => void = s => process.stderr.write(s + '\n')): Promise<number> {
  const parsed = parseFlags({ args, allowPositionals: true, strict: true, options: { 'data-dir': { type: 'string' }, model: { type: 'string' }, round: { type: 'string' }, json: { type: 'boolean' }, csv: { type: 'boolean' }, explain: { type: 'string' }, coverage: { type: 'string' } } })
  const { values, positionals } = parsed
  const coverage = values.coverage === undefined ? 0.9 : Number(values.coverage)
  if (coverage !== 0.9 && coverage !== 0.95) throw new UsageError(`--coverage must be 0.9 or 0.95 (the coverages the consortium's validation states), got '${values.coverage}'`)
  if ((values['data-dir'] === undefined) === (values.model === undefined)) throw new UsageError('predict needs either --data-dir DIR or --model EXPORT')
  if (values.model !== undefined && values.round !== undefined) throw new UsageError('--round chooses among a data directory\'s models; an export holds one')
  if (positionals.length === 0) throw new UsageError('predict needs at least one image or folder')
  if (values.json === true && values.csv === true) throw new UsageError('--json and --csv exclude each other')
  const round = values.round === undefined ? undefined : Number(values.round)
  if (round !== undefined && (!Number.isInteger(round) || round < 0)) throw new UsageError(`--round must be a round number, got '${values.round}'`)

  // TF.js and the node's modules only now: --help and usage errors stay fast
  const { guarded } = await import('./node-commands.ts')
  const { selectBackend } = await import('../training/backend.ts')
  await selectBackend()
  return await guarded(async () => {
    const { fromDataDir, fromExport } = await import('../node/model-source.ts')
    const source = values.model !== undefined ? await fromExport(values.model) : fromDataDir(values['data-dir']!, { round })
    try { return await predict(source, positionals, { json: values.json === true, csv: values.csv === true, explain: values.explain, coverage }, out, err) } finally { source.model.dispose() }
  }, err, values.explain ?? 'the output folder')
}

async function predict (source: import('../node/model-source.ts').ModelSource, paths: string[], o: { json: boolean, csv: boolean, explain?: string, coverage: number }, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const { preprocess, predictWith, ImageLoadError } = await import('../training/predict.ts')
  const { files, missing } = imageFiles(paths)
  const skipped = [...missing]
  const read: Array<{ file: string, bytes: Uint8Array, pixels: Uint8Array }> = []
  for (const file of files) {
    try {
      if (statSync(file).size > MAX_FILE_BYTES) throw new ImageLoadError(`larger than ${MAX_FILE_BYTES / 1024 / 1024} MiB`)
      const bytes = new Uint8Array(readFileSync(file))
      read.push({ file, bytes, pixels: preprocess(bytes, file, source.size, source.channels) })
    } catch (e) {
      if (!(e instanceof ImageLoadError) && (e as NodeJS.ErrnoException).code === undefined) throw e
      skipped.push({ file, reason: (e as Error).message.replace(`${file}: `, '') })
    }
  }
  const { classes } = source
  const probs = read.length === 0 ? new Float32Array(0) : predictWith(source.model, read.map(r => r.pixels), source.norm)
  const k = classes.length
  const threshold = source.about.conformal.find(c => c.coverage === o.coverage)?.threshold ?? null
  const predictions = read.map((r, i) => {
    const p = Array.from(probs.subarray(i * k, (i + 1) * k))
    const best = p.indexOf(Math.max(...p))
    return {
      file: r.file, predicted: classes[best], probabilities: Object.fromEntries(classes.map((c, j) => [c, p[j]])) as Record<string, number>,
      predictionSet: threshold === null ? undefined : predictionSet(p, threshold).map(c => classes[c]),
      explanation: undefined as undefined | { input: string, heatMap: string, layer: string }
    }
  })
  if (o.explain !== undefined && read.length > 0) {
    const { explainToFiles } = await import('../node/explain-files.ts')
    const { GradCamError } = await import('../training/grad-cam.ts')
    let written
    try { written = explainToFiles(source, read, outputNames(read.map(r => r.file)), o.explain) } catch (e) {
      if (!(e instanceof GradCamError)) throw e
      err(`medmesh: cannot explain: ${e.message}`)
      return EXIT.config
    }
    written.forEach((w, i) => { predictions[i].explanation = w })
  }
  writePredictions({ ...source.about, coverage: threshold === null ? null : o.coverage }, classes, predictions, skipped, o, out, err)
  if (!o.json && !o.csv && o.explain !== undefined && read.length > 0) err(`heat maps (Grad-CAM, layer ${predictions[0].explanation?.layer ?? '?'}) in ${o.explain}`)
  return skipped.length > 0 ? EXIT.dataError : EXIT.ok
}

export interface Prediction { file: string, predicted: string, probabilities: Record<string, number>, predictionSet?: string[], explanation?: { input: string, heatMap: string, layer: string } }
/** what answered: a data directory's or an export's model, or an encrypted-inference holder; whether it is degenerate, and the prediction sets' coverage */
export interface About { source: string, path: string, round: number | null, reason: string | null, model: string, certificate: string | null, validation: { auc: number } | null, degenerate?: string | null, coverage?: number | null }

/** The lines of predict (and of infer, which prints the same): text, --json or --csv; skipped files on stderr. */
export function writePredictions (about: About, classes: string[], predictions: Prediction[], skipped: Array<{ file: string, reason: string }>, o: { json: boolean, csv: boolean }, out: (s: string) => void, err: (s: string) => void): void {
  for (const s of skipped) err(`medmesh: skipped ${s.file}: ${s.reason}`)
  if (about.degenerate !== undefined && about.degenerate !== null) err(`medmesh: WARNING: this model is degenerate (on the consortium's validation images ${about.degenerate}): it has learnt nothing, do not use its predictions`)
  const sets = predictions.some(p => p.predictionSet !== undefined)
  if (o.json) out(JSON.stringify({ model: about, predictions, skipped }))
  else if (o.csv) {
    out(['file', 'predicted', ...classes, ...(sets ? ['set'] : [])].map(csvField).join(','))
    for (const p of predictions) out([p.file, p.predicted, ...classes.map(c => p.probabilities[c].toFixed(6)), ...(sets ? [(p.predictionSet ?? []).join('|')] : [])].map(csvField).join(','))
  } else {
    const which = about.round === null ? about.path : `round ${about.round}`
    err(`model: ${which} (${about.reason ?? about.source}${about.validation === null ? '' : `, validation AUC ${about.validation.auc.toFixed(3)}`}), ${about.model}${about.certificate === null ? '' : `, certificate ${about.certificate.slice(0, 16)}`}`)
    if (sets && about.coverage !== undefined && about.coverage !== null) err(`prediction sets: the classes that hold the true one for at least ${(100 * about.coverage).toFixed(0)} % of images like the consortium's validation images${about.source === 'export' ? ' (thresholds from the export\'s model card, which verify-model does not check)' : ''}`)
    for (const p of predictions) out(`${p.file}\t${p.predicted}\t${classes.map(c => `${c} ${p.probabilities[c].toFixed(4)}`).join('\t')}${p.predictionSet === undefined ? '' : `\tset {${p.predictionSet.join(', ')}}`}`)
  }
}

function csvField (s: string): string { return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s }

/** Output names for input files: the file name without its extension, numbered when two collide. */
export function outputNames (files: string[]): string[] {
  const used = new Set<string>()
  return files.map(f => {
    const stem = basename(f, extname(f)).replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '') || 'image'
    let name = stem
    for (let n = 2; used.has(name); n++) name = `${stem}-${n}`
    used.add(name)
    return name
  })
}
