/** `medmesh infer --encrypted`: a clinic's prediction from a holder without showing it the image. */
import { readFileSync, statSync } from 'node:fs'
import { EXIT, UsageError, parseFlags } from './usage.ts'

export const help = `Usage: medmesh infer --encrypted --peer MULTIADDR --identity DIR [--json | --csv] IMAGE|FOLDER...

Asks a consortium member's encrypted-inference listener for the consortium's prediction on each
image without showing it the image, and without getting the model: this side makes a CKKS key
pair (node-seal, 128-bit security) and keeps the secret key; the holder gets the evaluation keys
once (about 24 MB) and one ciphertext per image, evaluates medmesh/he-cnn on it with its weights
and returns one ciphertext, which only this side can decrypt. Prints the same lines as
'medmesh predict' (file, predicted class, the probability of each class).

Options:
  --encrypted       homomorphically encrypted inference (the only kind a non-member gets)
  --peer MULTIADDR  the holder's inference address, ending in /p2p/<peer id> (its node logs it)
  --identity DIR    this clinic's identity ('medmesh init --data-dir DIR'); the consortium's
                    manifest must list its peer id (medmesh manifest create --inference-client)
  --json | --csv    as for medmesh predict

Exit codes: 0 every image predicted, 65 some could not be read, 64 bad usage, 69 the holder
refused or could not be reached, 78 no identity in DIR.`

const MAX_FILE_BYTES = 256 * 1024 * 1024

export async function run (args: string[], out: (s: string) => void = s => process.stdout.write(s + '\n'), err: (s: string) => void = s => process.stderr.write(s + '\n')): Promise<number> {
  const parsed = parseFlags({ args, allowPositionals: true, strict: true, options: { encrypted: { type: 'boolean' }, peer: { type: 'string' }, identity: { type: 'string' }, json: { type: 'boolean' }, csv: { type: 'boolean' } } })
  const { values, positionals } = parsed
  if (values.encrypted !== true) throw new UsageError('infer is encrypted inference: give --encrypted (members run the model in the clear with medmesh predict)')
  if (values.peer === undefined || !values.peer.includes('/p2p/')) throw new UsageError('--peer must be the holder\'s inference address, ending in /p2p/<peer id>')
  if (values.identity === undefined) throw new UsageError('--identity DIR is required (make one with medmesh init --data-dir DIR)')
  if (positionals.length === 0) throw new UsageError('infer needs at least one image or folder')
  if (values.json === true && values.csv === true) throw new UsageError('--json and --csv exclude each other')

  const { guarded } = await import('./node-commands.ts')
  return await guarded(async () => {
    const { DataDir } = await import('../node/datadir.ts')
    const identity = new DataDir(values.identity!).identity()
    const { imageFiles, writePredictions } = await import('./predict.ts')
    const { preprocess, ImageLoadError } = await import('../training/predict.ts')
    const { Clinic } = await import('../node/inference/clinic.ts')
    const { files, missing } = imageFiles(positionals)
    const skipped = [...missing]
    const read: Array<{ file: string, pixels: Uint8Array }> = []
    for (const file of files) {
      try {
        if (statSync(file).size > MAX_FILE_BYTES) throw new ImageLoadError(`larger than ${MAX_FILE_BYTES / 1024 / 1024} MiB`)
        read.push({ file, pixels: preprocess(new Uint8Array(readFileSync(file)), file, 28, 1) })
      } catch (e) {
        if (!(e instanceof ImageLoadError) && (e as NodeJS.ErrnoException).code === undefined) throw e
        skipped.push({ file, reason: (e as Error).message.replace(`${file}: `, '') })
      }
    }
    let clinic
    try { clinic = await Clinic.connect(identity, values.peer!) } catch (e) {
      err(`medmesh infer: the holder at ${values.peer} ${e instanceof Error && e.name === 'InferRefused' ? `refused: ${e.message}` : `could not be asked: ${(e as Error).message}`}`)
      return EXIT.unavailable
    }
    try {
      const { info } = clinic
      err(`evaluation keys sent once: ${(clinic.keys.bytes / 1e6).toFixed(1)} MB, made in ${Math.round(clinic.keys.makeMs)} ms, sent in ${Math.round(clinic.keys.sendMs)} ms`)
      const predictions = []
      let round = info.round
      let state = info.state
      for (const r of read) {
        let p
        try { p = await clinic.predict(r.pixels) } catch (e) {
          err(`medmesh infer: the holder ${e instanceof Error && e.name === 'InferRefused' ? `refused: ${e.message}` : `failed: ${(e as Error).message}`}`)
          return EXIT.unavailable
        }
        round = p.round; state = p.state
        const probs = Array.from(p.probabilities)
        predictions.push({ file: r.file, predicted: info.classNames[probs.indexOf(Math.max(...probs))], probabilities: Object.fromEntries(info.classNames.map((c, j) => [c, probs[j]])) as Record<string, number>, round: p.round, ms: Math.round(p.ms.encrypt + p.ms.roundTrip + p.ms.decrypt) })
      }
      const about = { source: 'encrypted inference', path: values.peer!, round, reason: `encrypted; state ${state.slice(0, 16)}`, model: info.model, certificate: null, validation: null }
      writePredictions(about, info.classNames, predictions, skipped, { json: values.json === true, csv: values.csv === true }, out, err)
      if (predictions.length > 0) err(`per image: ${Math.round(predictions.reduce((s, p) => s + p.ms, 0) / predictions.length)} ms on average (encrypt, evaluate at the holder, decrypt)`)
      return skipped.length > 0 ? EXIT.dataError : EXIT.ok
    } finally { await clinic.close() }
  }, err)
}
