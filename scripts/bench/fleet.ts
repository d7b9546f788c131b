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

/** Heap kept after a dry-run of `count` databases (after GC), to show memory stays flat per database. */
async function heapAfterDryRun(cluster: Cluster, pattern: string): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  const before = process.memoryUsage().heapUsed
  const result = await runMode({ mode: 'dry-run', 'database-url': cluster.url('postgres'), databases: pattern }, silentLogger)
  gc?.()
  const after = process.memoryUsage().heapUsed
  if (result.status !== 'dry_run_approved') throw new Error(`dry-run: ${result.error}`)
  return after - before
}

export const fleetSection: Section = {
  name: 'fleet',
  description: `${FLEET} databases upgraded to their defaults: execute (concurrency 4) vs the naive and careful psql loops`,
  async run() {
    const cluster = await startCluster({ settings: { max_connections: 200 } })
    try {
      const template = 'bench_fleet_template'
      await cluster.createDatabase(template, EXTENSIONS)
      const naive = await makeFleet(cluster, 'naive', template)
      const careful = await makeFleet(cluster, 'careful', template)
      await makeFleet(cluster, 'ours', template)
      await makeFleet(cluster, 'onestep', template)
      const alters = Object.keys(EXTENSIONS).map((name) => `ALTER EXTENSION ${name} UPDATE`)
      const names = Object.keys(EXTENSIONS).join(',')

      let plan = ''
      const dryRun = await countWire(() =>
        timed(async () => {
          const result = await runMode({ mode: 'dry-run', 'database-url': cluster.url('postgres'), databases: 'ours_*', extensions: names, concurrency: '4' }, silentLogger)
          plan = JSON.stringify(result.plan)
        })
      )
      const heap = await heapAfterDryRun(cluster, 'ours_*')

      const naiveMs = await timed(async () => {
        for (const db of naive) await psql(cluster, db, alters.join('; '))
      })
      const carefulMs = await timed(async () => {
        for (const db of careful) for (const statement of alters) await psql(cluster, db, statement)
      })
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
      const ours = await execute({ plan })
      const oneStep = await execute({ databases: 'onestep_*', extensions: names })
      const left = await cluster.query<{ n: string }>(`SELECT count(*)::text AS n FROM pg_database WHERE datname LIKE 'ours_%'`)
      const ratioNaive = ours.value / naiveMs
      const ratioCareful = ours.value / carefulMs
      const met = {
        naive: ratioNaive <= TARGETS.ratioNaive,
        careful: ratioCareful <= TARGETS.ratioCareful,
        dryRun: dryRun.value < TARGETS.dryRunMs
      }
      const markdown = [
        table(
          ['', 'total', 'per database', 'sessions'],
          [
            ['naive loop: one psql per database, 3 ALTERs in one -c', ms(naiveMs), ms(naiveMs / FLEET), String(FLEET)],
            ['careful loop: a fresh psql -X per extension', ms(carefulMs), ms(carefulMs / FLEET), String(FLEET * 3)],
            [`dry-run of the ${FLEET} databases, concurrency 4`, ms(dryRun.value), ms(dryRun.value / FLEET), String(dryRun.connections)],
            ['execute with that plan, concurrency 4 (the envelope)', ms(ours.value), ms(ours.value / FLEET), String(ours.connections)],
            ['execute with extensions: plans first, then applies (one step)', ms(oneStep.value), ms(oneStep.value / FLEET), String(oneStep.connections)]
          ]
        ),
        '',
        `execute / naive = ${ratioNaive.toFixed(2)} (target ≤ ${TARGETS.ratioNaive}) ${verdict(met.naive)}`,
        `execute / careful = ${ratioCareful.toFixed(2)} (target ≤ ${TARGETS.ratioCareful}) ${verdict(met.careful)}`,
        `dry-run of ${FLEET} databases: ${ms(dryRun.value)} (target < ${TARGETS.dryRunMs} ms) ${verdict(met.dryRun)}`,
        `heap kept by a dry-run of ${FLEET} databases: ${(heap / 1024).toFixed(0)} KiB, ${(heap / FLEET / 1024).toFixed(1)} KiB per database (the plan itself)`,
        `fleet databases: ${left[0].n} upgraded by execute`
      ].join('\n')
      return {
        markdown,
        json: {
          environment: environment(),
          databases: FLEET,
          extensions: EXTENSIONS,
          naiveMs: Math.round(naiveMs),
          carefulMs: Math.round(carefulMs),
          executeMs: Math.round(ours.value),
          executeSessions: ours.connections,
          executeStatements: ours.queries,
          oneStepExecuteMs: Math.round(oneStep.value),
          oneStepSessions: oneStep.connections,
          dryRunMs: Math.round(dryRun.value),
          dryRunSessions: dryRun.connections,
          ratioNaive: Math.round(ratioNaive * 100) / 100,
          ratioCareful: Math.round(ratioCareful * 100) / 100,
          heapKeptBytes: heap
        },
        missed: [
          ...(met.naive ? [] : [`fleet execute/naive ${ratioNaive.toFixed(2)} > ${TARGETS.ratioNaive}`]),
          ...(met.careful ? [] : [`fleet execute/careful ${ratioCareful.toFixed(2)} > ${TARGETS.ratioCareful}`]),
          ...(met.dryRun ? [] : [`fleet dry-run ${dryRun.value.toFixed(0)} ms ≥ ${TARGETS.dryRunMs} ms`])
        ]
      }
    } finally {
      await cluster.destroy()
    }
  }
}
