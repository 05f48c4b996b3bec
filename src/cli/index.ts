/** Registers every command; imported by bin/medmesh.js through main.ts's dispatcher. */
import { registerCommand } from './main.ts'
import * as dpEpsilon from './dp-epsilon.ts'

registerCommand('dp-epsilon', { summary: 'the (ε, δ) a DP-SGD training plan would spend', help: dpEpsilon.help, run: args => dpEpsilon.run(args) })

export { main } from './main.ts'
