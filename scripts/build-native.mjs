// Builds native/dnnl-kernels.cc, medmesh's oneDNN convolutions for the wasm backend
// (src/training/native-kernels.ts), into native/build/medmesh-dnnl.node. Run by `npm install`.
//
// Optional by design: where a C++ compiler or oneDNN's headers (Debian: apt-get install g++
// libdnnl-dev) are missing, or the build fails, it says so in one line and exits 0; training then
// runs its convolutions in WebAssembly, as before, only slower. The addon uses Node-API only, so
// headers of any Node version build it for every version (Node 20 here, the Node 22 npm runs).
// Plain JavaScript (.mjs): it may run under a Node that cannot strip TypeScript's types.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const source = join(root, 'native', 'dnnl-kernels.cc')
const outDir = join(root, 'native', 'build')
const out = join(outDir, 'medmesh-dnnl.node')
const say = (line) => console.log(`medmesh native kernels: ${line}`)

function nodeApiHeaders () {
  const candidates = [
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
    join(dirname(process.execPath), '..', 'include', 'node'),
    join(root, 'node_modules', 'node', 'node_modules', `node-${process.platform}-${process.arch}`, 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node'
  ]
  return candidates.find(d => d && existsSync(join(d, 'node_api.h'))) ?? null
}

function main () {
  if (process.env.MEDMESH_NATIVE_KERNELS === '0') return say('not built (MEDMESH_NATIVE_KERNELS=0)')
  const cxx = process.env.CXX ?? 'g++'
  if (spawnSync(cxx, ['--version'], { stdio: 'ignore' }).status !== 0) return say(`not built: no C++ compiler (${cxx}); training convolutions run in WebAssembly (apt-get install g++ libdnnl-dev, then npm run build:native)`)
  const headers = nodeApiHeaders()
  if (headers === null) return say('not built: Node-API headers (node_api.h) not found; training convolutions run in WebAssembly')
  mkdirSync(outDir, { recursive: true })
  const tmp = join(outDir, `medmesh-dnnl.${process.pid}.tmp.node`)
  const r = spawnSync(cxx, ['-O2', '-std=c++17', '-shared', '-fPIC', '-fopenmp', '-DNAPI_VERSION=8', `-I${headers}`, source, '-ldnnl', '-o', tmp], { encoding: 'utf8' })
  if (r.status !== 0) {
    rmSync(tmp, { force: true })
    const missing = /dnnl\.hpp: No such file|cannot find -ldnnl/.test(r.stderr ?? '')
    return say(missing
      ? 'not built: oneDNN is not installed (Debian: apt-get install libdnnl-dev, then npm run build:native); training convolutions run in WebAssembly'
      : `not built: the compiler failed (${(r.stderr ?? r.error?.message ?? '').split('\n').find(l => /error/.test(l)) ?? 'no message'}); training convolutions run in WebAssembly`)
  }
  // the addon must load before it takes the place of an earlier one (written whole, then renamed)
  try {
    const addon = createRequire(import.meta.url)(tmp)
    const version = addon.version()
    renameSync(tmp, out)
    say(`built against oneDNN ${version}: ${out}`)
  } catch (e) {
    rmSync(tmp, { force: true })
    say(`not built: it did not load (${String(e.message).split('\n')[0]}); training convolutions run in WebAssembly`)
  }
}

try {
  main()
} catch (e) {
  say(`not built: ${String(e?.message ?? e).split('\n')[0]}; training convolutions run in WebAssembly`)
}
