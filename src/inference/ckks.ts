/**
 * CKKS through node-seal (Microsoft SEAL 4.1 in WebAssembly): the one parameter set medmesh uses,
 * and every check a holder makes before SEAL works on bytes from a clinic. Pure computation, no
 * I/O. SEAL objects live in WebAssembly memory and are freed with delete(); each function here
 * frees what it makes.
 *
 * Parameters: N = 8192 with a 218-bit coefficient modulus [37, 29×5, 36] (SEAL's 128-bit bound
 * for N = 8192 is 218 bits, and the context is made with sec_level tc128, which SEAL refuses to
 * make for anything weaker), scale 2^29: five rescales, the depth of medmesh/he-cnn, 4096 slots; the last level keeps 8 bits above the scale, so class scores must stay within ±128 (a trained he-cnn's are within ±30).
 */
import { createHash } from 'node:crypto'
import initSeal from 'node-seal'
import type { MainModule, SEALContext, CKKSEncoder, Evaluator, Ciphertext, Plaintext, GaloisKeys, RelinKeys, PublicKey } from 'node-seal'

export const CKKS = { polyModulusDegree: 8192, coeffModulusBits: [37, 29, 29, 29, 29, 29, 36], scaleBits: 29, securityBits: 128 } as const
export const SCALE = 2 ** CKKS.scaleBits

/** Size limits on what a clinic sends (zstd-compressed SEAL serialisations), measured with margin. */
export const LIMITS = { publicKey: 1 << 20, relinKeys: 4 << 20, galoisKeys: 48 << 20, ciphertext: 1 << 20 } as const

export class CkksError extends Error {}

let loading: Promise<MainModule> | null = null
/** node-seal's module, loaded once per thread. */
export function loadSeal (): Promise<MainModule> {
  loading ??= initSeal()
  return loading
}

/** The text of an error thrown inside SEAL (a WebAssembly.Exception), or of any other error. */
export function sealMessage (seal: MainModule, e: unknown): string {
  const m = seal as unknown as { getExceptionMessage?: (e: unknown) => [string, string] }
  const Exception = (globalThis as { WebAssembly?: { Exception?: new (...a: never[]) => unknown } }).WebAssembly?.Exception
  if (Exception !== undefined && e instanceof Exception && m.getExceptionMessage !== undefined) {
    try { const [type, message] = m.getExceptionMessage(e); return `${type}: ${message}` } catch { return 'an error inside SEAL' }
  }
  return e instanceof Error ? e.message : String(e)
}

/** SEAL's Galois element for a rotation by `step` slots (GaloisTool::get_elt_from_step). */
export function galoisElement (step: number, n: number = CKKS.polyModulusDegree): number {
  const m = 2 * n
  const half = n / 2
  if (!Number.isInteger(step) || step === 0 || Math.abs(step) >= half) throw new CkksError(`no rotation of ${step} slots`)
  const e = step < 0 ? half + step : step
  let elt = 1
  for (let i = 0; i < e; i++) elt = (elt * 3) % m
  return elt
}

/** One CKKS context with its encoder and evaluator: the holder's and the clinic's alike. */
export class CkksSuite {
  readonly seal: MainModule
  readonly context: SEALContext
  readonly encoder: CKKSEncoder
  readonly evaluator: Evaluator
  /** a digest of the serialised encryption parameters: what a clinic and a holder compare */
  readonly parametersId: string

  private constructor (seal: MainModule) {
    this.seal = seal
    const parms = new seal.EncryptionParameters(seal.SchemeType.ckks)
    parms.setPolyModulusDegree(CKKS.polyModulusDegree)
    const moduli = seal.CoeffModulus.Create(CKKS.polyModulusDegree, Int32Array.from(CKKS.coeffModulusBits))
    parms.setCoeffModulus(moduli)
    this.context = new seal.SEALContext(parms, true, seal.SecLevelType.tc128)
    if (!this.context.parametersSet()) throw new CkksError('SEAL refuses the CKKS parameters at 128-bit security')
    const bytes = parms.saveToArray(seal.ComprModeType.none) as Uint8Array
    this.parametersId = createHash('sha256').update(bytes).digest('hex')
    moduli.delete()
    parms.delete()
    this.encoder = new seal.CKKSEncoder(this.context)
    this.evaluator = new seal.Evaluator(this.context)
  }

  static async create (): Promise<CkksSuite> { return new CkksSuite(await loadSeal()) }

