/**
 * A server-side optimiser, applied identically by every peer to the securely aggregated mean
 * update (the weighted mean of local_weights - global_weights). One small interface, one file
 * per algorithm, as in Flower.
 */
import type { GlobalState } from '../model.ts'
import type { AggregationParams } from '../manifest.ts'

export interface Strategy {
  readonly id: string
  /** The next global state from the current one and the mean update. Must not modify `state`. */
  apply (state: GlobalState, meanUpdate: Float64Array, params: AggregationParams): GlobalState
}

export function checkLength (state: GlobalState, update: Float64Array): void {
  if (update.length !== state.weights.length) throw new Error(`update has ${update.length} elements, the model ${state.weights.length}`)
}
