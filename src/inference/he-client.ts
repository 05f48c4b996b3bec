/**
 * The clinic's side: it makes the key pair and keeps the secret key; it sends a holder only the
 * evaluation keys (public, relinearisation, and Galois keys for exactly the model's rotations),
 * then one ciphertext per image, and decrypts the class scores it gets back. Encryption is
 * symmetric (with the secret key, seeded, so that a ciphertext travels at half size); SEAL draws
 * the key and the encryption randomness from its CSPRNG (Blake2xb seeded from the system).
 */
import type { KeyGenerator, SecretKey, Encryptor, Decryptor } from 'node-seal'
import { CkksSuite, CkksError, SCALE, type EvaluationKeyBytes } from './ckks.ts'
import { im2col, rotationSteps } from './he-layout.ts'

export class HeClient {
  readonly suite: CkksSuite
  private readonly keygen: KeyGenerator
  private readonly secretKey: SecretKey
  private readonly encryptor: Encryptor
  private readonly decryptor: Decryptor

  constructor (suite: CkksSuite) {
    this.suite = suite
    const { seal, context } = suite
    this.keygen = new seal.KeyGenerator(context)
    this.secretKey = this.keygen.secretKey()
    const publicKey = this.keygen.createPublicKey()
    this.encryptor = new seal.Encryptor(context, publicKey, this.secretKey)
    publicKey.delete()
    this.decryptor = new seal.Decryptor(context, this.secretKey)
  }

  /** What a holder needs to evaluate a model with `classes` outputs, serialised (zstd). */
  evaluationKeys (classes: number): EvaluationKeyBytes {
    const { seal } = this.suite
    const zstd = seal.ComprModeType.zstd
    const save = <T extends { saveToArray: (m: typeof zstd) => unknown, delete: () => void }>(k: T): Uint8Array => { try { return k.saveToArray(zstd) as Uint8Array } finally { k.delete() } }
    return {
      publicKey: save(this.keygen.createPublicKeySerializable()),
      relinKeys: save(this.keygen.createRelinKeysSerializable()),
      galoisKeys: save(this.keygen.createGaloisKeysSerializableWithSteps(Int32Array.from(rotationSteps(classes))))
    }
  }

  /** One normalised 28×28 image (784 values), packed and encrypted. */
  encryptImage (image: Float32Array): Uint8Array {
    const { seal, encoder } = this.suite
    const pt = new seal.Plaintext()
    try {
      encoder.encode(im2col(image), SCALE, pt)
      const ct = this.encryptor.encryptSymmetricSerializable(pt)
      try { return ct.saveToArray(seal.ComprModeType.zstd) as Uint8Array } finally { ct.delete() }
    } finally { pt.delete() }
  }

  /** The class scores (logits) in a holder's answer: a ciphertext at the last level. */
  decryptScores (answer: Uint8Array, classes: number): Float64Array {
    const s = this.suite
    const ct = s.loadCiphertext(answer, { level: 0 })
    const pt = new s.seal.Plaintext()
    try {
      s.guard('decryption', () => this.decryptor.decrypt(ct, pt))
      const slots = s.encoder.decodeFloat64(pt) as Float64Array
      const scores = Float64Array.from(slots.subarray(0, classes))
      if (!scores.every(Number.isFinite)) throw new CkksError('the answer decrypts to non-finite scores')
      return scores
    } finally { ct.delete(); pt.delete() }
  }

  delete (): void { this.decryptor.delete(); this.encryptor.delete(); this.secretKey.delete(); this.keygen.delete() }
}

/** Class probabilities from scores (the model's softmax, which the clinic applies after decryption). */
export function softmax (scores: ArrayLike<number>): Float64Array {
  const max = Math.max(...Array.from(scores))
  const e = Float64Array.from(scores, x => Math.exp(x - max))
  const sum = e.reduce((a, b) => a + b, 0)
  return e.map(x => x / sum)
}
