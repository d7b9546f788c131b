/**
 * Section fleet: 40 and 120 tenant databases, each with hstore 1.4, pg_trgm 1.3 and citext 1.4 to
 * bring to their defaults, side by side in one run; 120 also through a loopback proxy that adds
 * 5 ms each way. Contenders, each on its own copy of the fleet:
 * - the naive loop: one `psql -c` per database with every ALTER EXTENSION, one after another;
 * - the careful loop: a fresh `psql -X -c` per extension (as TimescaleDB's docs demand);
 * - dry-run of the fleet (default concurrency);
 * - one-step execute (`extensions:` given: plans, then applies; default concurrency);
 * - the same with every update on a fresh session (the first-statement path, which every update
 *   took before updates moved onto the coordinator), for before/after in one run.
 * For each: wall time, the server's CPU (every backend's utime + stime, read from /proc through the
 * postmaster), and the sessions it started (log_connections, by application_name).
 * Also the heap the tool keeps per database during a dry-run.
 */
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { startCluster, SUPERUSER, SUPERUSER_PASSWORD, type Cluster } from '../../__tests__/harness/postgres.js'
import { silentLogger } from '../../src/core/logger.js'
import { runMode } from '../../src/modes/index.js'
import { environment, ms, table, verdict, type Section } from './framework.js'

const SIZES = [40, 120]
export const EXTENSIONS = { hstore: '1.4', pg_trgm: '1.3', citext: '1.4' }
export const PROXY_DELAY_MS = 5
const TARGETS = { cpuVsNaive: 1.2, dryRunCpuMs: 10, wallVsNaive: 1.0, wallVsNaiveProxy: 0.5 }
/** /proc/<pid>/stat counts CPU time in clock ticks (getconf CLK_TCK: 100 on Linux). */
const TICK_MS = 10

// ─────────────────────────── the server's CPU ───────────────────────────

export function postmasterPid(cluster: Cluster): number {
  return Number(readFileSync(join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
}

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces): [0] is state. */
function statFields(pid: number | string): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return text.slice(text.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

/**
 * CPU the server has used, in ms: the postmaster's reaped children (cutime + cstime: every backend
 * that has exited) plus the live children's utime + stime. The postmaster's own time is left out
 * (it only forks).
 */
function serverCpuMs(postmaster: number): number {
  const own = statFields(postmaster)
  if (!own) throw new Error(`postmaster ${postmaster} is gone`)
  // After the command: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
  let ticks = Number(own[13]) + Number(own[14])
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const fields = statFields(entry)
    if (fields && Number(fields[1]) === postmaster) ticks += Number(fields[11]) + Number(fields[12])
  }
  return ticks * TICK_MS
}

// ─────────────────────────── sessions started ───────────────────────────

/** Sessions started since `offset` in the server log, by application_name (log_line_prefix '%a|'). */
function sessionsSince(cluster: Cluster, offset: number): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const line of cluster.log().slice(offset).split('\n')) {
    const match = /^([^|]*)\|LOG:\s+connection authorized:.*?(?:application_name=(\S+))?$/.exec(line)
    if (!match) continue
    const application = match[2] ?? (match[1] || '(none)')
    counts[application] = (counts[application] ?? 0) + 1
  }
  return counts
}

// ─────────────────────────── the latency proxy ───────────────────────────

/** A TCP proxy on 127.0.0.1 that delays every chunk by `delayMs` in each direction. */
export async function startProxy(targetPort: number, delayMs: number): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const delayed = (from: Socket, to: Socket) => {
    from.on('data', (chunk) => setTimeout(() => to.write(chunk), delayMs))
    from.on('end', () => setTimeout(() => to.end(), delayMs))
    from.on('error', () => to.destroy())
  }
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort })
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.setNoDelay(true)
      socket.on('close', () => sockets.delete(socket))
    }
    delayed(client, upstream)
    delayed(upstream, client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (!address || typeof address === 'string') throw new Error('the proxy has no port')
  return {
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
  }
}

