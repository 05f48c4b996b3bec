/** Test helpers around the in-memory network: inputs whose sums can be checked bit for bit. */
import { MemNet as BaseNet, mulberry32, type NetOptions } from '../../src/protocol/memnet.ts'
import type { SlicingParams } from '../../src/protocol/manifest.ts'

export { mulberry32 }

/** MemNet whose peers contribute `defaultInput` unless told otherwise; `slicing` puts the round in sliced mode. */
export class MemNet extends BaseNet {
  constructor (o: NetOptions & { slicing?: SlicingParams }) {
    const { slicing, ...rest } = o
    super({
      ...rest,
      input: o.input ?? ((i, round) => defaultInput(o.modelSize ?? 16)(i, round)),
      params: p => { o.params?.(p); if (slicing !== undefined) p.slicing = { ...slicing } }
    })
  }
}

/** The aggregation modes every round test runs in: all-to-all, and sliced (3 slices, 2 aggregators each). */
export const ROUND_MODES: Array<{ name: string, options: { slicing?: SlicingParams } }> = [
  { name: 'all-to-all', options: {} },
  { name: 'sliced', options: { slicing: { slices: 3, perSlice: 2 } } }
]

/** Inputs that quantise exactly (multiples of 1/scale, full weight), so sums can be checked bit for bit. */
export function defaultInput (size: number, scale = 2 ** 18) {
  return (member: number, round: number) => ({
    values: Float64Array.from({ length: size }, (_, j) => (((member + 1) * 7919 + j * 104729 + round * 31) % 2001 - 1000) / scale),
    count: 100_000
  })
}

/** The exact Z_2^32 sum the certificate's aggregate hash must cover, for survivors `u`. */
export function expectedAggregate (size: number, survivors: number[], round: number, scale = 2 ** 18): Uint32Array {
  const input = defaultInput(size, scale)
  const sum = new Uint32Array(size + 1)
  for (const u of survivors) {
    const { values } = input(u, round)
    for (let j = 0; j < size; j++) sum[j] += Math.round(values[j] * scale)
    sum[size] += scale // weight 1
  }
  return sum
}
