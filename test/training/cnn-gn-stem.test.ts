/** medmesh/cnn-gn-stem: a stem by resolution, a size that does not grow with the input, and the default model by input size. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as tf from '@tensorflow/tfjs-core'
import { selectBackend } from '../../src/training/backend.ts'
import { buildModel, countParameters } from '../../src/training/models.ts'
import { stemDownsamplings } from '../../src/training/cnn-gn-stem.ts'
import { defaultModelFor } from '../../src/training/model-ids.ts'

test('the stem brings every input to at most 32 px for the body', () => {
  assert.equal([28, 32, 33, 64, 96, 128, 224, 512].map(stemDownsamplings), [0, 0, 1, 1, 2, 2, 3, 4])
  for (const size of [28, 64, 128, 224, 512]) assert.ok(size / 2 ** stemDownsamplings(size) <= 32)
})

test('its parameters barely change from 64 to 224 px (cnn-small\'s grow sixteenfold), and it gives class probabilities at each size', async () => {
  await selectBackend('auto')
  const params = (id: 'medmesh/cnn-gn-stem' | 'medmesh/cnn-small', size: number): number => {
    const m = buildModel({ id, height: size, width: size, channels: 1, classes: 3, seed: 1 })
    const n = countParameters(m)
    if (id === 'medmesh/cnn-gn-stem') {
      const p = tf.tidy(() => (m.predict(tf.zeros([2, size, size, 1])) as tf.Tensor).arraySync() as number[][])
      assert.is(p.length, 2)
      for (const row of p) assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-5 && row.length === 3)
    }
    m.dispose()
    return n
  }
  const stem = [64, 128, 224].map(s => params('medmesh/cnn-gn-stem', s))
  assert.ok(stem[2] / stem[0] < 1.05, `cnn-gn-stem: ${stem.join(', ')} parameters at 64, 128, 224 px`)
  assert.ok(params('medmesh/cnn-small', 128) / params('medmesh/cnn-small', 32) > 10, 'the model it replaces above 32 px grows with the input')
})

test('the default model follows the input size', () => {
  assert.is(defaultModelFor(28), 'medmesh/cnn-small')
  assert.is(defaultModelFor(32), 'medmesh/cnn-small')
  assert.is(defaultModelFor(64), 'medmesh/cnn-gn-stem')
  assert.is(defaultModelFor(224), 'medmesh/cnn-gn-stem')
})

test.run()
