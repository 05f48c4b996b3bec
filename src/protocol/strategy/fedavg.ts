/** FedAvg (McMahan et al., 2017): w ← w + η·Δ̄, with Δ̄ the sample-weighted mean update. */
import type { Strategy } from './strategy.ts'
import { checkLength } from './strategy.ts'

export const fedAvg: Strategy = {
  id: 'fedavg',
  apply (state, mean, params) {
    checkLength(state, mean)
    const w = new Float32Array(state.weights.length)
    const lr = Math.fround(params.serverLr)
    for (let i = 0; i < w.length; i++) w[i] = state.weights[i] + Math.fround(lr * Math.fround(mean[i]))
    return { weights: w, optimizer: [], step: state.step + 1 }
  }
}