// ─────────────────────────── contenders ───────────────────────────

function psql(cluster: Cluster, port: number, database: string, sql: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(cluster.info.binDir, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', SUPERUSER, '-d', database, '-c', sql], {
      env: { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD },
      stdio: ['ignore', 'ignore', 'pipe']
    })
    let stderr = ''
    child.stderr.on('data', (chunk) => (stderr += chunk))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`psql on ${database}: ${stderr}`))))
  })
}

export async function makeFleet(cluster: Cluster, prefix: string, size: number, template: string): Promise<string[]> {
  const names = Array.from({ length: size }, (_, i) => `${prefix}_${String(i + 1).padStart(3, '0')}`)
  for (const name of names) await cluster.query(`CREATE DATABASE ${name} TEMPLATE ${template}`)
  return names
}

export interface Cost {
  wallMs: number
  cpuMs: number
  sessions: Record<string, number>
}

/** Wall time, server CPU and sessions of `work`; the server is let settle first (no backend busy). */
export async function cost(cluster: Cluster, postmaster: number, work: () => Promise<void>): Promise<Cost> {
  await new Promise((resolve) => setTimeout(resolve, 300))
  const offset = cluster.log().length
  const cpuBefore = serverCpuMs(postmaster)
  const start = performance.now()
  await work()
  const wallMs = performance.now() - start
  // Backends that were told to end may still be exiting: let them, so their time is counted.
  await new Promise((resolve) => setTimeout(resolve, 300))
  return { wallMs, cpuMs: serverCpuMs(postmaster) - cpuBefore, sessions: sessionsSince(cluster, offset) }
}

/** Peak heap while a dry-run of `pattern` runs, above the heap before it (sampled every 5 ms). */
async function peakHeapOfDryRun(url: string, pattern: string): Promise<{ peakBytes: number; planBytes: number }> {
  const before = process.memoryUsage().heapUsed
  let peak = before
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 5)
  const result = await runMode({ mode: 'dry-run', 'database-url': url, databases: pattern }, silentLogger)
  clearInterval(timer)
  peak = Math.max(peak, process.memoryUsage().heapUsed)
  if (result.status !== 'dry_run_approved' && result.status !== 'nothing_to_do') throw new Error(`dry-run: ${result.error}`)
  return { peakBytes: peak - before, planBytes: Buffer.byteLength(JSON.stringify(result.plan)) }
}

type Contender = 'naive' | 'careful' | 'dryRun' | 'execute' | 'executeFresh'
const LABELS: Record<Contender, string> = {
  naive: 'naive loop: one psql -c per database, 3 ALTERs',
  careful: 'careful loop: a fresh psql -X per extension',
  dryRun: 'dry-run (default concurrency)',
  execute: 'one-step execute: plans, then applies, updates on the coordinator (default concurrency)',
  executeFresh: 'one-step execute, every update on a fresh session (first-statement-extensions: all three; the path every update took before)'
}

type Scenario = { size: number; link: 'direct' | 'proxy'; results: Record<Contender, Cost> }

