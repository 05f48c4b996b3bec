/**
 * How medmesh/he-cnn is laid out in the slots of one CKKS ciphertext, and the same computation on
 * plain numbers (the reference that the encrypted path is tested against). No SEAL here: only the
 * packing, which weights go into which slot, and which rotations the evaluation needs.
 *
 * The model (training/models.ts): a 7×7 convolution with stride 3 and F filters on a 28×28
 * grayscale image (8×8 windows), x², a dense layer of H units, x², a dense layer of C classes
 * (the softmax is the clinic's, after decryption). 4096 slots are read as 64 blocks of 64:
 *
 *   input     slot k·64 + w = pixel k of window w (im2col, packed by the clinic; k < 49, w < 64)
 *   conv c    × plaintext(kernel c at k·64 + w), then the 64 blocks summed by rotations of
 *             64, 128, …, 2048: every block holds conv_c[w]; + bias; x²
 *   dense 1   Σ_c conv_c² × plaintext(W1[w·F + c, j] at j·64 + w), then each block summed by
 *             rotations of 1, 2, …, 32: slot j·64 holds unit j; + bias; x²
 *   dense 2   Σ_k rotate(h², −k) × plaintext(W2[j, k] at j·64 + k), then the blocks summed: slot
 *             k holds class k's score (every other slot of the result is k's score again or 0,
 *             so the answer carries nothing but the C scores and CKKS's noise)
 *
 * Depth 5 (one rescale after each multiplication), rotations F·6 + 6 + (C − 1) + 6.
 */
export const SLOTS = 4096
export const BLOCK = 64
export const SIDE = 28
export const KERNEL = 7
export const STRIDE = 3
export const WINDOWS_PER_SIDE = (SIDE - KERNEL) / STRIDE + 1 // 8
export const WINDOWS = WINDOWS_PER_SIDE * WINDOWS_PER_SIDE // 64
export const TAPS = KERNEL * KERNEL // 49

/** The layer sizes of a medmesh/he-cnn: F filters, H hidden units, C classes. */
export interface HeShape { filters: number, hidden: number, classes: number }

/** The weights of a he-cnn, as Float32Arrays in TF.js order (getWeights()). */
export interface HeWeights {
  shape: HeShape
  convKernel: Float32Array // [7, 7, 1, F]
  convBias: Float32Array // [F]
  dense1Kernel: Float32Array // [64·F, H], rows in the flattening order (y·8 + x)·F + c
  dense1Bias: Float32Array // [H]
  dense2Kernel: Float32Array // [H, C]
  dense2Bias: Float32Array // [C]
}

export class HeLayoutError extends Error {}

/** Checks that a shape fits the layout (H ≤ 64 blocks, C ≤ 64, F ≥ 1). */
export function checkShape (s: HeShape): void {
  const ok = (n: number, max: number): boolean => Number.isInteger(n) && n >= 1 && n <= max
  if (!ok(s.filters, 64) || !ok(s.hidden, BLOCK) || !ok(s.classes, BLOCK) || s.classes < 2) {
    throw new HeLayoutError(`a he-cnn of ${s.filters} filters, ${s.hidden} hidden units and ${s.classes} classes does not fit one ciphertext (1–64 filters, 1–64 units, 2–64 classes)`)
  }
}

/** The number of weights of a he-cnn of this shape. */
export function weightCount (s: HeShape): number {
  return TAPS * s.filters + s.filters + WINDOWS * s.filters * s.hidden + s.hidden + s.hidden * s.classes + s.classes
}

/** Splits a flat weight vector (models.ts order) into the he-cnn's layers. */
export function splitWeights (flat: Float32Array, shape: HeShape): HeWeights {
  checkShape(shape)
  if (flat.length !== weightCount(shape)) throw new HeLayoutError(`a he-cnn of this shape has ${weightCount(shape)} weights, not ${flat.length}`)
  let off = 0
  const take = (n: number): Float32Array => { const a = flat.subarray(off, off + n); off += n; return a }
  const { filters: F, hidden: H, classes: C } = shape
  return { shape, convKernel: take(TAPS * F), convBias: take(F), dense1Kernel: take(WINDOWS * F * H), dense1Bias: take(H), dense2Kernel: take(H * C), dense2Bias: take(C) }
}

/** The rotation steps the evaluation uses: exactly the Galois keys a clinic generates. */
export function rotationSteps (classes: number): number[] {
  const steps: number[] = []
  for (let s = 1; s < BLOCK; s *= 2) steps.push(s)
  for (let s = BLOCK; s < SLOTS; s *= 2) steps.push(s)
  for (let k = 1; k < classes; k++) steps.push(-k)
  return steps
}

/**
 * The clinic's packing of a normalised 28×28 image (row-major Float32Array of 784) into slots:
 * slot k·64 + w holds the pixel under tap k of window w.
 */
export function im2col (image: Float32Array): Float64Array {
  if (image.length !== SIDE * SIDE) throw new HeLayoutError(`he-cnn takes 28×28 grayscale images (784 values), not ${image.length}`)
  const slots = new Float64Array(SLOTS)
  for (let ky = 0; ky < KERNEL; ky++) {
    for (let kx = 0; kx < KERNEL; kx++) {
      const k = ky * KERNEL + kx
      for (let oy = 0; oy < WINDOWS_PER_SIDE; oy++) {
        for (let ox = 0; ox < WINDOWS_PER_SIDE; ox++) {
          slots[k * BLOCK + oy * WINDOWS_PER_SIDE + ox] = image[(oy * STRIDE + ky) * SIDE + ox * STRIDE + kx]
        }
      }
    }
  }
  return slots
}

