/**
 * Hospitals behind NAT, in network namespaces this test makes and removes: two reachable members
 * (A, B) on a shared "internet" bridge, and two hospitals (H1, H2) each behind its own router that
 * masquerades outbound traffic and drops every new inbound connection. Each member knows only A
 * and B as bootstrap peers. The hospitals find out that no member can dial them back, listen
 * through relays on A and B, and reach each other through them; A is killed after round 1, and
 * the three left (threshold 3) must go on through B.
 *
 * Needs root, iproute2 and nftables (.ci/run installs nftables); elsewhere it prints why it is
 * skipped (test/helpers/skip.ts), which .ci/run counts.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DataDir } from '../../src/node/datadir.ts'
import { hex } from '../../src/protocol/codec.ts'
import { testUnless } from '../helpers/skip.ts'
import { BIN, cli, messages, waitFor, withTimeout, type Running } from './cluster.ts'

const tag = `m${process.pid % 100000}`
const ns = (x: string): string => `${tag}${x}`
const NAMESPACES = ['wan', 'a', 'b', 'r1', 'r2', 'h1', 'h2'].map(ns)

function sh (cmd: string): void {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr.trim()}`)
}

function cannotRun (): string | null {
  if (process.platform !== 'linux') return 'not Linux'
  if (process.getuid?.() !== 0) return 'not root (network namespaces need CAP_SYS_ADMIN)'
  for (const tool of ['ip', 'nft']) if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`
  try { sh(`ip netns add ${ns('probe')}`); sh(`ip netns del ${ns('probe')}`) } catch (e) { return `cannot make a network namespace: ${(e as Error).message}` }
  return null
}

/** The topology; every namespace it makes is in NAMESPACES, and removing them removes every interface. */
function buildTopology (): void {
  for (const n of NAMESPACES) { sh(`ip netns add ${n}`); sh(`ip -n ${n} link set lo up`) }
  const wan = ns('wan')
  sh(`ip -n ${wan} link add br0 type bridge && ip -n ${wan} link set br0 up`)
  const onWan: Array<[string, string]> = [['a', '10.99.0.1'], ['b', '10.99.0.2'], ['r1', '10.99.0.11'], ['r2', '10.99.0.12']]
  for (const [x, ip] of onWan) {
    sh(`ip -n ${ns(x)} link add wan type veth peer name ${x}w netns ${wan}`)
    sh(`ip -n ${wan} link set ${x}w master br0 up`)
    sh(`ip -n ${ns(x)} addr add ${ip}/24 dev wan && ip -n ${ns(x)} link set wan up`)
  }
  for (const i of [1, 2]) {
    const [r, h] = [ns(`r${i}`), ns(`h${i}`)]
    sh(`ip -n ${r} link add lan type veth peer name eth0 netns ${h}`)
    sh(`ip -n ${r} addr add 192.168.${i}.1/24 dev lan && ip -n ${r} link set lan up`)
    sh(`ip -n ${h} addr add 192.168.${i}.2/24 dev eth0 && ip -n ${h} link set eth0 up && ip -n ${h} route add default via 192.168.${i}.1`)
    sh(`ip netns exec ${r} sysctl -qw net.ipv4.ip_forward=1`)
    // masquerade out; forward only what the hospital started; nothing new comes in
    sh(`ip netns exec ${r} nft -f - <<'EOF'
table ip nat {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade
  }
}
table inet fw {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state new drop
  }
}
EOF`)
  }
}

function removeTopology (): string[] {
  const left: string[] = []
  for (const n of NAMESPACES) {
    const r = spawnSync('ip', ['netns', 'del', n], { encoding: 'utf8' })
    if (r.status !== 0 && !/No such file/.test(r.stderr)) left.push(`${n}: ${r.stderr.trim()}`)
  }
  return left
}

interface Member { name: string, ns: string, ip: string, dir: string, id: string }

