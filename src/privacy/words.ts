/**
 * Addition of uint32 vectors modulo 2^32, four words at a time.
 *
 * Why: masking adds n keystreams of the model's size into every input, and unmasking and
 * aggregation add as many again; in JavaScript each word costs 2–4 ns (a typed-array loop is
 * not vectorised), more than AES-CTR takes to produce it. WebAssembly's 128-bit SIMD
 * (`i32x4.add`, `i32x4.sub`, wrapping modulo 2^32 like a Uint32Array store) does the same
 * arithmetic at memory speed. Operands are copied into a small WebAssembly memory one chunk at
 * a time (memcpy, in cache), so that the caller's vectors stay ordinary Uint32Arrays.
 *
 * The module is a few dozen bytes, written out below with the text it encodes; where
 * WebAssembly SIMD is missing, the same operations run as plain loops (`WORDS_SIMD` says which).
 * The results are identical either way (test/privacy/words.test.ts checks both).
 */

/** Words per chunk: a multiple of 16; two chunks (accumulator and operand) fit in two 64 KiB pages. */
export const CHUNK_WORDS = 16 * 1024
const ACC = 0
const OPERAND = CHUNK_WORDS * 4

/*
 * (module
 *   (memory (export "memory") 2)
 *   (func (export "add") (param $dst i32) (param $src i32) (param $n i32) (local $end i32)   ;; and "sub", with i32x4.sub
 *     (local.set $end (i32.add (local.get $dst) (i32.shl (local.get $n) (i32.const 2))))
 *     (block (loop
 *       (br_if 1 (i32.ge_u (local.get $dst) (local.get $end)))
 *       (v128.store offset=0 (local.get $dst) (i32x4.add (v128.load offset=0 (local.get $dst)) (v128.load offset=0 (local.get $src))))
 *       ;; the same at offsets 16, 32 and 48: four vectors an iteration
 *       (local.set $dst (i32.add (local.get $dst) (i32.const 64)))
 *       (local.set $src (i32.add (local.get $src) (i32.const 64)))
 *       (br 0)))))
 * $n is a multiple of 16 and both addresses are 16-byte aligned.
 */
function body (op: number): number[] {
  const lane = (offset: number): number[] => [
    0x20, 0x00,
    0x20, 0x00, 0xfd, 0x00, 0x04, offset, // v128.load align=16 offset
    0x20, 0x01, 0xfd, 0x00, 0x04, offset,
    0xfd, op, 0x01, // i32x4.add (0xae 0x01) or i32x4.sub (0xb1 0x01)
    0xfd, 0x0b, 0x04, offset // v128.store align=16 offset
  ]
  const code = [
    0x01, 0x01, 0x7f, // one local: $end i32
    0x20, 0x00, 0x20, 0x02, 0x41, 0x02, 0x74, 0x6a, 0x21, 0x03,
    0x02, 0x40, 0x03, 0x40,
    0x20, 0x00, 0x20, 0x03, 0x4f, 0x0d, 0x01,
    ...lane(0), ...lane(16), ...lane(32), ...lane(48),
    0x20, 0x00, 0x41, 0xc0, 0x00, 0x6a, 0x21, 0x00, // $dst += 64 (i32.const 64 is 0xc0 0x00 in signed LEB128)
    0x20, 0x01, 0x41, 0xc0, 0x00, 0x6a, 0x21, 0x01,
    0x0c, 0x00, 0x0b, 0x0b, 0x0b
  ]
  return [...leb(code.length), ...code]
}
/** unsigned LEB128, as the binary format writes sizes */
function leb (n: number): number[] {
  const out: number[] = []
  do { out.push((n & 0x7f) | (n >= 0x80 ? 0x80 : 0)); n >>>= 7 } while (n > 0)
  return out
}
const section = (id: number, content: number[]): number[] => [id, ...leb(content.length), ...content]
const name = (s: string): number[] => [s.length, ...Array.from(s, c => c.charCodeAt(0))]
const MODULE = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, [0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00]), // type: (i32 i32 i32) -> ()
  ...section(3, [0x02, 0x00, 0x00]), // two functions of that type
  ...section(5, [0x01, 0x00, 0x02]), // one memory, 2 pages
  ...section(7, [0x03, ...name('memory'), 0x02, 0x00, ...name('add'), 0x00, 0x00, ...name('sub'), 0x00, 0x01]),
  ...section(10, [0x02, ...body(0xae), ...body(0xb1)])
])

// the global WebAssembly API, as far as it is used here (the project's lib settings leave it untyped)
declare const WebAssembly: {
  validate: (bytes: Uint8Array) => boolean
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object) => { exports: Record<string, unknown> }
}

