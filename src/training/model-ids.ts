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
