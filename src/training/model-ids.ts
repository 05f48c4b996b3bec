/** The models medmesh can build (models.ts), by id: here apart, so that naming one does not load TF.js. */
export const MODEL_IDS = ['medmesh/cnn-small', 'medmesh/cnn-gn', 'medmesh/resnet18-28', 'medmesh/resnet18-28-gn', 'medmesh/resnet18', 'medmesh/resnet18-gn', 'medmesh/linear', 'medmesh/he-cnn', 'medmesh/gn-resnet'] as const
export type ModelId = typeof MODEL_IDS[number]