  get slots (): number { return this.encoder.slotCount() }
  /** how many rescales are left at a ciphertext's level (5 fresh, 0 at the last level) */
  level (ct: Ciphertext): number { return this.context.getContextData(ct.parmsId()).chainIndex() }

  /** Runs f, turning SEAL's exceptions into CkksError with their message. */
  guard<T> (what: string, f: () => T): T {
    try { return f() } catch (e) { throw new CkksError(`${what}: ${sealMessage(this.seal, e)}`) }
  }

  /** A ciphertext from a peer's bytes: within the size limit, valid for this context, of size 2, at `level`, at `scale`. */
  loadCiphertext (bytes: Uint8Array, expect: { level: number, scale?: number }): Ciphertext {
    if (!(bytes instanceof Uint8Array) || bytes.length === 0 || bytes.length > LIMITS.ciphertext) throw new CkksError(`a ciphertext of ${bytes?.length ?? 0} bytes (limit ${LIMITS.ciphertext})`)
    const ct = new this.seal.Ciphertext()
    try {
      this.guard('the ciphertext does not load under these parameters', () => ct.loadFromArray(this.context, bytes))
      if (ct.size() !== 2) throw new CkksError(`a ciphertext of ${ct.size()} polynomials (2 expected)`)
      if (!ct.isNttForm()) throw new CkksError('a ciphertext not in NTT form')
      const level = this.level(ct)
      if (level !== expect.level) throw new CkksError(`a ciphertext at level ${level} (${expect.level} expected)`)
      if (expect.scale !== undefined && ct.scale() !== expect.scale) throw new CkksError(`a ciphertext at scale ${ct.scale()} (${expect.scale} expected)`)
      return ct
    } catch (e) { ct.delete(); throw e }
  }

  /** The evaluation keys a clinic sends, loaded and checked: exactly the Galois keys for `steps`. */
  loadEvaluationKeys (keys: EvaluationKeyBytes, steps: readonly number[]): EvaluationKeys {
    for (const [name, limit] of [['publicKey', LIMITS.publicKey], ['relinKeys', LIMITS.relinKeys], ['galoisKeys', LIMITS.galoisKeys]] as const) {
      const b = keys[name]
      if (!(b instanceof Uint8Array) || b.length === 0 || b.length > limit) throw new CkksError(`${name} of ${b?.length ?? 0} bytes (limit ${limit})`)
    }
    const publicKey = new this.seal.PublicKey()
    const relinKeys = new this.seal.RelinKeys()
    const galoisKeys = new this.seal.GaloisKeys()
    const free = (): void => { publicKey.delete(); relinKeys.delete(); galoisKeys.delete() }
    try {
      this.guard('the public key does not load under these parameters', () => publicKey.loadFromArray(this.context, keys.publicKey))
      this.guard('the relinearisation keys do not load under these parameters', () => relinKeys.loadFromArray(this.context, keys.relinKeys))
      if (relinKeys.size() !== 1 || !relinKeys.hasKey(2)) throw new CkksError('relinearisation keys other than the one for degree 2')
      this.guard('the Galois keys do not load under these parameters', () => galoisKeys.loadFromArray(this.context, keys.galoisKeys))
      const missing = steps.filter(s => !galoisKeys.hasKey(galoisElement(s)))
      if (missing.length > 0) throw new CkksError(`Galois keys lack the rotations ${missing.join(', ')}`)
      if (galoisKeys.size() !== steps.length) throw new CkksError(`Galois keys for ${galoisKeys.size()} rotations (exactly ${steps.length} expected)`)
      return { publicKey, relinKeys, galoisKeys, delete: free }
    } catch (e) { free(); throw e }
  }

  /** A plaintext of `values` at a ciphertext's level and at `scale`. */
  encodeAt (values: Float64Array, level: Ciphertext, scale: number): Plaintext {
    const pt = new this.seal.Plaintext()
    this.encoder.encode(values, scale, pt)
    if (this.level(level) !== this.context.firstContextData().chainIndex()) this.evaluator.plainModSwitchToInplace(pt, level.parmsId())
    return pt
  }

  delete (): void { this.evaluator.delete(); this.encoder.delete(); this.context.delete() }
}

export interface EvaluationKeyBytes { publicKey: Uint8Array, relinKeys: Uint8Array, galoisKeys: Uint8Array }
export interface EvaluationKeys { publicKey: PublicKey, relinKeys: RelinKeys, galoisKeys: GaloisKeys, delete: () => void }
