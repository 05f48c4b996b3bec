/** Learning-rate schedules over model rounds. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { learningRateAt } from '../../src/training/schedule.ts'

test('constant stays; cosine falls from the base to a tenth over the planned rounds; step drops tenfold at half and three quarters', () => {
  assert.is(learningRateAt(1e-3, { kind: 'constant' }, 7), 1e-3)
  const cos = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(k => learningRateAt(1e-3, { kind: 'cosine', rounds: 10 }, k))
  assert.is(cos[0], 1e-3)
  assert.ok(Math.abs(cos[9] - 1e-4) < 1e-12, `last ${cos[9]}`)
  for (let i = 1; i < cos.length; i++) assert.ok(cos[i] < cos[i - 1], 'falls every round')
  assert.is(learningRateAt(1e-3, { kind: 'cosine', rounds: 10 }, 30), cos[9], 'stays at the floor after the plan')
  // 9 rounds: t = (k - 1) / 8, so k = 5 is half way and k = 7 three quarters
  const step = [1, 4, 5, 6, 7, 9].map(k => learningRateAt(1, { kind: 'step', rounds: 9 }, k))
  assert.equal(step, [1, 1, 0.1, 0.1, 0.01, 0.01])
})

test.run()
