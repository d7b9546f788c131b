/**
 * Section fleet: 120 databases each with hstore 1.4, pg_trgm 1.3 and citext 1.4, brought to their
 * defaults three ways, each on its own copy of the fleet in the same run:
 * - the naive loop: one psql per database with every ALTER EXTENSION in one -c, one after another;
 * - the careful loop: a fresh `psql -X -c` per extension (as TimescaleDB's docs demand);
 * - execute with concurrency 4, given the dry-run's plan, as the workflow runs it (re-inspection
 *   under an advisory lock, a fresh session per update, version check, report).
 * Also the dry-run of the whole fleet (its own target), the one-step execute that plans itself
 * (on a fourth copy), and the heap the tool keeps per database.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { startCluster, SUPERUSER, SUPERUSER_PASSWORD, type Cluster } from '../../__tests__/harness/postgres.js'
import { silentLogger } from '../../src/core/logger.js'
import { runMode } from '../../src/modes/index.js'
import { countWire, environment, ms, table, verdict, type Section } from './framework.js'

const FLEET = 120
const EXTENSIONS = { hstore: '1.4', pg_trgm: '1.3', citext: '1.4' }
const TARGETS = { ratioNaive: 1.0, ratioCareful: 0.5, dryRunMs: 2000 }

function psql(cluster: Cluster, database: string, sql: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(cluster.info.binDir, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(cluster.port), '-U', SUPERUSER, '-d', database, '-c', sql], {
      env: { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD },
      stdio: ['ignore', 'ignore', 'pipe']
    })
    let stderr = ''
    child.stderr.on('data', (chunk) => (stderr += chunk))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`psql on ${database}: ${stderr}`))))
  })
}

async function makeFleet(cluster: Cluster, prefix: string, template: string): Promise<string[]> {
  const names = Array.from({ length: FLEET }, (_, i) => `${prefix}_${String(i + 1).padStart(3, '0')}`)
  for (const name of names) await cluster.query(`CREATE DATABASE ${name} TEMPLATE ${template}`)
  return names
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const start = performance.now()
  await work()
  return performance.now() - start
}

/** Three rounds, each on fresh copies: a round's three figures share the machine's state, so their ratio is fair. */
const ROUNDS = 3

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

/** Peak heap while a dry-run of `pattern` runs, above the heap before it (sampled every 5 ms). */
async function peakHeapOfDryRun(cluster: Cluster, pattern: string): Promise<{ peakBytes: number; planBytes: number }> {
  const before = process.memoryUsage().heapUsed
  let peak = before
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 5)
  const result = await runMode({ mode: 'dry-run', 'database-url': cluster.url('postgres'), databases: pattern, concurrency: '4' }, silentLogger)
  clearInterval(timer)
  peak = Math.max(peak, process.memoryUsage().heapUsed)
  if (result.status !== 'dry_run_approved') throw new Error(`dry-run: ${result.error}`)
  return { peakBytes: peak - before, planBytes: Buffer.byteLength(JSON.stringify(result.plan)) }
}

