/**
 * Across real processes: the network splits the consortium in two and heals. Safety: no two
 * certificates for one round anywhere. Liveness: the majority side goes on during the split, and
 * after the heal the minority catches up and takes part again.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DataDir } from '../../src/node/datadir.ts'
import { hex } from '../../src/protocol/codec.ts'
import { makeCluster, startNode, messages, waitFor, withTimeout, checkDataDir, lastMessages, type Running } from '../node/cluster.ts'

function setDeny (dir: string, deny: string[]): void {
  const file = join(dir, 'config.json')
  const config = JSON.parse(readFileSync(file, 'utf8'))
  writeFileSync(file, JSON.stringify({ ...config, deny }, null, 2))
}

const certifiedRounds = (r: Running): number[] => messages(r).flatMap(m => { const x = /^round (\d+) certified/.exec(m); return x === null ? [] : [Number(x[1])] })

test('a partition into 2 and 3 members, then a heal: the 3 go on, the 2 certify nothing, then all agree and the 2 take part again', async () => {
  const c = await makeCluster(5, { threshold: 3, rounds: 7, phaseMs: 3000 })
  const nodes: Running[] = c.dirs.map(startNode)
  const minority = [0, 1]; const majority = [2, 3, 4]
  try {
    await waitFor(() => nodes.every(n => certifiedRounds(n).includes(1)), 180_000, 'every node to certify round 1', () => lastMessages(nodes))
    // split: each side refuses the other (the nodes' deny lists, reloaded on SIGHUP)
    for (const i of minority) setDeny(c.dirs[i], majority.map(j => c.ids[j]))
    for (const i of majority) setDeny(c.dirs[i], minority.map(j => c.ids[j]))
    for (const n of nodes) n.proc.kill('SIGHUP')
    await waitFor(() => nodes.every(n => messages(n).some(m => /deny list reloaded: 2|deny list reloaded: 3/.test(m))), 30_000, 'the deny lists to be reloaded', () => lastMessages(nodes))
    const splitAt = Math.max(...nodes.map(n => Math.max(...certifiedRounds(n))))
    await waitFor(() => majority.every(i => certifiedRounds(nodes[i]).includes(splitAt + 2)), 240_000, 'the majority to certify two rounds during the split', () => lastMessages(nodes))
    const minorityDuring = minority.map(i => Math.max(...certifiedRounds(nodes[i])))
    // heal
    for (const i of [...minority, ...majority]) setDeny(c.dirs[i], [])
    for (const n of nodes) n.proc.kill('SIGHUP')
    const codes = await withTimeout(Promise.all(nodes.map(n => n.exit)), 420_000, 'every node to finish its rounds')
    assert.equal(codes, [0, 0, 0, 0, 0], nodes.map(n => messages(n).slice(-4).join(' | ')).join('\n'))
    // the minority could not certify while split: at most the round under way when it split
    for (const [k, i] of minority.entries()) assert.ok(minorityDuring[k] <= splitAt + 1, `member ${i} certified up to ${minorityDuring[k]} during the split (split at ${splitAt})`)
    // safety: one certificate per round across all ledgers
    const byRound = new Map<number, Set<string>>()
    for (const d of c.dirs) {
      checkDataDir(d)
      const ledger = new DataDir(d).ledger(new DataDir(d).manifest())
      for (const e of ledger.entries) { if (!byRound.has(e.header.round)) byRound.set(e.header.round, new Set()); byRound.get(e.header.round)!.add(hex(e.hash)) }
    }
    assert.ok([...byRound.values()].every(s => s.size === 1), 'no two certificates for one round')
    // liveness after the heal: a round after the split includes a minority member
    const ledger = new DataDir(c.dirs[2]).ledger(new DataDir(c.dirs[2]).manifest())
    const healed = ledger.entries.filter(e => e.header.round > splitAt + 2 && e.header.survivors.some(u => minority.map(i => c.ids[i]).includes(ledger.manifest.members[u].peerId)))
    assert.ok(healed.length > 0, `a minority member takes part after the heal: ${ledger.entries.map(e => `${e.header.round}:${e.header.survivors}`).join(' ')}`)
  } finally {
    for (const n of nodes) n.proc.kill('SIGKILL')
    rmSync(c.root, { recursive: true, force: true })
  }
})

test.run()