async function runScenario(cluster: Cluster, postmaster: number, size: number, link: Scenario['link'], port: number, template: string): Promise<Scenario> {
  const tag = `${link === 'direct' ? 'd' : 'p'}${size}`
  const url = (database: string) => cluster.url(database).replace(`:${cluster.port}/`, `:${port}/`)
  const naive = await makeFleet(cluster, `naive_${tag}`, size, template)
  const careful = await makeFleet(cluster, `careful_${tag}`, size, template)
  await makeFleet(cluster, `ours_${tag}`, size, template)
  await makeFleet(cluster, `fresh_${tag}`, size, template)
  const alters = Object.keys(EXTENSIONS).map((name) => `ALTER EXTENSION ${name} UPDATE`)
  const names = Object.keys(EXTENSIONS).join(',')
  const results = {} as Record<Contender, Cost>
  results.naive = await cost(cluster, postmaster, async () => {
    for (const db of naive) await psql(cluster, port, db, alters.join('; '))
  })
  results.careful = await cost(cluster, postmaster, async () => {
    for (const db of careful) for (const statement of alters) await psql(cluster, port, db, statement)
  })
  results.dryRun = await cost(cluster, postmaster, async () => {
    const result = await runMode({ mode: 'dry-run', 'database-url': url('postgres'), databases: `ours_${tag}_*`, extensions: names }, silentLogger)
    if (result.status !== 'dry_run_approved') throw new Error(`dry-run ended ${result.status}: ${result.error}`)
  })
  results.execute = await cost(cluster, postmaster, async () => {
    const result = await runMode({ mode: 'execute', 'database-url': url('postgres'), databases: `ours_${tag}_*`, extensions: names }, silentLogger)
    if (result.status !== 'success') throw new Error(`execute ended ${result.status}: ${result.error}`)
  })
  results.executeFresh = await cost(cluster, postmaster, async () => {
    const result = await runMode(
      { mode: 'execute', 'database-url': url('postgres'), databases: `fresh_${tag}_*`, extensions: names, 'first-statement-extensions': names },
      silentLogger
    )
    if (result.status !== 'success') throw new Error(`execute ended ${result.status}: ${result.error}`)
  })
  return { size, link, results }
}

const perDb = (value: number, size: number) => value / size
const sessionText = (sessions: Record<string, number>, size: number) =>
  Object.entries(sessions)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([app, n]) => `${app} ${(n / size).toFixed(2)}`)
    .join(', ')
const total = (sessions: Record<string, number>) => Object.values(sessions).reduce((sum, n) => sum + n, 0)

function scenarioMarkdown(s: Scenario): string {
  return [
    `### ${s.size} databases, ${s.link === 'direct' ? 'direct (127.0.0.1)' : `through the proxy (+${PROXY_DELAY_MS} ms each way)`}`,
    '',
    table(
      ['contender', 'wall', 'server CPU', 'CPU per database', 'wall / naive', 'CPU / naive', 'sessions per database (by application_name)'],
      (Object.keys(LABELS) as Contender[]).map((c) => [
        LABELS[c],
        ms(s.results[c].wallMs),
        ms(s.results[c].cpuMs),
        ms(perDb(s.results[c].cpuMs, s.size)),
        (s.results[c].wallMs / s.results.naive.wallMs).toFixed(2),
        (s.results[c].cpuMs / s.results.naive.cpuMs).toFixed(2),
        `${(total(s.results[c].sessions) / s.size).toFixed(2)}: ${sessionText(s.results[c].sessions, s.size)}`
      ])
    ),
    ''
  ].join('\n')
}

