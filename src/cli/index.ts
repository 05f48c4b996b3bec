/** Registers every command; imported by bin/medmesh.js through main.ts's dispatcher. */
import { registerCommand } from './main.ts'
import * as dpEpsilon from './dp-epsilon.ts'
import * as node from './node-commands.ts'

registerCommand('init', { summary: 'create a node identity in a data directory', help: node.initHelp, run: args => node.init(args) })
registerCommand('manifest', { summary: 'create, sign or verify a consortium manifest', help: node.manifestHelp, run: args => node.manifest(args) })
registerCommand('join', { summary: 'join a consortium: store its manifest and this node\'s settings', help: node.joinHelp, run: args => node.join(args) })
registerCommand('start', { summary: 'run the node service', help: node.startHelp, run: args => node.start(args) })
registerCommand('status', { summary: 'ask a running node for its status', help: node.statusHelp, run: args => node.status(args) })
registerCommand('dp-epsilon', { summary: 'the (ε, δ) a DP-SGD training plan would spend', help: dpEpsilon.help, run: args => dpEpsilon.run(args) })

export { main } from './main.ts'
