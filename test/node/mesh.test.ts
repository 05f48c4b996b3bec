/**
 * Members reach each other without a hub: three nodes on 127.0.0.1 where members 1 and 2 know
 * only member 0 (their one bootstrap peer) and member 0 knows nobody. From member 0's gossip they
 * learn each other's signed address records and connect directly; then member 0 is killed, and the
 * two of them (threshold 2) go on certifying rounds.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { rmSync } from 'node:fs'
import { makeCluster, startNode, messages, logged, waitFor, withTimeout, checkDataDir, type Running } from './cluster.ts'

/** the line the status service logs for a certificate */
const certified = (round: number) => ({ round, certificate: (h: unknown) => typeof h === 'string' })

test('members that know only their bootstrap peer learn each other\'s addresses, connect directly, and go on without it', async () => {
  const c = await makeCluster(3, { threshold: 2, rounds: 5, bootstrapOf: i => i === 0 ? [] : [0] })
  const nodes: Running[] = c.dirs.map(startNode)
  try {
    const connected = (i: number, j: number): boolean => logged(nodes[i], { connected: true, peer: c.ids[j] })
    await waitFor(() => connected(1, 2) && connected(2, 1), 60_000, 'members 1 and 2 to connect to each other')
    // whichever dialled first learnt the other's addresses from a record passed on by member 0
    const learnt = (i: number, j: number): boolean => logged(nodes[i], { peer: c.ids[j], addresses: Array.isArray, level: 30 })
    assert.ok(learnt(1, 2) || learnt(2, 1), 'member 1 or 2 learnt the other\'s addresses from a record')
    await waitFor(() => logged(nodes[1], certified(1)), 180_000, 'round 1 to be certified')
    nodes[0].proc.kill('SIGKILL')
    await nodes[0].exit
    const codes = await withTimeout(Promise.all([nodes[1].exit, nodes[2].exit]), 300_000, 'members 1 and 2 to finish without member 0')
    assert.equal(codes, [0, 0], [1, 2].map(i => messages(nodes[i]).slice(-8).join(' | ')).join('\n'))
    const [r1, r2] = [c.dirs[1], c.dirs[2]].map(checkDataDir)
    assert.ok(r1.updates >= 4, `${r1.updates} update rounds`)
    assert.is(r1.head, r2.head, 'one ledger head')
    assert.ok(logged(nodes[1], certified(4)), 'rounds went on after member 0 was gone')
  } finally {
    for (const n of nodes) n.proc.kill('SIGKILL')
    rmSync(c.root, { recursive: true, force: true })
  }
})

test.run()