export const fleetSection: Section = {
  name: 'fleet',
  description: `${SIZES.join(' and ')} databases to their defaults: one-step execute and dry-run vs the naive and careful psql loops, directly and through a ${PROXY_DELAY_MS} ms proxy; wall time, server CPU, sessions`,
  async run() {
    const cluster = await startCluster({
      settings: { max_connections: 200, autovacuum: 'off', log_connections: 'on', log_line_prefix: "'%a|'" }
    })
    const proxy = await startProxy(cluster.port, PROXY_DELAY_MS)
    try {
      const template = 'bench_fleet_template'
      await cluster.createDatabase(template, EXTENSIONS)
      const postmaster = postmasterPid(cluster)
      const scenarios: Scenario[] = []
      // Through the proxy only at the largest size: the wall-time target is set there.
      const plan: Array<[number, Scenario['link']]> = [...SIZES.map((size): [number, Scenario['link']] => [size, 'direct']), [Math.max(...SIZES), 'proxy']]
      for (const [size, link] of plan) {
        const scenario = await runScenario(cluster, postmaster, size, link, link === 'direct' ? cluster.port : proxy.port, template)
        scenarios.push(scenario)
        // Partial figures survive an interrupted run.
        process.stderr.write(`${scenarioMarkdown(scenario)}\n`)
      }
      const small = await peakHeapOfDryRun(cluster.url('postgres'), `ours_d${Math.max(...SIZES)}_01*`)
      const large = await peakHeapOfDryRun(cluster.url('postgres'), `ours_d${Math.max(...SIZES)}_*`)

      const ratio = (s: Scenario, key: 'wallMs' | 'cpuMs') => s.results.execute[key] / s.results.naive[key]
      const find = (size: number, link: Scenario['link']) => scenarios.find((s) => s.size === size && s.link === link)!
      const largest = Math.max(...SIZES)
      const figures = {
        cpuVsNaive: Math.max(...scenarios.filter((s) => s.link === 'direct').map((s) => ratio(s, 'cpuMs'))),
        dryRunCpuMs: Math.max(...scenarios.filter((s) => s.link === 'direct').map((s) => perDb(s.results.dryRun.cpuMs, s.size))),
        wallVsNaive: ratio(find(largest, 'direct'), 'wallMs'),
        wallVsNaiveProxy: ratio(find(largest, 'proxy'), 'wallMs')
      }
      const met = {
        cpuVsNaive: figures.cpuVsNaive <= TARGETS.cpuVsNaive,
        dryRunCpuMs: figures.dryRunCpuMs <= TARGETS.dryRunCpuMs,
        wallVsNaive: figures.wallVsNaive <= TARGETS.wallVsNaive,
        wallVsNaiveProxy: figures.wallVsNaiveProxy <= TARGETS.wallVsNaiveProxy
      }
      const markdown = [
        ...scenarios.map(scenarioMarkdown),
        `execute server CPU / naive (worst direct) = ${figures.cpuVsNaive.toFixed(2)} (target ≤ ${TARGETS.cpuVsNaive}) ${verdict(met.cpuVsNaive)}`,
        `dry-run server CPU per database (worst direct) = ${ms(figures.dryRunCpuMs)} (target ≤ ${TARGETS.dryRunCpuMs} ms) ${verdict(met.dryRunCpuMs)}`,
        `execute wall / naive, ${largest} databases direct = ${figures.wallVsNaive.toFixed(2)} (target ≤ ${TARGETS.wallVsNaive}) ${verdict(met.wallVsNaive)}`,
        `execute wall / naive, ${largest} databases through the proxy = ${figures.wallVsNaiveProxy.toFixed(2)} (target ≤ ${TARGETS.wallVsNaiveProxy}) ${verdict(met.wallVsNaiveProxy)}`,
        `peak heap during a dry-run: ${(small.peakBytes / 1024 / 1024).toFixed(1)} MiB for 10 databases, ${(large.peakBytes / 1024 / 1024).toFixed(1)} MiB for 120; plan JSON ${(small.planBytes / 10 / 1024).toFixed(1)} vs ${(large.planBytes / 120 / 1024).toFixed(1)} KiB per database`
      ].join('\n')
      const rounded = (c: Cost) => ({ wallMs: Math.round(c.wallMs), cpuMs: Math.round(c.cpuMs), sessions: c.sessions })
      return {
        markdown,
        json: {
          environment: environment(),
          extensions: EXTENSIONS,
          proxyDelayMs: PROXY_DELAY_MS,
          scenarios: scenarios.map((s) => ({ databases: s.size, link: s.link, ...Object.fromEntries(Object.entries(s.results).map(([c, r]) => [c, rounded(r)])) })),
          figures: Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, Math.round(v * 100) / 100])),
          targets: TARGETS,
          heap: { databases10: small, databases120: large }
        },
        missed: (Object.keys(met) as Array<keyof typeof met>).filter((k) => !met[k]).map((k) => `fleet ${k} ${figures[k].toFixed(2)} > ${TARGETS[k]}`)
      }
    } finally {
      await proxy.close()
      await cluster.destroy()
    }
  }
}