/** The plaintext vectors of the evaluation, one Float64Array of 4096 slots each. */
export interface HePlainVectors {
  conv: Float64Array[] // per filter: kernel tap k at every k·64 + w
  convBias: Float64Array[] // per filter: the bias in every slot
  dense1: Float64Array[] // per filter: W1[w·F + c, j] at j·64 + w
  dense1Bias: Float64Array // b1[j] at j·64
  dense2: Float64Array[] // per class: W2[j, k] at j·64 + k
  dense2Bias: Float64Array // b2[k] at k
}

export function plainVectors (w: HeWeights): HePlainVectors {
  const { filters: F, hidden: H, classes: C } = w.shape
  const conv: Float64Array[] = []
  const convBias: Float64Array[] = []
  const dense1: Float64Array[] = []
  for (let c = 0; c < F; c++) {
    const v = new Float64Array(SLOTS)
    for (let k = 0; k < TAPS; k++) v.fill(w.convKernel[k * F + c], k * BLOCK, k * BLOCK + WINDOWS)
    conv.push(v)
    convBias.push(new Float64Array(SLOTS).fill(w.convBias[c]))
    const d = new Float64Array(SLOTS)
    for (let j = 0; j < H; j++) for (let q = 0; q < WINDOWS; q++) d[j * BLOCK + q] = w.dense1Kernel[(q * F + c) * H + j]
    dense1.push(d)
  }
  const dense1Bias = new Float64Array(SLOTS)
  for (let j = 0; j < H; j++) dense1Bias[j * BLOCK] = w.dense1Bias[j]
  const dense2: Float64Array[] = []
  for (let k = 0; k < C; k++) {
    const v = new Float64Array(SLOTS)
    for (let j = 0; j < H; j++) v[j * BLOCK + k] = w.dense2Kernel[j * C + k]
    dense2.push(v)
  }
  const dense2Bias = new Float64Array(SLOTS)
  for (let k = 0; k < C; k++) dense2Bias[k] = w.dense2Bias[k]
  return { conv, convBias, dense1, dense1Bias, dense2, dense2Bias }
}

/** The operations the evaluation needs, so that one schedule runs on plain slots and on ciphertexts. */
export interface SlotOps<T> {
  mulPlain: (a: T, p: Float64Array) => T // followed by a rescale
  addPlain: (a: T, p: Float64Array) => T
  add: (a: T, b: T) => T
  square: (a: T) => T // relinearised and rescaled
  rotate: (a: T, step: number) => T // result[i] = a[i + step], cyclically
  free: (a: T) => void
}

/** The he-cnn's schedule over any slot arithmetic: the class scores end in slots 0…C−1. */
export function evaluateSchedule<T> (ops: SlotOps<T>, input: T, p: HePlainVectors): T {
  const consume = (a: T, f: (a: T) => T): T => { const r = f(a); ops.free(a); return r }
  const sumBy = (a: T, from: number, to: number): T => {
    let acc = a
    for (let s = from; s < to; s *= 2) { const r = ops.rotate(acc, s); const next = ops.add(acc, r); ops.free(r); ops.free(acc); acc = next }
    return acc
  }
  let hidden: T | null = null
  for (let c = 0; c < p.conv.length; c++) {
    let a = ops.mulPlain(input, p.conv[c])
    a = sumBy(a, BLOCK, SLOTS)
    a = consume(a, x => ops.addPlain(x, p.convBias[c]))
    a = consume(a, x => ops.square(x))
    a = consume(a, x => ops.mulPlain(x, p.dense1[c]))
    if (hidden === null) hidden = a
    else { const next = ops.add(hidden, a); ops.free(hidden); ops.free(a); hidden = next }
  }
  if (hidden === null) throw new HeLayoutError('a he-cnn has at least one filter')
  hidden = sumBy(hidden, 1, BLOCK)
  hidden = consume(hidden, x => ops.addPlain(x, p.dense1Bias))
  hidden = consume(hidden, x => ops.square(x))
  let out: T | null = null
  for (let k = 0; k < p.dense2.length; k++) {
    const shifted = k === 0 ? hidden : ops.rotate(hidden, -k)
    const term = ops.mulPlain(shifted, p.dense2[k])
    if (k !== 0) ops.free(shifted)
    if (out === null) out = term
    else { const next = ops.add(out, term); ops.free(out); ops.free(term); out = next }
  }
  ops.free(hidden)
  out = sumBy(out as T, BLOCK, SLOTS)
  return consume(out, x => ops.addPlain(x, p.dense2Bias))
}

/** Slot arithmetic on plain Float64Arrays: the reference for the encrypted path. */
export const plainSlots: SlotOps<Float64Array> = {
  mulPlain: (a, p) => a.map((x, i) => x * p[i]),
  addPlain: (a, p) => a.map((x, i) => x + p[i]),
  add: (a, b) => a.map((x, i) => x + b[i]),
  square: a => a.map(x => x * x),
  rotate: (a, step) => a.map((_, i) => a[(((i + step) % SLOTS) + SLOTS) % SLOTS]),
  free: () => {}
}

/** The class scores (logits) of a he-cnn on one packed image, computed in the clear. */
export function plainScores (packed: Float64Array, p: HePlainVectors, classes: number): Float64Array {
  return evaluateSchedule(plainSlots, packed, p).slice(0, classes)
}
