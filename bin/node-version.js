// Plain JavaScript, loadable by any Node: says whether this Node can run medmesh's TypeScript.
export const MIN_NODE = [22, 18]

/** null if `version` (like "22.23.3") is new enough, else a message for the user. */
export function nodeVersionProblem (version) {
  const [major, minor] = String(version).split('.').map(Number)
  if (major > MIN_NODE[0] || (major === MIN_NODE[0] && minor >= MIN_NODE[1])) return null
  return `medmesh needs Node.js ${MIN_NODE.join('.')} or newer; this is Node.js ${version}.\n` +
    'Run it through npm (npm start, npm run medmesh -- <args>), which uses the Node 22 installed\n' +
    'in node_modules by `npm install`, or install Node 22 LTS.\n'
}
