/** The backend line: which backend runs; optional native packages that are absent are information, said once. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { describeBackend } from '../../src/training/backend.ts'

test('absent native packages: one informational clause, no loader message', () => {
  const line = describeBackend({
    name: 'wasm',
    skipped: [
      { name: 'tensorflow-gpu', reason: "Cannot find package '@tensorflow/tfjs-node-gpu' imported from /x/backend.ts" },
      { name: 'tensorflow', reason: "Cannot find package '@tensorflow/tfjs-node' imported from /x/backend.ts" }
    ]
  })
  assert.is(line, 'TF.js backend: wasm (the optional native backends (tensorflow-gpu, tensorflow) are not installed)')
  assert.not.match(line, /Cannot find/)
})

test('a native backend that is installed but fails is named with its reason', () => {
  const line = describeBackend({ name: 'cpu', skipped: [{ name: 'tensorflow', reason: 'libtensorflow.so: cannot open shared object file' }, { name: 'wasm', reason: 'the wasm backend did not initialise' }] })
  assert.match(line, /^TF\.js backend: cpu \(/)
  assert.match(line, /tensorflow did not load: libtensorflow\.so/)
  assert.match(line, /wasm did not load/)
  assert.not.match(line, /not installed/)
})

test('nothing skipped: just the backend', () => {
  assert.is(describeBackend({ name: 'tensorflow', skipped: [] }), 'TF.js backend: tensorflow')
})

test.run()
