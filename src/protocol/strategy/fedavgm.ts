/** FedAvgM (Hsu et al., 2019): v ← β·v + Δ̄; w ← w + η·v. */
import type { Strategy } from './strategy.ts'
import { checkLength } from './strategy.ts'

export const fedAvgM: Strategy = {
  id: 'fedavgm',
  apply (state, mean, params) {
    checkLength(state, mean)
    const n = state.weights.length
    const prev = state.optimizer[0] ?? new Float32Array(n)
    const v = new Float32Array(n)
    const w = new Float32Array(n)
    const beta = Math.fround(params.beta1)
    const lr = Math.fround(params.serverLr)
    for (let i = 0; i < n; i++) {
      v[i] = Math.fround(beta * prev[i]) + Math.fround(mean[i])
      w[i] = state.weights[i] + Math.fround(lr * v[i])
    }
    return { weights: w, optimizer: [v], step: state.step + 1 }
  }
}
