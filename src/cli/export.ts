/** `medmesh export`: the chosen certified model as a folder other tools load, with its model card. */
import { EXIT, UsageError, parseFlags } from './usage.ts'

export const help = `Usage: medmesh export --data-dir DIR --out FOLDER [--round N] [--with-ledger]

Writes the consortium's chosen model (best federated validation AUC; the latest certified before
any) as a folder that loads without medmesh:
  model.json, weights.bin   TensorFlow.js Layers model (tf.loadLayersModel, Node or browser)
  preprocessing.json        size, channels, normalisation, class names
  model-card.json, MODEL_CARD.md   consortium, members, rounds, the chosen round and its certificate
With --with-ledger also the signed manifest and the certificates, for medmesh verify-model.

Options:
  --data-dir DIR   a member's data directory
  --out FOLDER     where to write (created; files in it are replaced)
  --round N        the model certified in round N instead of the chosen one
  --with-ledger    include manifest.json and ledger/

Exit codes: 0 written, 64 bad usage, 74 cannot write, 78 no certified model or data directory.`

export async function run (args: string[], out: (s: string) => void = s => process.stdout.write(s + '\n'), err: (s: string) => void = s => process.stderr.write(s + '\n')): Promise<number> {
  const { values } = parseFlags({ args, strict: true, options: { 'data-dir': { type: 'string' }, out: { type: 'string' }, round: { type: 'string' }, 'with-ledger': { type: 'boolean' } } })
  if (values['data-dir'] === undefined || values.out === undefined) throw new UsageError('export needs --data-dir DIR and --out FOLDER')
  const round = values.round === undefined ? undefined : Number(values.round)
  if (round !== undefined && (!Number.isInteger(round) || round < 0)) throw new UsageError(`--round must be a round number, got '${values.round}'`)
  const { exportModel } = await import('../node/export.ts')
  const { guarded } = await import('./node-commands.ts')
  const { selectBackend } = await import('../training/backend.ts')
  await selectBackend()
  return await guarded(async () => {
    const r = await exportModel(values['data-dir']!, values.out!, { round, withLedger: values['with-ledger'] === true })
    const degenerate = (r.card.chosen as { degenerate: string | null }).degenerate
    if (degenerate !== null) err(`medmesh: WARNING: the exported model is degenerate (on the consortium's validation images ${degenerate}): it has learnt nothing, and its model card says so`)
    out(`exported round ${r.round} to ${r.out}: ${r.files.length} files (${r.files.filter(f => !f.startsWith('ledger/')).join(', ')}${r.files.some(f => f.startsWith('ledger/')) ? ', ledger/' : ''})`)
    return EXIT.ok
  }, err, values.out)
}
