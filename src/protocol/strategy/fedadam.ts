/**
 * FedAdam (Reddi et al., "Adaptive Federated Optimization", ICLR 2021):
 *   m ← β1·m + (1-β1)·Δ̄;  v ← β2·v + (1-β2)·Δ̄²;  w ← w + η·m / (√v + τ)
 * (no bias correction, as in the paper).
 */
import type { Strategy } from './strategy.ts'
import { checkLength } from './strategy.ts'

export const fedAdam: Strategy = {
  id: 'fedadam',
  apply (state, mean, params) {
    checkLength(state, mean)
    const n = state.weights.length
    const m0 = state.optimizer[0] ?? new Float32Array(n)
    const v0 = state.optimizer[1] ?? new Float32Array(n)
    const m = new Float32Array(n)
    const v = new Float32Array(n)
    const w = new Float32Array(n)
    const f = Math.fround
    const b1 = f(params.beta1); const b2 = f(params.beta2); const lr = f(params.serverLr); const tau = f(params.tau)
    for (let i = 0; i < n; i++) {
      const d = f(mean[i])
      m[i] = f(b1 * m0[i]) + f(f(1 - b1) * d)
      v[i] = f(b2 * v0[i]) + f(f(1 - b2) * f(d * d))
      w[i] = state.weights[i] + f(lr * f(m[i] / f(f(Math.sqrt(v[i])) + tau)))
    }
    return { weights: w, optimizer: [m, v], step: state.step + 1 }
  }
}
