/**
 * `medmesh export`: a folder that other tools load without medmesh. The chosen certified model
 * as TF.js Layers artifacts (model.json, weights.bin), the preprocessing it expects
 * (preprocessing.json), and a model card (model-card.json, MODEL_CARD.md) that says where it
 * came from: the consortium, its members, the rounds, the chosen one and its certificate. With
 * the ledger (`--with-ledger`) the folder is self-contained for `medmesh verify-model`.
 */
import { copyFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { hex } from '../protocol/codec.ts'
import { consortiumId } from '../protocol/manifest.ts'
import { judgedRounds } from '../protocol/validation.ts'
import { countParameters, buildModel } from '../training/models.ts'
import { layersArtifacts } from '../training/predict.ts'
import { chosenModel, type ChosenModel } from './chosen-model.ts'
import { resolveConfig } from './config.ts'
import { readSiteData } from './dataset.ts'
import { empiricalCoverage } from '../protocol/conformal.ts'
import { fitData } from '../training/site-data.ts'
import { withWeights } from '../training/predict.ts'
import { LocalTrainer } from '../training/trainer.ts'
import { storedSiteReports } from './services/site-reports.ts'
import { DataDir } from './datadir.ts'
import { atomicWrite, ensureDir } from './fsutil.ts'

export interface ExportResult { out: string, round: number, files: string[], card: Record<string, unknown> }

export async function exportModel (dataDir: string, out: string, o: { round?: number, withLedger?: boolean } = {}): Promise<ExportResult> {
  const chosen = chosenModel(dataDir, { round: o.round })
  const dir = new DataDir(dataDir)
  const { manifest, entry, spec } = chosen
  const ledger = dir.ledger(manifest)
  const artifacts = await layersArtifacts(spec, chosen.weights)
  const model = buildModel(spec)
  const parameters = countParameters(model)
  model.dispose()
  const names = (idx: number[]): string[] => idx.map(i => manifest.members[i]?.name ?? String(i))
  const preprocessing = {
    input: { height: spec.height, width: spec.width, channels: spec.channels, layout: 'NHWC' },
    steps: [
      `decode; ${spec.channels === 1 ? 'to grayscale (ITU-R BT.601 luma)' : 'to RGB (grayscale repeated)'}`,
      `resize to ${spec.width}×${spec.height} (area averaging when shrinking, bilinear when enlarging)`,
      'round to 8-bit, divide by 255',
      'subtract mean, divide by std, per channel'
    ],
    normalisation: chosen.norm ?? { mean: Array(spec.channels).fill(0), std: Array(spec.channels).fill(1) },
    classes: chosen.classes,
    output: 'class probabilities (softmax), in the order of classes',
    customLayers: artifacts.customLayers
  }
  // what each member signed about itself (site reports): image counts, and ε with DP
  const reports = storedSiteReports(dir.siteReports(), consortiumId(manifest))
  const perHospital = manifest.members.map(m => {
    const r = reports.get(m.peerId)
    return { name: m.name, reported: r !== undefined, trainImages: r?.trainImages ?? null, validationImages: r?.validationImages ?? null, epsilonSpent: r?.epsilonSpent ?? null }
  })
  const history = judgedRounds(ledger, spec.classes).map(h => ({ round: h.model.header.round, auc: h.figures.auc, accuracy: h.figures.accuracy, smoothedAuc: h.smoothedAuc, images: h.figures.n, degenerate: h.degenerate }))
  const card = {
    consortium: { name: manifest.name, id: hex(consortiumId(manifest)) },
    members: manifest.members.map(m => m.name),
    model: { id: spec.id, widthFactor: spec.widthFactor ?? 1, parameters, input: preprocessing.input, classes: chosen.classes },
    rounds: { certified: ledger.entries.length, models: ledger.entries.filter(e => e.header.kind === 'update').length },
    chosen: {
      round: entry.header.round, reason: chosen.reason, validation: chosen.validation, degenerate: chosen.degenerate,
      certificate: hex(entry.hash), stateHash: hex(entry.header.stateHash), prev: hex(entry.header.prev),
      survivors: names(entry.header.survivors), signedBy: names(entry.certificate.signatures.map(([i]) => i))
    },
    federatedValidation: history,
    // split conformal prediction (protocol/conformal.ts): the classes whose probability reaches the
    // threshold form a set that holds the true class with at least this probability; measured on
    // this member's test split where it has one
    predictionSets: predictionSetsOnTest(dataDir, chosen),
    // the secure aggregation hides each hospital's count (the ledger holds only sums): these are
    // the figures each member signed about itself
    imagesPerHospital: perHospital.map(h => ({ name: h.name, train: h.trainImages, validation: h.validationImages })),
    privacy: !manifest.params.dp.enabled ? null : { dp: manifest.params.dp, epsilonSpent: perHospital.map(h => ({ name: h.name, epsilon: h.epsilonSpent })) },
    exportedBy: manifest.members.find(m => m.peerId === dir.identity().peerId)?.name ?? null,
    exportedAt: new Date().toISOString()
  }
  ensureDir(out, 0o755)
  const files: string[] = []
  const write = (name: string, data: string | Uint8Array): void => { atomicWrite(join(out, name), data, 0o644); files.push(name) }
  write('model.json', JSON.stringify(artifacts.modelJson))
  write('weights.bin', artifacts.weightsBin)
  // the certified state as the ledger hashes it (weights, server optimiser, step): verify-model
  // checks its hash against the certificate and its weights against weights.bin
  write('state.bin', dir.stateBytes(hex(entry.header.stateHash))!)
  write('preprocessing.json', JSON.stringify(preprocessing, null, 2) + '\n')
  write('model-card.json', JSON.stringify(card, null, 2) + '\n')
  write('MODEL_CARD.md', modelCardMarkdown(card, preprocessing))
  if (o.withLedger === true) {
    ensureDir(join(out, 'ledger'), 0o755)
    for (const f of readdirSync(dir.path('ledger')).filter(f => /^\d{10}\.cert$/.test(f)).sort()) { copyFileSync(dir.path('ledger', f), join(out, 'ledger', f)); files.push(`ledger/${f}`) }
    copyFileSync(dir.path('manifest.json'), join(out, 'manifest.json')); files.push('manifest.json')
  }
  return { out, round: entry.header.round, files, card }
}

/**
 * The chosen round's conformal thresholds, each with the coverage and mean set size measured on
 * this member's own test split (a MedMNIST file's), or without them where it has none: the
 * validation images that set the thresholds cannot also test them.
 */
function predictionSetsOnTest (dataDir: string, chosen: ChosenModel): Array<{ coverage: number, threshold: number, test?: { images: number, covered: number, meanSetSize: number } }> {
  if (chosen.conformal.length === 0) return []
  let test = null
  try {
    const config = resolveConfig(dataDir, {})
    test = fitData(readSiteData(config.dataset, config.shard), { input: { size: chosen.spec.height, channels: chosen.spec.channels }, classes: chosen.spec.classes }).test
  } catch { /* no dataset here, or one that does not fit: thresholds only */ }
  if (test === null) return chosen.conformal
  const model = withWeights(chosen.spec, chosen.weights)
  const trainer = new LocalTrainer(model)
  try {
    const probs = trainer.predict(test, chosen.norm)
    return chosen.conformal.map(c => {
      const e = empiricalCoverage(probs, test.labels, chosen.spec.classes, c.threshold)
      return { ...c, test: { images: test.labels.length, covered: e.coverage, meanSetSize: e.meanSetSize } }
    })
  } finally { trainer.dispose(); model.dispose() }
}

function modelCardMarkdown (card: Record<string, any>, pre: Record<string, any>): string {
  const v = card.chosen.validation
  const lines = [
    `# Model card: ${card.consortium.name}`,
    '',
    `A ${card.model.id} model${card.model.widthFactor === 1 ? '' : ` at width ×${card.model.widthFactor} (the width recipe selection chose)`} (${card.model.parameters.toLocaleString('en')} parameters, input ${pre.input.width}×${pre.input.height}×${pre.input.channels}, classes ${card.model.classes.join(', ')}) trained by federated learning with secure aggregation among ${card.members.length} members, none of whom saw another's images or model update.`,
    '',
    '## Provenance',
    `- Consortium: ${card.consortium.name} (id \`${card.consortium.id}\`)`,
    `- Members: ${card.members.join(', ')}`,
    `- Rounds certified: ${card.rounds.certified} (${card.rounds.models} model rounds)`,
    `- Chosen: round ${card.chosen.round} (${card.chosen.reason}${v === null ? '' : `: validation AUC ${v.auc.toFixed(3)}, accuracy ${v.accuracy.toFixed(3)}`})`,
    `- Certificate \`${card.chosen.certificate}\`, model state \`${card.chosen.stateHash}\``,
    `- Inputs from: ${card.chosen.survivors.join(', ')}; signed by: ${card.chosen.signedBy.join(', ')}`,
    '- Check it: `medmesh verify-model EXPORT_DIR --manifest manifest.json --ledger ledger/`',
    '',
    ...(card.chosen.degenerate === null ? [] : ['## WARNING: this model is degenerate', `On the consortium's pooled validation images ${card.chosen.degenerate}: it has learnt nothing a clinician can use. Do not use it; see docs/OPERATIONS.md (a model that learns nothing).`, '']),
    ...(card.predictionSets.length === 0 ? [] : ['## Prediction sets', 'Besides its most probable class, the model can name a set of classes for each image: every class whose probability reaches the threshold below. Split conformal prediction on the pooled validation images gives the guarantee: if new images are like the validation images, the set holds the true class at least this often. A set of more than one class means the model is unsure.', '', '| coverage promised | probability threshold | measured on this member\'s test split |', '|---|---|---|', ...card.predictionSets.map((c: any) => `| ${(100 * c.coverage).toFixed(0)} % | ${c.threshold.toFixed(3)} | ${c.test === undefined ? 'no test split here' : `${(100 * c.test.covered).toFixed(1)} % of ${c.test.images} images, ${c.test.meanSetSize.toFixed(2)} classes per set`} |`), '']),
    '## Federated validation (each member on its own validation images, summed securely)',
    'The chosen round has the best AUC averaged with the rounds either side of it: with a few validation images per hospital one round\'s AUC moves by several points by chance.',
    '',
    '| round | AUC | smoothed AUC | accuracy | images | degenerate |',
    '|---|---|---|---|---|---|',
    ...card.federatedValidation.map((h: any) => `| ${h.round} | ${h.auc.toFixed(3)} | ${h.smoothedAuc.toFixed(3)} | ${h.accuracy.toFixed(3)} | ${h.images} | ${h.degenerate ?? 'no'} |`),
    '',
    '## Data and privacy',
    '- Images per hospital, as each signed about itself (the secure aggregation reveals only sums):',
    '',
    `| hospital | training images | validation images |${card.privacy === null ? '' : ' ε spent |'}`,
    `|---|---|---|${card.privacy === null ? '' : '---|'}`,
    ...card.imagesPerHospital.map((h: any, i: number) => `| ${h.name} | ${h.train ?? 'not reported'} | ${h.validation ?? 'not reported'} |${card.privacy === null ? '' : ` ${card.privacy.epsilonSpent[i].epsilon?.toFixed(3) ?? 'not reported'} |`}`),
    '',
    card.privacy === null ? '- Differential privacy: off.' : `- Differential privacy: DP-SGD, budget ε ${card.privacy.dp.epsilon}, δ ${card.privacy.dp.delta} per hospital, clipping norm ${card.privacy.dp.clipNorm}.`,
    '',
    '## Use',
    `Preprocessing: ${pre.steps.join('; ')}. Normalisation mean ${JSON.stringify(pre.normalisation.mean)}, std ${JSON.stringify(pre.normalisation.std)}.`,
    'Load with `tf.loadLayersModel` (TensorFlow.js) from `model.json`; the output is the probability of each class in the order above.',
    pre.customLayers.length > 0 ? `This model uses custom layers (${pre.customLayers.join(', ')}): register their classes before loading.` : '',
    '',
    'Not a medical device: a research model, to be validated locally before any clinical use.',
    ''
  ]
  return lines.join('\n')
}
