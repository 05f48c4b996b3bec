#!/usr/bin/env node
// Entry point of the `medmesh` command. Plain JavaScript on purpose: it must run on any Node
// far enough to say, clearly, that medmesh needs Node >= 22.18 (which runs the TypeScript
// sources directly). The npm scripts already use the Node 22 that `npm install` puts in
// node_modules/.bin.
import { nodeVersionProblem } from './node-version.js'

const problem = nodeVersionProblem(process.versions.node)
if (problem !== null) {
  process.stderr.write(problem)
  process.exit(78) // EX_CONFIG
}
const { main } = await import('../src/cli/index.ts')
process.exitCode = await main(process.argv.slice(2))
