/**
 * The native mask kernel (native/mask-kernels.cc): the mask PRG's AES-128-CTR keystreams added
 * into vectors by the OpenSSL inside Node, without a JavaScript buffer per 64 KiB chunk. Loaded
 * here, at the edge, and handed to src/privacy/prg.ts, which stays free of I/O; where the addon is
 * absent (no C++ compiler or no OpenSSL headers at `npm install`), turned off
 * (MEDMESH_NATIVE_KERNELS=0) or fails to load, the masks are added in JavaScript with the same
 * result, only slower.
 *
 * The node, the simulator, the soak and the benchmarks call `installMaskKernel()` once at start.
 */
import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { setKeystreamKernel, type KeystreamKernel } from '../privacy/index.ts'

export interface MaskAddon extends KeystreamKernel {
  opensslVersion: () => string
}

/** where `npm install` leaves the addon */
export const MASK_ADDON_PATH = fileURLToPath(new URL('../../native/build/medmesh-masks.node', import.meta.url))

export interface MaskKernelStatus {
  /** masks are added through the addon */
  active: boolean
  /** the OpenSSL version it runs, where it loaded */
  version?: string
  /** why not, where it did not */
  reason?: string
}

let addon: MaskAddon | null | undefined
let reason = ''

/** For tests: the addon itself, where it loads (whether or not it is installed). */
export function maskAddon (): MaskAddon | null {
  if (addon !== undefined) return addon
  if (!existsSync(MASK_ADDON_PATH)) {
    reason = 'not built (npm install builds it where a C++ compiler and OpenSSL headers are installed: apt-get install g++ libssl-dev)'
    return (addon = null)
  }
  try {
    const loaded = createRequire(import.meta.url)(MASK_ADDON_PATH) as MaskAddon
    loaded.opensslVersion() // a build against another ABI fails here rather than mid-round
    addon = loaded
  } catch (e) {
    reason = `did not load: ${(e as Error).message.split('\n')[0].slice(0, 160)}`
    addon = null
  }
  return addon
}

/** Use the addon for every mask from now on, where it loads and is not turned off; says which path runs. */
export function installMaskKernel (): MaskKernelStatus {
  if (process.env.MEDMESH_NATIVE_KERNELS === '0') {
    setKeystreamKernel(null)
    return { active: false, reason: 'turned off (MEDMESH_NATIVE_KERNELS=0)' }
  }
  const a = maskAddon()
  if (a === null) {
    setKeystreamKernel(null)
    return { active: false, reason }
  }
  setKeystreamKernel({ addKeystreams: a.addKeystreams, expandKeystream: a.expandKeystream })
  return { active: true, version: a.opensslVersion() }
}

/** One line for logs: how masks are added here. */
export function describeMaskKernel (s: MaskKernelStatus): string {
  return s.active ? `masks: AES-128-CTR added natively (${s.version ?? 'OpenSSL'}, Node's own)` : `masks: added in JavaScript (native kernel ${s.reason ?? 'not in use'})`
}
