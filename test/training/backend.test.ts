/** The backend line: which backend runs; optional native packages that are absent are information, said once. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { describeBackend } from '../../src/training/backend.ts'
import { nativeKernelStatus, useNativeKernels } from '../../src/training/native-kernels.ts'

test('absent native packages: one informational clause, no loader message', () => {
  const line = describeBackend({
    name: 'wasm',
    skipped: [
      { name: 'tensorflow-gpu', reason: "Cannot find package '@tensorflow/tfjs-node-gpu' imported from /x/backend.ts" },
      { name: 'tensorflow', reason: "Cannot find package '@tensorflow/tfjs-node' imported from /x/backend.ts" }
    ]
  })
  assert.ok(line.startsWith('TF.js backend: wasm (the optional native backends (tensorflow-gpu, tensorflow) are not installed; '), line)
  assert.not.match(line, /Cannot find/)
})

test('a native backend that is installed but fails is named with its reason', () => {
  const line = describeBackend({ name: 'cpu', skipped: [{ name: 'tensorflow', reason: 'libtensorflow.so: cannot open shared object file' }, { name: 'wasm', reason: 'the wasm backend did not initialise' }] })
  assert.match(line, /^TF\.js backend: cpu \(/)
  assert.match(line, /tensorflow did not load: libtensorflow\.so/)
  assert.match(line, /wasm did not load/)
  assert.not.match(line, /not installed/)
})

test('on wasm, the line says where the convolutions run: oneDNN, or WebAssembly and why', () => {
  const line = describeBackend({ name: 'wasm', skipped: [] })
  const n = nativeKernelStatus()
  // with the instruction set oneDNN's kernels use on this CPU (capped by ONEDNN_MAX_CPU_ISA where set)
  if (n.active) { assert.match(n.isa ?? '', /^(SSE41|AVX|AVX2|AVX2_VNNI|AVX512_\w+|ALL)$/); assert.is(line, `TF.js backend: wasm (convolutions through oneDNN ${n.version} (${n.isa}))`) }
  else assert.is(line, `TF.js backend: wasm (convolutions in WebAssembly: the oneDNN addon is ${n.reason})`)
  useNativeKernels(false)
  try {
    assert.match(describeBackend({ name: 'wasm', skipped: [] }), /convolutions in WebAssembly: the oneDNN addon is turned off/)
  } finally { useNativeKernels(true) }
})

test('nothing skipped: just the backend', () => {
  assert.is(describeBackend({ name: 'tensorflow', skipped: [] }), 'TF.js backend: tensorflow')
})

test.run()
