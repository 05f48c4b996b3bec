/** Registers every command; each command's module loads only when it runs. */
import { registerCommand } from './main.ts'

const nodeCommands = async () => await import('./node-commands.ts')

registerCommand('init', { summary: 'create a node identity in a data directory', load: async () => { const m = await nodeCommands(); return { help: m.initHelp, run: m.init } } })
registerCommand('manifest', { summary: 'create, sign or verify a consortium manifest', load: async () => { const m = await nodeCommands(); return { help: m.manifestHelp, run: m.manifest } } })
registerCommand('join', { summary: 'join a consortium: store its manifest and this node\'s settings', load: async () => { const m = await nodeCommands(); return { help: m.joinHelp, run: m.join } } })
registerCommand('start', { summary: 'run the node service', load: async () => { const m = await nodeCommands(); return { help: m.startHelp, run: m.start } } })
registerCommand('serve', { summary: 'serve encrypted inference of the certified model (without training)', load: async () => { const m = await nodeCommands(); return { help: m.serveHelp, run: m.serve } } })
registerCommand('status', { summary: 'ask a running node for its status', load: async () => { const m = await nodeCommands(); return { help: m.statusHelp, run: m.status } } })
registerCommand('simnet', { summary: 'simulate a consortium on one machine, with a report', load: async () => { const m = await import('../../scripts/simnet/simnet.ts'); return { help: m.simnetHelp, run: args => m.runSimnet(args) } } })
registerCommand('predict', { summary: 'run the consortium\'s chosen model on images', load: async () => { const m = await import('./predict.ts'); return { help: m.help, run: args => m.run(args) } } })
registerCommand('infer', { summary: 'a clinic\'s encrypted prediction from a holder (the image stays hidden, the model too)', load: async () => { const m = await import('./infer.ts'); return { help: m.help, run: args => m.run(args) } } })
registerCommand('export', { summary: 'write the chosen model as a TF.js folder with its model card', load: async () => { const m = await import('./export.ts'); return { help: m.help, run: args => m.run(args) } } })
registerCommand('verify-model', { summary: 'check that an exported model is the one the consortium certified', load: async () => { const m = await import('./verify-model.ts'); return { help: m.help, run: args => m.run(args) } } })
registerCommand('dp-epsilon', { summary: 'the (ε, δ) a DP-SGD training plan would spend', load: async () => { const m = await import('./dp-epsilon.ts'); return { help: m.help, run: args => m.run(args) } } })

export { main } from './main.ts'