interface Kernel { add: (dst: number, src: number, n: number) => void, sub: (dst: number, src: number, n: number) => void, words: Uint32Array, bytes: Uint8Array }

function load (): Kernel | null {
  if (typeof WebAssembly !== 'object' || !WebAssembly.validate(MODULE)) return null
  const exports = new WebAssembly.Instance(new WebAssembly.Module(MODULE)).exports as unknown as { memory: { buffer: ArrayBuffer }, add: Kernel['add'], sub: Kernel['sub'] }
  return { add: exports.add, sub: exports.sub, words: new Uint32Array(exports.memory.buffer), bytes: new Uint8Array(exports.memory.buffer) }
}

let kernel: Kernel | null = load()
/** the ChunkSum between its begin and end, if any */
let open: ChunkSum | null = null

/** True when the SIMD kernel is in use (false: plain loops). */
export const WORDS_SIMD = (): boolean => kernel !== null

/** For tests: run with or without the SIMD kernel. */
export function useSimd (on: boolean): void { kernel = on ? load() : null }

/**
 * A chunk accumulator: `begin(slice)` takes up to CHUNK_WORDS words, `add`/`sub` fold operands
 * of the same length into it, `end()` writes the result back into the slice. Between begin and end the
 * running sum lives in the kernel's memory, so that n operands cost one copy in and out of the
 * accumulator rather than n.
 */
export class ChunkSum {
  #slice: Uint32Array | null = null
  #n = 0

  begin (slice: Uint32Array): void {
    if (slice.length > CHUNK_WORDS) throw new RangeError(`a chunk holds at most ${CHUNK_WORDS} words`)
    // every ChunkSum shares the kernel's one accumulator: two open at once would mix their sums
    if (open !== null) throw new Error('a ChunkSum is already open: sums cannot be nested')
    open = this
    this.#slice = slice
    this.#n = slice.length
    if (kernel !== null) kernel.words.set(slice, ACC / 4)
  }

  /** acc += operand (mod 2^32); `operand` holds the chunk's words as 4·n bytes (any alignment) or as words. */
  add (operand: Uint8Array | Uint32Array): void { this.#fold(operand, 1) }
  sub (operand: Uint8Array | Uint32Array): void { this.#fold(operand, -1) }

  end (): void {
    const slice = this.#slice
    if (slice === null) throw new Error('ChunkSum.end without begin')
    if (kernel !== null) slice.set(kernel.words.subarray(ACC / 4, ACC / 4 + this.#n))
    this.#slice = null
    open = null
  }

  #fold (operand: Uint8Array | Uint32Array, sign: 1 | -1): void {
    const slice = this.#slice
    if (slice === null) throw new Error('ChunkSum used without begin')
    const n = this.#n
    const size = operand instanceof Uint32Array ? operand.length : operand.byteLength / 4
    if (size !== n) throw new RangeError(`operand has ${size} words, the chunk ${n}`)
    if (kernel === null) {
      const words = operand instanceof Uint32Array ? operand : wordsOf(operand)
      if (sign === 1) for (let i = 0; i < n; i++) slice[i] += words[i]
      else for (let i = 0; i < n; i++) slice[i] -= words[i]
      return
    }
    if (operand instanceof Uint32Array) kernel.words.set(operand, OPERAND / 4)
    else kernel.bytes.set(operand, OPERAND)
    const vectorWords = n & ~15
    if (sign === 1) kernel.add(ACC, OPERAND, vectorWords)
    else kernel.sub(ACC, OPERAND, vectorWords)
    const w = kernel.words
    for (let i = vectorWords; i < n; i++) w[ACC / 4 + i] = sign === 1 ? w[ACC / 4 + i] + w[OPERAND / 4 + i] : w[ACC / 4 + i] - w[OPERAND / 4 + i]
  }
}

/** The words of 4·n bytes: a view when aligned, else one copy (a Node Buffer may sit at any offset). */
export function wordsOf (bytes: Uint8Array): Uint32Array {
  return bytes.byteOffset % 4 === 0
    ? new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
    : new Uint32Array(Uint8Array.from(bytes).buffer)
}

const shared = new ChunkSum()

/** acc += sign · v (mod 2^32), in place, for vectors of any (equal) length. */
export function addWords (acc: Uint32Array, v: Uint32Array, sign: 1 | -1 = 1): void {
  if (acc.length !== v.length) throw new RangeError('addWords needs vectors of the same length')
  for (let off = 0; off < acc.length; off += CHUNK_WORDS) {
    const end = Math.min(acc.length, off + CHUNK_WORDS)
    shared.begin(acc.subarray(off, end))
    try {
      if (sign === 1) shared.add(v.subarray(off, end))
      else shared.sub(v.subarray(off, end))
    } finally { shared.end() }
  }
}
