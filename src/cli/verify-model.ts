/** `medmesh verify-model`: check that an exported model is the one a consortium certified. */
import { join } from 'node:path'
import { EXIT, UsageError, parseFlags } from './usage.ts'

export const help = `Usage: medmesh verify-model EXPORT_DIR [--manifest FILE] [--ledger DIR] [--json]

Checks, without trusting any one party, that the model in EXPORT_DIR (from medmesh export) is one
the consortium certified: the founding manifest's signatures, the ledger as a hash chain from it
with a quorum of members' signatures on each certificate, that state.bin hashes to the model a
certified round names, and that weights.bin holds exactly its weights. Prints the round, who
signed its certificate and whose inputs it sums.

Options:
  --manifest FILE  the signed consortium manifest (default EXPORT_DIR/manifest.json)
  --ledger DIR     the certificates, as a node stores them (DIR/ledger) or as exported (default EXPORT_DIR/ledger)
  --json           one JSON object

Exit codes: 0 verified, 65 a check failed (the message names it), 64 bad usage.`

export async function run (args: string[], out: (s: string) => void = s => process.stdout.write(s + '\n'), err: (s: string) => void = s => process.stderr.write(s + '\n')): Promise<number> {
  const parsed = parseFlags({ args, allowPositionals: true, strict: true, options: { manifest: { type: 'string' }, ledger: { type: 'string' }, json: { type: 'boolean' } } })
  const { values, positionals } = parsed
  if (positionals.length !== 1) throw new UsageError('verify-model needs one EXPORT_DIR')
  const dir = positionals[0]
  const { verifyModel, VerificationError } = await import('../node/verify-model.ts')
  try {
    const v = verifyModel(dir, values.manifest ?? join(dir, 'manifest.json'), values.ledger ?? join(dir, 'ledger'))
    if (values.json === true) out(JSON.stringify({ verified: true, ...v }))
    else {
      out(`verified: the model in ${dir} is the one certified in round ${v.round} by consortium '${v.consortium.name}' (${v.consortium.id.slice(0, 16)})`)
      out(`  manifest signed by all ${v.founders} founding members; ledger of ${v.certificates} certificates verified from it`)
      out(`  certificate ${v.certificate}, signed by ${v.signedBy.join(', ')}; inputs of ${v.survivors.join(', ')}`)
      out(`  when: certificates carry round numbers, not times; stored ${v.storedAt ?? 'at an unknown time'} (not signed)`)
    }
    return EXIT.ok
  } catch (e) {
    if (!(e instanceof VerificationError)) throw e
    if (values.json === true) out(JSON.stringify({ verified: false, check: e.check, error: e.message }))
    err(`medmesh: not verified: ${e.message}`)
    return EXIT.dataError
  }
}
