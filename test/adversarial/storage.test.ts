/**
 * A data directory that fills up or cannot be written: a clear error, exit 74, no half-written
 * file, and after the fault is fixed the node restarts from what is there and catches up.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { atomicWrite } from '../../src/node/fsutil.ts'
import { makeCluster, startNode, messages, waitFor, withTimeout, checkDataDir, type Running } from '../node/cluster.ts'

/**
 * A folder on a small file system that the test can fill: a tmpfs when this process may mount one
 * (root with CAP_SYS_ADMIN, as on the CI machine), otherwise a folder made read-only (which only
 * binds a process that is not root). Either way writes into it fail, which is what is tested.
 */
function faultyFolder (path: string): { break: () => void, fix: () => void, how: string } {
  mkdirSync(path, { recursive: true })
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', path], { stdio: 'ignore' })
    const filler = join(path, 'filler')
    return {
      how: 'full disk (tmpfs)',
      break: () => { try { execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k'], { stdio: 'ignore' }) } catch { /* dd stops at ENOSPC */ } },
      fix: () => rmSync(filler, { force: true })
    }
  } catch {
    if (process.getuid?.() === 0) throw new Error('cannot make a faulty folder: root without permission to mount a tmpfs')
    return { how: 'read-only folder', break: () => { for (const d of ['', 'ledger', 'states']) try { chmodSync(join(path, d), 0o500) } catch {} }, fix: () => { for (const d of ['', 'ledger', 'states']) try { chmodSync(join(path, d), 0o700) } catch {} } }
  }
}

function release (path: string): void {
  try { execFileSync('umount', [path], { stdio: 'ignore' }) } catch {}
}

test('a write to a full or unwritable folder fails with the system error and leaves the old file and no temporary file', () => {
  const root = mkdtempSync(join(tmpdir(), 'medmesh-full-'))
  const dir = join(root, 'd')
  const f = faultyFolder(dir)
  try {
    const file = join(dir, 'state.bin')
    atomicWrite(file, 'the old, complete content')
    f.break()
    let code: string | undefined
    try { atomicWrite(file, new Uint8Array(4 << 20)) } catch (e) { code = (e as NodeJS.ErrnoException).code }
    assert.ok(code === 'ENOSPC' || code === 'EACCES', `${f.how}: the write failed with ${String(code)}`)
    assert.is(readFileSync(file, 'utf8'), 'the old, complete content')
    assert.equal(readdirSync(dir).filter(x => x.endsWith('.tmp')), [])
  } finally {
    f.fix(); release(dir); rmSync(root, { recursive: true, force: true })
  }
})

test('a node whose data directory fills up mid-run stops with a clear error (exit 74), its files intact; once freed it restarts and catches up', async () => {
  let fault: ReturnType<typeof faultyFolder> | null = null
  let faultyDir = ''
  const c = await makeCluster(3, { threshold: 2, rounds: 4, prepare: dirs => { faultyDir = dirs[2]; fault = faultyFolder(dirs[2]) } })
  const f = fault!
  const nodes: Running[] = c.dirs.map(startNode)
  try {
    await waitFor(() => messages(nodes[2]).some(m => /round 1 certified/.test(m)), 180_000, 'node 2 to certify round 1')
    f.break()
    const code = await withTimeout(nodes[2].exit, 180_000, 'node 2 to stop on the storage error')
    assert.is(code, 74, messages(nodes[2]).slice(-5).join(' | '))
    assert.ok(messages(nodes[2]).some(m => /cannot write to the data directory \((ENOSPC|EACCES)\)/.test(m)), `${f.how}: a clear error`)
    // the others go on without it
    await waitFor(() => messages(nodes[0]).some(m => /round [3-9] certified/.test(m)), 180_000, 'the others to certify later rounds')
    f.fix()
    checkDataDir(faultyDir) // every file there parses and verifies, no temporary file
    nodes[2] = startNode(faultyDir)
    const codes = await withTimeout(Promise.all(nodes.map(n => n.exit)), 300_000, 'all nodes to finish')
    assert.equal(codes, [0, 0, 0], nodes.map(n => messages(n).slice(-4).join(' | ')).join('\n'))
    const results = c.dirs.map(checkDataDir)
    assert.is(new Set(results.map(r => r.model)).size, 1, `the node that stopped ends with the others' model: ${JSON.stringify(results)}`)
  } finally {
    for (const n of nodes) n.proc.kill('SIGKILL')
    f.fix(); release(faultyDir)
    rmSync(c.root, { recursive: true, force: true })
  }
})

test.run()
