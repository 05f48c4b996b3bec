/** The models medmesh can build (models.ts), by id: here apart, so that naming one does not load TF.js. */
export const MODEL_IDS = ['medmesh/cnn-small', 'medmesh/cnn-gn', 'medmesh/resnet18-28', 'medmesh/resnet18-28-gn', 'medmesh/resnet18', 'medmesh/resnet18-gn', 'medmesh/linear', 'medmesh/he-cnn', 'medmesh/cnn-gn-stem'] as const
export type ModelId = typeof MODEL_IDS[number]

/**
 * The model a consortium gets unless it names one, from the manifest's input size. cnn-small up to
 * 32 px: there it learns as well as a residual GroupNorm network of 300k parameters in a seventh
 * of the time (PneumoniaMNIST at 28, centralised, 4 epochs: test AUC 0.959 at 910 images/s against
 * 0.954 at 130). cnn-gn-stem above: its size does not grow with the input, where cnn-small's dense
 * layer over a flattened map made it a 4.2M-parameter model at 128 px that diverged in its first
 * epoch.
 */
export function defaultModelFor (size: number): ModelId {
  return size <= 32 ? 'medmesh/cnn-small' : 'medmesh/cnn-gn-stem'
}

/** the models whose width can be scaled (models.ts, widthFactor): the others have a fixed shape (he-cnn's encrypted layout) or are a baseline */
export const SCALABLE_MODELS: readonly ModelId[] = ['medmesh/cnn-small', 'medmesh/cnn-gn', 'medmesh/cnn-gn-stem', 'medmesh/resnet18-28', 'medmesh/resnet18-28-gn', 'medmesh/resnet18', 'medmesh/resnet18-gn']

/** Why this width factor cannot build this model (null: it can). */
export function widthProblem (id: string, factor: number): string | null {
  if (!(factor >= 0.25 && factor <= 4) || !Number.isInteger(factor * 4)) return `a width factor must be a multiple of 0.25 in [0.25, 4], not ${factor}`
  if (factor !== 1 && !(SCALABLE_MODELS as readonly string[]).includes(id)) return `${id} has no width to scale (models that do: ${SCALABLE_MODELS.join(', ')})`
  return null
}
