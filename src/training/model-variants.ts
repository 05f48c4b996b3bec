/**
 * One model at several widths (models.ts, widthFactor), each with a trainer that judges it, built
 * when first needed: a site, or a simulator's judge, given weights of any of the consortium's
 * candidate widths tells which model they are by their count (each width's count differs).
 */
import type * as tfl from '@tensorflow/tfjs-layers'
import { buildModel, countParameters, type ModelSpec } from './models.ts'
import { LocalTrainer } from './trainer.ts'

/** a model at one width, a trainer that judges it, and its weight count */
export interface ModelVariant { model: tfl.LayersModel, trainer: LocalTrainer, size: number }

export class ModelVariants {
  readonly #spec: ModelSpec
  /** the widths besides 1 that weights may be of */
  readonly widths: readonly number[]
  readonly #built = new Map<number, ModelVariant>()

  /** `base`: the width-1 model and its trainer where the owner built them already */
  constructor (spec: ModelSpec, widths: readonly number[] = [], base?: Omit<ModelVariant, 'size'>) {
    this.#spec = spec
    this.widths = widths
    if (base !== undefined) this.#built.set(1, { ...base, size: countParameters(base.model) })
  }

  /** The model at this width factor. */
  at (widthFactor = 1): ModelVariant {
    let v = this.#built.get(widthFactor)
    if (v === undefined) {
      const model = buildModel({ ...this.#spec, ...(widthFactor !== 1 ? { widthFactor } : {}) })
      v = { model, trainer: new LocalTrainer(model), size: countParameters(model) }
      this.#built.set(widthFactor, v)
    }
    return v
  }

  /** The model these weights are of, by their count. */
  forWeights (weights: ArrayLike<number>): ModelVariant {
    const all = [1, ...this.widths]
    for (const f of all) {
      const v = this.at(f)
      if (v.size === weights.length) return v
    }
    throw new Error(`no model has ${weights.length} weights (${this.#spec.id} at width${all.length > 1 ? 's' : ''} ${all.join(', ')})`)
  }

  /** Free every model and trainer built here, `base`'s too. */
  dispose (): void {
    for (const v of this.#built.values()) { v.trainer.dispose(); v.model.dispose() }
    this.#built.clear()
  }
}
