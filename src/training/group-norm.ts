/** GroupNorm as a TF.js layer, registered for (de)serialisation: what medmesh's GroupNorm models normalise with. */
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'

/** Group normalisation (Wu and He, 2018) over channels-last inputs. */
export class GroupNorm extends tfl.layers.Layer {
  static className = 'MedmeshGroupNorm'
  readonly groups: number
  readonly epsilon: number
  private gamma!: tfl.LayerVariable
  private beta!: tfl.LayerVariable

  /** gamma starts at 0 (the last normalisation of a residual branch: the block starts as the identity) */
  readonly zeroScale: boolean

  constructor (config: { groups: number, epsilon?: number, name?: string, zeroScale?: boolean }) {
    super({ name: config.name })
    this.groups = config.groups
    this.epsilon = config.epsilon ?? 1e-5
    this.zeroScale = config.zeroScale ?? false
  }

  override build (inputShape: tfl.Shape | tfl.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape
    const c = shape[shape.length - 1] as number
    if (c % this.groups !== 0) throw new Error(`GroupNorm: ${c} channels do not split into ${this.groups} groups`)
    this.gamma = this.addWeight('gamma', [c], 'float32', this.zeroScale ? tfl.initializers.zeros() : tfl.initializers.ones())
    this.beta = this.addWeight('beta', [c], 'float32', tfl.initializers.zeros())
    this.built = true
  }

  /**
   * the input normalised per example and group, before the per-channel scale and shift. Each
   * group's values are first laid out contiguously ([b, groups, h·w·c/groups]) so that every
   * reduction runs along the last axis, and the gradient is the closed form
   * dx = (dy − mean(dy) − x̂·mean(dy·x̂)) / σ per group instead of TF.js's differentiation of
   * moments over axes [1, 2, 4]: the layer costs a quarter of what it did (measured on wasm),
   * which was three quarters of a GroupNorm model's step.
   */
  normalise (x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const [b, h, w, c] = x.shape
      const g = this.groups
      const grouped = tf.reshape(tf.transpose(tf.reshape(x, [b, h * w, g, c / g]), [0, 2, 1, 3]), [b, g, h * w * c / g])
      const normed = this.#core(grouped)
      return tf.reshape(tf.transpose(tf.reshape(normed, [b, g, h * w, c / g]), [0, 2, 1, 3]), [b, h, w, c])
    })
  }

  /** normalisation along the last axis, with its closed-form gradient */
  readonly #core = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
    const mean = tf.mean(x, -1, true)
    const centred = tf.sub(x, mean)
    const inv = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), this.epsilon))
    const y = tf.mul(centred, inv)
    save([y, inv])
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [yy, ii] = saved
        const m1 = tf.mean(dy, -1, true)
        const m2 = tf.mean(tf.mul(dy, yy), -1, true)
        return tf.mul(ii, tf.sub(tf.sub(dy, m1), tf.mul(yy, m2)))
      }
    }
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor

  /** the scale and shift of normalised inputs (gamma, beta) */
  scaleShift (normed: tf.Tensor4D): tf.Tensor4D {
    return tf.add(tf.mul(normed, this.gamma.read()), this.beta.read())
  }

  override call (inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => this.scaleShift(this.normalise((Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor4D)))
  }

  override getConfig (): tf.serialization.ConfigDict {
    return { ...super.getConfig(), groups: this.groups, epsilon: this.epsilon, ...(this.zeroScale ? { zeroScale: true } : {}) }
  }
}
tf.serialization.registerClass(GroupNorm)
