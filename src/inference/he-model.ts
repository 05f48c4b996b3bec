/**
 * The holder's side: medmesh/he-cnn evaluated on a clinic's ciphertext with the holder's plaintext
 * weights (he-layout.ts's schedule on SEAL ciphertexts). The result is re-randomised with a fresh
 * encryption of zero under the clinic's public key and sent at the last level, so that the
 * ciphertext the clinic receives is not the evaluation's own (see THREAT-MODEL.md on what this
 * does and does not hide).
 */
import type { Ciphertext, Plaintext, Encryptor } from 'node-seal'
import { CkksSuite, CkksError, SCALE, type EvaluationKeyBytes, type EvaluationKeys } from './ckks.ts'
import { evaluateSchedule, plainVectors, rotationSteps, type HePlainVectors, type HeWeights, type SlotOps } from './he-layout.ts'

/** A clinic's keys, loaded and checked once per session. */
export class HeSession {
  readonly keys: EvaluationKeys
  readonly encryptor: Encryptor
  constructor (suite: CkksSuite, keys: EvaluationKeys) {
    this.keys = keys
    this.encryptor = new suite.seal.Encryptor(suite.context, keys.publicKey)
  }

  delete (): void { this.encryptor.delete(); this.keys.delete() }
}

export class HeModel {
  readonly suite: CkksSuite
  readonly classes: number
  readonly steps: number[]
  private readonly vectors: HePlainVectors
  // encoded plaintexts by vector, level and scale: the schedule is the same for every query
  private readonly encoded = new Map<Float64Array, Map<string, Plaintext>>()

  constructor (suite: CkksSuite, weights: HeWeights) {
    this.suite = suite
    this.classes = weights.shape.classes
    this.steps = rotationSteps(this.classes)
    this.vectors = plainVectors(weights)
  }

  /** Loads a clinic's evaluation keys (public, relinearisation, Galois for exactly this model's rotations). */
  openSession (keys: EvaluationKeyBytes): HeSession {
    return new HeSession(this.suite, this.suite.loadEvaluationKeys(keys, this.steps))
  }

  /** The encrypted class scores for one encrypted, packed image (serialised, zstd). */
  evaluate (session: HeSession, ciphertext: Uint8Array): Uint8Array {
    const s = this.suite
    const input = s.loadCiphertext(ciphertext, { level: s.context.firstContextData().chainIndex(), scale: SCALE })
    let out: Ciphertext | null = null
    try {
      out = s.guard('evaluation', () => evaluateSchedule(this.ops(session), input, this.vectors))
      const result = out
      return s.guard('re-randomisation', () => {
        const last = s.context.lastParmsId()
        if (s.level(result) !== 0) s.evaluator.cipherModSwitchToInplace(result, last)
        const zero = new s.seal.Ciphertext()
        try {
          session.encryptor.encryptZero(zero)
          s.evaluator.cipherModSwitchToInplace(zero, last)
          zero.setScale(result.scale())
          s.evaluator.addInplace(result, zero)
        } finally { zero.delete() }
        return result.saveToArray(s.seal.ComprModeType.zstd) as Uint8Array
      })
    } finally {
      input.delete()
      out?.delete()
    }
  }

  private plain (values: Float64Array, at: Ciphertext, scale: number): Plaintext {
    let byKey = this.encoded.get(values)
    if (byKey === undefined) { byKey = new Map(); this.encoded.set(values, byKey) }
    const key = `${this.suite.level(at)}:${scale}`
    let pt = byKey.get(key)
    if (pt === undefined) { pt = this.suite.encodeAt(values, at, scale); byKey.set(key, pt) }
    return pt
  }

  private ops (session: HeSession): SlotOps<Ciphertext> {
    const s = this.suite
    const ev = s.evaluator
    const fresh = (): Ciphertext => new s.seal.Ciphertext()
    return {
      mulPlain: (a, p) => { const r = fresh(); ev.multiplyPlain(a, this.plain(p, a, SCALE), r); ev.rescaleToNextInplace(r); return r },
      addPlain: (a, p) => { const r = fresh(); ev.addPlain(a, this.plain(p, a, a.scale()), r); return r },
      add: (a, b) => { const r = fresh(); ev.add(a, b, r); return r },
      square: a => { const r = fresh(); ev.square(a, r); ev.relinearizeInplace(r, session.keys.relinKeys); ev.rescaleToNextInplace(r); return r },
      rotate: (a, step) => { const r = fresh(); ev.rotateVector(a, step, session.keys.galoisKeys, r); return r },
      free: a => { a.delete() }
    }
  }

  delete (): void {
    for (const m of this.encoded.values()) for (const pt of m.values()) pt.delete()
    this.encoded.clear()
  }
}

export { CkksError }
