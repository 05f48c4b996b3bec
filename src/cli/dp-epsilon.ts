/** `medmesh dp-epsilon`: what ε a DP-SGD training plan spends, before anyone trains. */
import { computeRdp, rdpToEpsilon, DEFAULT_ORDERS } from '../privacy/dp/rdp.ts'
import { UsageError, parseFlags } from './usage.ts'

export const help = `Usage: medmesh dp-epsilon --samples N --batch B --noise σ (--epochs E | --steps S) [--delta δ] [--json]

The (ε, δ) that DP-SGD with Poisson sampling (rate q = B/N) spends, from the Rényi-DP accountant.

Options:
  --samples N     training examples at this site
  --batch B       expected batch size (q = B / N)
  --noise σ       noise multiplier (noise standard deviation / clipping norm)
  --epochs E      passes over the data (steps = round(E * N / B)), or
  --steps S       number of DP-SGD steps
  --delta δ       target δ (default 1/N rounded down to a power of ten, at most 1e-5)
  --json          print one JSON object`

function positive (name: string, raw: string | undefined, integer: boolean): number | undefined {
  if (raw === undefined) return undefined
  const v = Number(raw)
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw new UsageError(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got '${raw}'`)
  }
  return v
}

export async function run (args: string[], out: (s: string) => void = s => process.stdout.write(s + '\n')): Promise<number> {
  const { values } = parseFlags({
    args,
    options: {
      samples: { type: 'string' }, batch: { type: 'string' }, noise: { type: 'string' },
      epochs: { type: 'string' }, steps: { type: 'string' }, delta: { type: 'string' }, json: { type: 'boolean' }
    },
    strict: true
  })
  const samples = positive('samples', values.samples, true)
  const batch = positive('batch', values.batch, true)
  const noise = positive('noise', values.noise, false)
  if (samples === undefined || batch === undefined || noise === undefined) throw new UsageError('--samples, --batch and --noise are required')
  if (batch > samples) throw new UsageError('--batch cannot exceed --samples')
  const epochs = positive('epochs', values.epochs, false)
  const stepsArg = positive('steps', values.steps, true)
  if ((epochs === undefined) === (stepsArg === undefined)) throw new UsageError('give exactly one of --epochs and --steps')
  const q = batch / samples
  const steps = stepsArg ?? Math.max(1, Math.round((epochs as number) * samples / batch))
  const delta = positive('delta', values.delta, false) ?? Math.min(1e-5, Number(`1e${Math.floor(Math.log10(1 / samples))}`))
  if (delta >= 1) throw new UsageError('--delta must be below 1')
  const { epsilon, order } = rdpToEpsilon(DEFAULT_ORDERS, computeRdp(q, noise, steps), delta)
  if (values.json === true) out(JSON.stringify({ q, noiseMultiplier: noise, steps, delta, epsilon, order }))
  else out(`DP-SGD with q=${q.toPrecision(4)}, σ=${noise}, ${steps} steps: (ε = ${epsilon.toFixed(3)}, δ = ${delta}) at Rényi order ${order}`)
  return 0
}
