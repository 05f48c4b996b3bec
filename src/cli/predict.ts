/** `medmesh predict`: the consortium's chosen model on PNG, JPEG or DICOM images, or every image in a folder. */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { extname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { EXIT, UsageError } from './main.ts'

export const help = `Usage: medmesh predict --data-dir DIR [--round N] [--json | --csv] IMAGE|FOLDER...

Runs the consortium's chosen model (the certified round with the best federated validation AUC;
the latest certified model before any) on PNG, JPEG and DICOM files, and on every such file in a
folder (and its sub-folders), with the preprocessing of training: the model's channels and size,
the consortium's normalisation. One line per image: file, predicted class, the probability of
each class. Images that cannot be read are named with the reason on stderr and skipped.

Options:
  --data-dir DIR  a member's data directory (manifest, ledger, certified models)
  --round N       the model certified in round N instead of the chosen one
  --json          one JSON object: the model, a prediction per image, the skipped ones
  --csv           file,predicted,<one column per class>

Exit codes: 0 every image predicted, 65 some could not be read (named on stderr), 64 bad usage,
78 no certified model or no data directory.`

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
  let parsed
  try {
    parsed = parseArgs({ args, allowPositionals: true, strict: true, options: { 'data-dir': { type: 'string' }, round: { type: 'string' }, json: { type: 'boolean' }, csv: { type: 'boolean' } } })
  } catch (e) { throw new UsageError((e as Error).message) }
  const { values, positionals } = parsed
  if (values['data-dir'] === undefined) throw new UsageError('predict needs --data-dir DIR')
  if (positionals.length === 0) throw new UsageError('predict needs at least one image or folder')
  if (values.json === true && values.csv === true) throw new UsageError('--json and --csv exclude each other')
  const round = values.round === undefined ? undefined : Number(values.round)
  if (round !== undefined && (!Number.isInteger(round) || round < 0)) throw new UsageError(`--round must be a round number, got '${values.round}'`)

  // TF.js and the node's modules only now: --help and usage errors stay fast
  const { chosenModel } = await import('../node/chosen-model.ts')
  const { ConfigError } = await import('../node/config.ts')
  const { DataDirError } = await import('../node/datadir.ts')
  const { ManifestError } = await import('../protocol/manifest.ts')
  let model
  try { model = chosenModel(values['data-dir'], { round }) } catch (e) {
    if (e instanceof ConfigError || e instanceof DataDirError || e instanceof ManifestError) { err(`medmesh: ${e.message}`); return EXIT.config }
    throw e
  }
  const { selectBackend } = await import('../training/backend.ts')
  const { preprocess, predictProbabilities, ImageLoadError } = await import('../training/predict.ts')
  await selectBackend()

  const { files, missing } = imageFiles(positionals)
  const skipped = [...missing]
  const read: Array<{ file: string, pixels: Uint8Array }> = []
  for (const file of files) {
    try {
      if (statSync(file).size > MAX_FILE_BYTES) throw new ImageLoadError(`larger than ${MAX_FILE_BYTES / 1024 / 1024} MiB`)
      read.push({ file, pixels: preprocess(new Uint8Array(readFileSync(file)), file, model.spec.height, model.spec.channels) })
    } catch (e) {
      if (!(e instanceof ImageLoadError) && (e as NodeJS.ErrnoException).code === undefined) throw e
      skipped.push({ file, reason: (e as Error).message.replace(`${file}: `, '') })
    }
  }
  const probs = read.length === 0 ? new Float32Array(0) : predictProbabilities(model.spec, model.weights, read.map(r => r.pixels), model.norm)
  const k = model.spec.classes
  const predictions = read.map((r, i) => {
    const p = Array.from(probs.subarray(i * k, (i + 1) * k))
    const best = p.indexOf(Math.max(...p))
    return { file: r.file, predicted: model.classes[best], probabilities: Object.fromEntries(model.classes.map((c, j) => [c, p[j]])) }
  })
  for (const s of skipped) err(`medmesh: skipped ${s.file}: ${s.reason}`)
  const about = { round: model.entry.header.round, reason: model.reason, certificate: Buffer.from(model.entry.hash).toString('hex'), model: model.spec.id, validation: model.validation }
  if (values.json === true) out(JSON.stringify({ model: about, predictions, skipped }))
  else if (values.csv === true) {
    out(['file', 'predicted', ...model.classes].map(csvField).join(','))
    for (const p of predictions) out([p.file, p.predicted, ...model.classes.map(c => p.probabilities[c].toFixed(6))].map(csvField).join(','))
  } else {
    err(`model: round ${about.round} (${about.reason}${about.validation === null ? '' : `, validation AUC ${about.validation.auc.toFixed(3)}`}), ${about.model}, certificate ${about.certificate.slice(0, 16)}`)
    for (const p of predictions) out(`${p.file}\t${p.predicted}\t${model.classes.map(c => `${c} ${p.probabilities[c].toFixed(4)}`).join('\t')}`)
  }
  return skipped.length > 0 ? EXIT.dataError : EXIT.ok
}

function csvField (s: string): string { return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s }
