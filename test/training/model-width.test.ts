/** Width factors (ModelSpec.widthFactor): the candidates a consortium may try beside its model, and a factor of 1 that is the model itself. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as tf from '@tensorflow/tfjs-core'
import { createHash } from 'node:crypto'
import { selectBackend } from '../../src/training/backend.ts'
import { buildModel, countParameters, flattenWeights, widthProblem, SCALABLE_MODELS, type ModelId, type ModelSpec } from '../../src/training/models.ts'

const spec = (id: ModelId, size: number, widthFactor?: number): ModelSpec => ({ id, height: size, width: size, channels: 1, classes: 3, seed: 7, ...(widthFactor !== undefined ? { widthFactor } : {}) })
const digest = (m: ReturnType<typeof buildModel>): string => createHash('sha256').update(flattenWeights(m)).digest('hex')

test('a factor of 1 builds the model without one, weight for weight (manifests founded before width factors keep their initial hash)', async () => {
  await selectBackend('auto')
  for (const [id, size] of [['medmesh/cnn-gn-stem', 128], ['medmesh/cnn-small', 28], ['medmesh/cnn-gn', 28], ['medmesh/resnet18-28-gn', 28]] as const) {
    const a = buildModel(spec(id, size)); const b = buildModel(spec(id, size, 1))
    assert.is(digest(a), digest(b), id)
    a.dispose(); b.dispose()
  }
})

test('every scalable model builds at every quarter from 0.25 to 2, its size growing with the factor, and predicts', async () => {
  await selectBackend('auto')
  for (const id of SCALABLE_MODELS) {
    const size = id === 'medmesh/cnn-gn-stem' || id === 'medmesh/resnet18' || id === 'medmesh/resnet18-gn' ? 64 : 28
    let last = 0
    for (const f of [0.25, 0.5, 0.75, 1, 1.25, 2]) {
      if (id.startsWith('medmesh/resnet18') && f > 1) continue // large; 0.25–1 show the rule
      const m = buildModel(spec(id, size, f))
      const n = countParameters(m)
      assert.ok(n > last, `${id} ×${f}: ${n} parameters, not more than ×smaller's ${last}`)
      last = n
      const p = tf.tidy(() => (m.predict(tf.zeros([1, size, size, 1])) as tf.Tensor).arraySync() as number[][])
      assert.ok(Math.abs(p[0].reduce((a, b) => a + b, 0) - 1) < 1e-5)
      m.dispose()
    }
  }
})

test('a factor that is no quarter, out of range, or on a model without a width is refused, by widthProblem and by buildModel', () => {
  assert.is(widthProblem('medmesh/cnn-gn-stem', 1.5), null)
  assert.match(widthProblem('medmesh/cnn-gn-stem', 0.3) ?? '', /multiple of 0.25/)
  assert.match(widthProblem('medmesh/cnn-gn-stem', 8) ?? '', /multiple of 0.25/)
  assert.match(widthProblem('medmesh/he-cnn', 2) ?? '', /has no width/)
  assert.is(widthProblem('medmesh/he-cnn', 1), null)
  assert.throws(() => buildModel(spec('medmesh/linear', 28, 0.5)), /has no width/)
})

test.run()
