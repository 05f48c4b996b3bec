// Builds medmesh's two optional addons, run by `npm install`: native/dnnl-kernels.cc, the oneDNN
// convolutions for the wasm backend (src/training/native-kernels.ts), into
// native/build/medmesh-dnnl.node; native/mask-kernels.cc, the mask keystreams added through Node's
// own OpenSSL (src/node/mask-kernel.ts), into native/build/medmesh-masks.node.
//
// Optional by design: where a C++ compiler or an addon's headers (Debian: apt-get install g++
// libdnnl-dev libssl-dev) are missing, or a build fails, it says so in one line and exits 0;
// training then runs its convolutions in WebAssembly and masks are added in JavaScript, with the
// same results, only slower. The addons use Node-API, so headers of any Node version build them
// for every version (Node 20 here, the Node 22 npm runs).
// Plain JavaScript (.mjs): it may run under a Node that cannot strip TypeScript's types.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'native', 'build')
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

/**
 * One addon: compiled to a temporary file, loaded once (a broken build never replaces a working
 * one), then renamed into place. Returns the line to print.
 */
function build ({ name, source, libs, flags, missing, fallback, probe }) {
  const cxx = process.env.CXX ?? 'g++'
  const out = join(outDir, `${name}.node`)
  const tmp = join(outDir, `${name}.${process.pid}.tmp.node`)
  const r = spawnSync(cxx, ['-O3', '-std=c++17', '-shared', '-fPIC', ...flags, '-DNAPI_VERSION=8', `-I${headers}`, source, ...libs, '-o', tmp], { encoding: 'utf8' })
  if (r.status !== 0) {
    rmSync(tmp, { force: true })
    return missing.test(r.stderr ?? '')
      ? `not built: ${fallback.missing}`
      : `not built: the compiler failed (${(r.stderr ?? r.error?.message ?? '').split('\n').find(l => /error/.test(l)) ?? 'no message'}); ${fallback.then}`
  }
  try {
    const version = probe(createRequire(import.meta.url)(tmp))
    renameSync(tmp, out)
    return `built against ${version}: ${out}`
  } catch (e) {
    rmSync(tmp, { force: true })
    return `not built: it did not load (${String(e.message).split('\n')[0]}); ${fallback.then}`
  }
}

const ADDONS = [
  {
    name: 'medmesh-dnnl',
    what: 'training convolutions (oneDNN)',
    source: join(root, 'native', 'dnnl-kernels.cc'),
    flags: ['-fopenmp'],
    libs: ['-ldnnl'],
    missing: /dnnl\.hpp: No such file|cannot find -ldnnl/,
    fallback: {
      missing: 'oneDNN is not installed (Debian: apt-get install libdnnl-dev, then npm run build:native); training convolutions run in WebAssembly',
      then: 'training convolutions run in WebAssembly'
    },
    probe: (addon) => `oneDNN ${addon.version()}`
  },
  {
    // no -lcrypto: its EVP calls resolve to the OpenSSL the Node binary carries and exports
    name: 'medmesh-masks',
    what: 'mask keystreams (OpenSSL AES-128-CTR)',
    source: join(root, 'native', 'mask-kernels.cc'),
    flags: [],
    libs: [],
    missing: /openssl\/evp\.h: No such file/,
    fallback: {
      missing: "OpenSSL's headers are not installed (Debian: apt-get install libssl-dev, then npm run build:native); masks are added in JavaScript",
      then: 'masks are added in JavaScript'
    },
    probe: (addon) => addon.opensslVersion()
  }
]

let headers = null

function main () {
  if (process.env.MEDMESH_NATIVE_KERNELS === '0') return say('not built (MEDMESH_NATIVE_KERNELS=0)')
  const cxx = process.env.CXX ?? 'g++'
  if (spawnSync(cxx, ['--version'], { stdio: 'ignore' }).status !== 0) return say(`not built: no C++ compiler (${cxx}); training convolutions run in WebAssembly and masks are added in JavaScript (apt-get install g++ libdnnl-dev libssl-dev, then npm run build:native)`)
  headers = nodeApiHeaders()
  if (headers === null) return say('not built: Node-API headers (node_api.h) not found; training convolutions run in WebAssembly and masks are added in JavaScript')
  mkdirSync(outDir, { recursive: true })
  for (const addon of ADDONS) {
    let line
    try { line = build(addon) } catch (e) { line = `not built: ${String(e?.message ?? e).split('\n')[0]}; ${addon.fallback.then}` }
    say(`${addon.what}: ${line}`)
  }
}

try {
  main()
} catch (e) {
  say(`not built: ${String(e?.message ?? e).split('\n')[0]}`)
}
