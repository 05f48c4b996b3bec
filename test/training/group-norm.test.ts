/** GroupNorm's closed-form gradient against TF.js's differentiation of the textbook formula. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as tf from '@tensorflow/tfjs-core'
import { selectBackend } from '../../src/training/backend.ts'
import { GroupNorm } from '../../src/training/group-norm.ts'
import { seededRandom, uniformDoubles } from '../../src/privacy/index.ts'

/** the textbook: moments over each example's group (axes h, w and the group's channels) */
function reference (x: tf.Tensor4D, groups: number, epsilon: number): tf.Tensor4D {
  const [b, h, w, c] = x.shape
  const g = tf.reshape(x, [b, h, w, groups, c / groups])
  const { mean, variance } = tf.moments(g, [1, 2, 4], true)
  return tf.reshape(tf.div(tf.sub(g, mean), tf.sqrt(tf.add(variance, epsilon))), [b, h, w, c])
}

for (const [shape, groups] of [[[2, 5, 4, 8], 4], [[3, 3, 3, 6], 1], [[1, 7, 6, 16], 8], [[2, 4, 4, 4], 4]] as Array<[[number, number, number, number], number]>) {
  test(`normalise ${shape.join('×')} in ${groups} group(s): the same values and input gradient as the textbook formula`, async () => {
    await selectBackend('auto')
    const layer = new GroupNorm({ groups })
    const size = shape.reduce((a, b) => a * b, 1)
    const u = uniformDoubles(seededRandom(new Uint8Array(32).fill(shape[3])), 2 * size)
    const x = tf.tensor4d(Float32Array.from(u.subarray(0, size), v => 3 * v - 1), shape)
    // a random weighting of the outputs, so that the gradient is not the (zero) gradient of a plain sum
    const r = tf.tensor4d(Float32Array.from(u.subarray(size), v => 2 * v - 1), shape)
    const ours = layer.normalise(x)
    const theirs = reference(x, groups, layer.epsilon)
    const gOurs = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(layer.normalise(t as tf.Tensor4D), r)))(x)
    const gTheirs = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(reference(t as tf.Tensor4D, groups, layer.epsilon), r)))(x)
    const maxDiff = (a: tf.Tensor, b: tf.Tensor): number => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]
    assert.ok(maxDiff(ours, theirs) < 1e-5, `values differ by ${maxDiff(ours, theirs)}`)
    assert.ok(maxDiff(gOurs, gTheirs) < 1e-4, `gradients differ by ${maxDiff(gOurs, gTheirs)}`)
    assert.ok(tf.max(tf.abs(gTheirs)).dataSync()[0] > 1e-2, 'a gradient that is not trivially zero')
    tf.dispose([x, r, ours, theirs, gOurs, gTheirs])
  })
}

test.run()
