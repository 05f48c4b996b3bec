/**
 * A clinic's encrypted inference, end to end: connect to a holder, check what it serves (the
 * he-cnn, the same CKKS parameters, exactly the rotations the layout needs), send the evaluation
 * keys once, then per image: normalise, pack, encrypt, ask, decrypt, softmax. The secret key
 * never leaves this object; the holder sees keys and ciphertexts only.
 */
import type { Libp2p } from 'libp2p'
import type { NodeIdentity } from '../../privacy/index.ts'
import { CkksSuite } from '../../inference/ckks.ts'
import { HeClient, softmax } from '../../inference/he-client.ts'
import { rotationSteps, SIDE } from '../../inference/he-layout.ts'
import type { ServedInfo } from '../../inference/he-wire.ts'
import { createClientHost } from './host.ts'
import { HolderLink } from './client.ts'

export interface EncryptedPrediction {
  scores: Float64Array
  probabilities: Float64Array
  round: number
  state: string
  ms: { encrypt: number, roundTrip: number, decrypt: number }
  bytes: { query: number, answer: number }
}

export class ClinicError extends Error {}

export class Clinic {
  readonly info: ServedInfo
  /** the one-time evaluation keys: bytes sent, and the time to make and send them */
  readonly keys: { bytes: number, makeMs: number, sendMs: number }
  private readonly host: Libp2p
  private readonly link: HolderLink
  private readonly client: HeClient
  private readonly suite: CkksSuite
  private readonly session: Uint8Array

  private constructor (f: { host: Libp2p, link: HolderLink, client: HeClient, suite: CkksSuite, info: ServedInfo, session: Uint8Array, keys: Clinic['keys'] }) {
    this.host = f.host; this.link = f.link; this.client = f.client; this.suite = f.suite; this.info = f.info; this.session = f.session; this.keys = f.keys
  }

  static async connect (identity: NodeIdentity, address: string): Promise<Clinic> {
    const host = await createClientHost(identity)
    let suite: CkksSuite | undefined
    let client: HeClient | undefined
    try {
      const link = new HolderLink(host, address)
      const info = await link.info()
      suite = await CkksSuite.create()
      if (info.model !== 'medmesh/he-cnn') throw new ClinicError(`the holder serves ${info.model}, not medmesh/he-cnn`)
      if (info.parameters !== suite.parametersId) throw new ClinicError('the holder uses other CKKS parameters than this medmesh (update one of them)')
      if (info.mean.length !== 1 || info.std.length !== 1 || !(info.std[0] > 0)) throw new ClinicError('the holder\'s normalisation is not one grayscale channel\'s')
      const steps = rotationSteps(info.classes)
      if (info.steps.length !== steps.length || info.steps.some((s, i) => s !== steps[i])) throw new ClinicError('the holder asks for other rotations than the he-cnn layout needs: refusing to send Galois keys for them')
      client = new HeClient(suite)
      let t = performance.now()
      const keys = client.evaluationKeys(info.classes)
      const makeMs = performance.now() - t
      t = performance.now()
      const { session } = await link.openSession(keys)
      const sendMs = performance.now() - t
      return new Clinic({ host, link, client, suite, info, session, keys: { bytes: keys.publicKey.length + keys.relinKeys.length + keys.galoisKeys.length, makeMs, sendMs } })
    } catch (e) {
      client?.delete(); suite?.delete()
      await host.stop()
      throw e
    }
  }

  /** One preprocessed image (28×28 bytes, as `preprocess` gives them) through the holder, encrypted. */
  async predict (pixels: Uint8Array): Promise<EncryptedPrediction> {
    if (pixels.length !== SIDE * SIDE) throw new ClinicError(`an image of ${pixels.length} values for a 28×28 grayscale model`)
    const [mean, std] = [this.info.mean[0], this.info.std[0]]
    const x = Float32Array.from(pixels, v => (v / 255 - mean) / std)
    let t = performance.now()
    const query = this.client.encryptImage(x)
    const encrypt = performance.now() - t
    t = performance.now()
    const answer = await this.link.query(this.session, query)
    const roundTrip = performance.now() - t
    t = performance.now()
    const scores = this.client.decryptScores(answer.ciphertext, this.info.classes)
    const decrypt = performance.now() - t
    return { scores, probabilities: softmax(scores), round: answer.round, state: answer.state, ms: { encrypt, roundTrip, decrypt }, bytes: { query: query.length, answer: answer.ciphertext.length } }
  }

  async close (): Promise<void> {
    this.client.delete()
    this.suite.delete()
    await this.host.stop()
  }
}