export const fleetSection: Section = {
  name: 'fleet',
  description: `${FLEET} databases upgraded to their defaults: execute (concurrency 4) vs the naive and careful psql loops`,
  async run() {
    const cluster = await startCluster({ settings: { max_connections: 200 } })
    try {
      const template = 'bench_fleet_template'
      await cluster.createDatabase(template, EXTENSIONS)
      const alters = Object.keys(EXTENSIONS).map((name) => `ALTER EXTENSION ${name} UPDATE`)
      const names = Object.keys(EXTENSIONS).join(',')
      const execute = async (inputs: Record<string, string>) => {
        let status = ''
        const counted = await countWire(() =>
          timed(async () => {
            const result = await runMode({ mode: 'execute', 'database-url': cluster.url('postgres'), concurrency: '4', ...inputs }, silentLogger)
            status = result.status
          })
        )
        if (status !== 'success') throw new Error(`execute ended ${status}`)
        return counted
      }

      const rounds: Array<{ naiveMs: number; carefulMs: number; dryRunMs: number; executeMs: number; executeSessions: number; dryRunSessions: number }> = []
      for (let round = 1; round <= ROUNDS; round++) {
        const naive = await makeFleet(cluster, `naive${round}`, template)
        const careful = await makeFleet(cluster, `careful${round}`, template)
        await makeFleet(cluster, `ours${round}`, template)
        let plan = ''
        const dryRun = await countWire(() =>
          timed(async () => {
            const result = await runMode({ mode: 'dry-run', 'database-url': cluster.url('postgres'), databases: `ours${round}_*`, extensions: names, concurrency: '4' }, silentLogger)
            plan = JSON.stringify(result.plan)
          })
        )
        const naiveMs = await timed(async () => {
          for (const db of naive) await psql(cluster, db, alters.join('; '))
        })
        const carefulMs = await timed(async () => {
          for (const db of careful) for (const statement of alters) await psql(cluster, db, statement)
        })
        const ours = await execute({ plan })
        rounds.push({ naiveMs, carefulMs, dryRunMs: dryRun.value, executeMs: ours.value, executeSessions: ours.connections, dryRunSessions: dryRun.connections })
      }
      await makeFleet(cluster, 'onestep', template)
      const oneStep = await execute({ databases: 'onestep_*', extensions: names })
      await makeFleet(cluster, 'heap', template)
      const small = await peakHeapOfDryRun(cluster, 'heap_01*')
      const large = await peakHeapOfDryRun(cluster, 'heap_*')

      const ratioNaive = median(rounds.map((r) => r.executeMs / r.naiveMs))
      const ratioCareful = median(rounds.map((r) => r.executeMs / r.carefulMs))
      const dryRunMs = median(rounds.map((r) => r.dryRunMs))
      const pick = (key: keyof (typeof rounds)[number]) => median(rounds.map((r) => r[key]))
      const met = { naive: ratioNaive <= TARGETS.ratioNaive, careful: ratioCareful <= TARGETS.ratioCareful, dryRun: dryRunMs < TARGETS.dryRunMs }
      const markdown = [
        `${ROUNDS} rounds, each on fresh copies of the fleet; medians.`,
        '',
        table(
          ['', 'total', 'per database', 'sessions'],
          [
            ['naive loop: one psql per database, 3 ALTERs in one -c', ms(pick('naiveMs')), ms(pick('naiveMs') / FLEET), String(FLEET)],
            ['careful loop: a fresh psql -X per extension', ms(pick('carefulMs')), ms(pick('carefulMs') / FLEET), String(FLEET * 3)],
            [`dry-run of the ${FLEET} databases, concurrency 4`, ms(dryRunMs), ms(dryRunMs / FLEET), String(pick('dryRunSessions'))],
            ['execute with that plan, concurrency 4 (the envelope)', ms(pick('executeMs')), ms(pick('executeMs') / FLEET), String(pick('executeSessions'))],
            ['execute with extensions: plans first, then applies (one step, once)', ms(oneStep.value), ms(oneStep.value / FLEET), String(oneStep.connections)]
          ]
        ),
        '',
        `rounds (execute / naive): ${rounds.map((r) => (r.executeMs / r.naiveMs).toFixed(2)).join(', ')}`,
        `execute / naive = ${ratioNaive.toFixed(2)} (target ≤ ${TARGETS.ratioNaive}) ${verdict(met.naive)}`,
        `execute / careful = ${ratioCareful.toFixed(2)} (target ≤ ${TARGETS.ratioCareful}) ${verdict(met.careful)}`,
        `dry-run of ${FLEET} databases: ${ms(dryRunMs)} (target < ${TARGETS.dryRunMs} ms) ${verdict(met.dryRun)}`,
        `peak heap during a dry-run: ${(small.peakBytes / 1024 / 1024).toFixed(1)} MiB for 10 databases, ${(large.peakBytes / 1024 / 1024).toFixed(1)} MiB for ${FLEET}; plan JSON ${(small.planBytes / 10 / 1024).toFixed(1)} vs ${(large.planBytes / FLEET / 1024).toFixed(1)} KiB per database`
      ].join('\n')
      return {
        markdown,
        json: {
          environment: environment(),
          databases: FLEET,
          extensions: EXTENSIONS,
          rounds,
          naiveMs: Math.round(pick('naiveMs')),
          carefulMs: Math.round(pick('carefulMs')),
          executeMs: Math.round(pick('executeMs')),
          executeSessions: pick('executeSessions'),
          dryRunMs: Math.round(dryRunMs),
          oneStepExecuteMs: Math.round(oneStep.value),
          oneStepSessions: oneStep.connections,
          ratioNaive: Math.round(ratioNaive * 100) / 100,
          ratioCareful: Math.round(ratioCareful * 100) / 100,
          heap: { databases10: small, [`databases${FLEET}`]: large }
        },
        missed: [
          ...(met.naive ? [] : [`fleet execute/naive ${ratioNaive.toFixed(2)} > ${TARGETS.ratioNaive}`]),
          ...(met.careful ? [] : [`fleet execute/careful ${ratioCareful.toFixed(2)} > ${TARGETS.ratioCareful}`]),
          ...(met.dryRun ? [] : [`fleet dry-run ${dryRunMs.toFixed(0)} ms ≥ ${TARGETS.dryRunMs} ms`])
        ]
      }
    } finally {
      await cluster.destroy()
    }
  }
}
