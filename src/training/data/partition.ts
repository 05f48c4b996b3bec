/**
 * Seeded partitioners that split one dataset among simulated hospitals:
 * - iid: shuffle, then equal shares;
 * - label skew: each class's examples are divided by proportions drawn from Dirichlet(α)
 *   (small α: each hospital sees mostly one class; large α: close to IID);
 * - quantity skew: IID labels, hospital sizes drawn from Dirichlet(α).
 * Every hospital gets at least `minPerSite` examples. The same seed gives the same split.
 */
import { seededRandom, uniformDoubles, type RandomSource } from '../../privacy/index.ts'

export type Partition = number[][]

/** `indices` split by a seeded coin: about `fraction` of them held out (validation, testing), the rest kept. */
export function holdOut (indices: readonly number[], fraction: number, seed: Uint8Array): { kept: number[], held: number[] } {
  const u = uniformDoubles(seededRandom(seed), indices.length)
  return { kept: indices.filter((_, j) => u[j] >= fraction), held: indices.filter((_, j) => u[j] < fraction) }
}

class Uniform {
  readonly #rng: RandomSource
  #buf: Float64Array = new Float64Array(0)
  #i = 0
  constructor (seed: Uint8Array) { this.#rng = seededRandom(seed) }
  next (): number {
    if (this.#i >= this.#buf.length) { this.#buf = uniformDoubles(this.#rng, 4096); this.#i = 0 }
    return this.#buf[this.#i++]
  }
}

function shuffle (xs: number[], u: Uniform): number[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(u.next() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]]
  }
  return xs
}

function normal (u: Uniform): number {
  return Math.sqrt(-2 * Math.log(1 - u.next())) * Math.cos(2 * Math.PI * u.next())
}

/** Gamma(α, 1) by Marsaglia and Tsang (2000), with the α < 1 boost. */
function gamma (alpha: number, u: Uniform): number {
  if (alpha < 1) return gamma(alpha + 1, u) * Math.pow(1 - u.next(), 1 / alpha)
  const d = alpha - 1 / 3
  const c = 1 / Math.sqrt(9 * d)
  for (;;) {
    let x: number; let v: number
    do { x = normal(u); v = 1 + c * x } while (v <= 0)
    v = v * v * v
    const r = 1 - u.next()
    if (Math.log(r) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v
  }
}

function dirichlet (k: number, alpha: number, u: Uniform): number[] {
  const g = Array.from({ length: k }, () => gamma(alpha, u))
  const s = g.reduce((a, b) => a + b, 0)
  return g.map(x => x / s)
}

function check (n: number, sites: number, minPerSite: number): void {
  if (!Number.isInteger(sites) || sites < 1) throw new RangeError('sites must be a positive integer')
  if (sites * minPerSite > n) throw new RangeError(`${n} examples cannot give ${sites} sites ${minPerSite} each`)
}

export function partitionIid (n: number, sites: number, seed: Uint8Array): Partition {
  check(n, sites, 1)
  const idx = shuffle(Array.from({ length: n }, (_, i) => i), new Uniform(seed))
  return Array.from({ length: sites }, (_, s) => idx.slice(Math.floor(s * n / sites), Math.floor((s + 1) * n / sites)))
}

/** Label skew: Dirichlet(α) proportions of each class per site. */
export function partitionDirichlet (labels: ArrayLike<number>, sites: number, alpha: number, seed: Uint8Array, minPerSite = 10): Partition {
  if (!(alpha > 0)) throw new RangeError('alpha must be positive')
  check(labels.length, sites, minPerSite)
  const u = new Uniform(seed)
  const byClass = new Map<number, number[]>()
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i]
    if (!byClass.has(l)) byClass.set(l, [])
    byClass.get(l)!.push(i)
  }
  for (let attempt = 0; attempt < 100; attempt++) {
    const parts: Partition = Array.from({ length: sites }, () => [])
    for (const [, idx] of [...byClass.entries()].sort((a, b) => a[0] - b[0])) {
      shuffle(idx, u)
      const p = dirichlet(sites, alpha, u)
      let start = 0
      let acc = 0
      p.forEach((share, s) => {
        acc += share
        const end = s === sites - 1 ? idx.length : Math.round(acc * idx.length)
        parts[s].push(...idx.slice(start, end))
        start = end
      })
    }
    if (parts.every(p => p.length >= minPerSite)) return parts.map(p => shuffle(p, u))
  }
  throw new RangeError(`no Dirichlet(${alpha}) split gave every one of ${sites} sites ${minPerSite} examples in 100 draws`)
}

/** Quantity skew: IID examples, site sizes from Dirichlet(α). */
export function partitionQuantity (n: number, sites: number, alpha: number, seed: Uint8Array, minPerSite = 10): Partition {
  check(n, sites, minPerSite)
  const u = new Uniform(seed)
  const idx = shuffle(Array.from({ length: n }, (_, i) => i), u)
  const spare = n - sites * minPerSite
  const p = dirichlet(sites, alpha, u)
  const sizes = p.map(x => minPerSite + Math.floor(x * spare))
  sizes[sites - 1] += n - sizes.reduce((a, b) => a + b, 0)
  const out: Partition = []
  let start = 0
  for (const size of sizes) { out.push(idx.slice(start, start + size)); start += size }
  return out
}