function startIn (m: Member): Running & { proc: ChildProcess } {
  const proc = spawn('ip', ['netns', 'exec', m.ns, process.execPath, BIN, 'start', '--data-dir', m.dir], { env: { ...process.env, MEDMESH_LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] })
  const log: string[] = []
  let buf = ''
  const onData = (chunk: Buffer): void => { buf += chunk.toString('utf8'); const lines = buf.split('\n'); buf = lines.pop()!; log.push(...lines) }
  proc.stdout!.on('data', onData); proc.stderr!.on('data', onData)
  return { proc, log, exit: new Promise(resolve => proc.on('exit', code => resolve(code))) }
}

const entries = (r: Running): Array<Record<string, any>> => r.log.flatMap(l => { try { return [JSON.parse(l)] } catch { return [] } })

testUnless(test, cannotRun(), 'two hospitals behind NAT reach each other through relays on reachable members, and go on through one when the other is killed', async () => {
  const root = mkdtempSync(join(tmpdir(), 'medmesh-nat-'))
  const members: Member[] = [['A', 'a', '10.99.0.1'], ['B', 'b', '10.99.0.2'], ['H1', 'h1', '192.168.1.2'], ['H2', 'h2', '192.168.2.2']]
    .map(([name, x, ip]) => ({ name, ns: ns(x), ip, dir: join(root, name), id: '' }))
  const nodes: Running[] = []
  try {
    buildTopology()
    for (const m of members) {
      const r = cli('init', '--data-dir', m.dir)
      if (r.status !== 0) throw new Error(r.stderr)
      m.id = r.stdout.trim()
    }
    const manifest = join(root, 'manifest.json')
    const made = cli('manifest', 'create', '--name', 'nat consortium', ...members.flatMap(m => ['--member', `${m.id}=${m.name}`]), '--threshold', '3', '--phase-ms', '4000', '--round-ms', '90000', '--out', manifest)
    if (made.status !== 0) throw new Error(made.stderr)
    const reachable = members.slice(0, 2)
    for (const m of members) {
      const signed = cli('manifest', 'sign', '--data-dir', m.dir, manifest)
      if (signed.status !== 0) throw new Error(signed.stderr)
    }
    members.forEach((m, i) => {
      const boot = reachable.filter(r => r !== m).flatMap(r => ['--bootstrap', `/ip4/${r.ip}/tcp/4001/p2p/${r.id}`])
      const r = cli('join', '--data-dir', m.dir, '--manifest', manifest, '--listen', `/ip4/${m.ip}/tcp/4001`, '--http', '127.0.0.1:8080',
        '--shard', `${i}/4`, '--epochs', '0.15', '--rounds', '5', ...boot)
      if (r.status !== 0) throw new Error(r.stderr)
    })
    // the router really drops inbound: A cannot open a connection to H1
    const probe = spawnSync('ip', ['netns', 'exec', ns('a'), process.execPath, '-e', "const s=require('net').connect(4001,'10.99.0.11');s.setTimeout(1500,()=>{console.log('timeout');process.exit(0)});s.on('connect',()=>{console.log('connected');process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(0)})"], { encoding: 'utf8' })
    assert.is(probe.stdout.trim(), 'timeout', 'a new inbound connection to the router is dropped')

    nodes.push(...members.map(startIn))
    const [A, B, H1, H2] = nodes
    const said = (r: Running, re: RegExp): boolean => messages(r).some(m => re.test(m))
    await waitFor(() => said(A, /^reachable: members can dial/) && said(B, /^reachable: members can dial/), 60_000, 'A and B to find that they are reachable')
    await waitFor(() => said(H1, /^not reachable from other members/) && said(H2, /^not reachable from other members/), 60_000, 'H1 and H2 to find that they are not')
    const linked = (r: Running, peer: string, link: string): boolean => entries(r).some(e => String(e.msg).startsWith('member connected') && e.peer === peer && e.link === link)
    await waitFor(() => linked(H1, members[3].id, 'relayed') || linked(H2, members[2].id, 'relayed'), 90_000, 'H1 and H2 to connect through a relay')
      .catch((e: Error) => { throw new Error(`${e.message}; H1 said: ${messages(H1).slice(-15).join(' | ')}`) })

    // /status says so too (asked inside H1's namespace: its endpoint is on its own loopback)
    const status = JSON.parse(spawnSync('ip', ['netns', 'exec', ns('h1'), process.execPath, '-e', "fetch('http://127.0.0.1:8080/status').then(r=>r.text()).then(t=>console.log(t))"], { encoding: 'utf8' }).stdout)
    assert.is(status.reachable, 'relayed', 'H1 is reachable through relays')
    const h1Links = Object.fromEntries(status.memberLinks.map((m: { name: string, link: string }) => [m.name, m.link]))
    assert.equal([h1Links.A, h1Links.B], ['direct', 'direct'])
    console.log(`nat.test.ts: H1 /status: reachable ${status.reachable}, links ${JSON.stringify(h1Links)}`)

    await waitFor(() => said(B, /^round 1 certified/), 240_000, 'round 1 to be certified')
    const killedAt = Date.now()
    A.proc.kill('SIGKILL')
    await A.exit
    await waitFor(() => entries(B).some(e => /^round \d+ certified/.test(String(e.msg)) && Number(e.time) > killedAt), 180_000, 'a round certified after A was killed')
      .catch((e: Error) => { throw new Error(`${e.message}; B said: ${messages(B).slice(-15).join(' | ')}`) })
    const next = entries(B).find(e => /^round \d+ certified/.test(String(e.msg)) && Number(e.time) > killedAt)!
    console.log(`nat.test.ts: A killed; next certified round (${next.round}) ${((Number(next.time) - killedAt) / 1000).toFixed(1)} s later`)

    const codes = await withTimeout(Promise.all([B, H1, H2].map(n => n.exit)), 400_000, 'B, H1 and H2 to finish')
    assert.equal(codes, [0, 0, 0], [B, H1, H2].map(n => messages(n).slice(-8).join(' | ')).join('\n'))

    // every round certified once: one certificate per round across every data directory (A's too)
    const ledgers = members.map(m => new DataDir(m.dir).ledger(new DataDir(m.dir).manifest()))
    const byRound = new Map<number, Set<string>>()
    for (const l of ledgers) for (const e of l.entries) byRound.set(e.header.round, (byRound.get(e.header.round) ?? new Set()).add(hex(e.hash)))
    for (const [round, certs] of byRound) assert.is(certs.size, 1, `one certificate for round ${round}`)
    const last = ledgers[1].entries
    const index = (m: Member): number => ledgers[1].manifest.members.findIndex(x => x.peerId === m.id)
    const after = last.filter(e => e.header.round > (next.round as number) - 1)
    for (const e of after) {
      assert.ok(e.header.survivors.includes(index(members[2])) && e.header.survivors.includes(index(members[3])), `H1 and H2 took part in round ${e.header.round}: survivors ${e.header.survivors}`)
      assert.not.ok(e.header.survivors.includes(index(members[0])), 'A did not')
    }
    for (const [who, r] of [['H1', H1], ['H2', H2]] as const) {
      const links = entries(r).filter(e => String(e.msg).startsWith('member connected')).map(e => `${e.name}:${e.link}`)
      console.log(`nat.test.ts: ${who} connections: ${links.join(', ')}`)
    }
    const certifiedAt = entries(B).filter(e => /^round \d+ certified/.test(String(e.msg))).map(e => [e.round as number, Number(e.time)] as const)
    console.log(`nat.test.ts: B's round times (s; A killed in round ${next.round}): ${certifiedAt.slice(1).map(([r, t], i) => `${r}:${((t - certifiedAt[i][1]) / 1000).toFixed(1)}`).join(' ')}`)
    console.log(`nat.test.ts: rounds ${last.map(e => `${e.header.round}[${e.header.survivors.map(i => ledgers[1].manifest.members[i].name).join(' ')}]`).join(', ')}`)
  } finally {
    for (const n of nodes) n.proc.kill('SIGKILL')
    await Promise.all(nodes.map(n => n.exit))
    const left = removeTopology()
    rmSync(root, { recursive: true, force: true })
    assert.equal(left, [], 'every namespace removed')
  }
})

test.run()
