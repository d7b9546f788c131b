/** Section dry-run: wall time and catalog round trips for one database with 1, 10 and 40 extensions, and the bundles' cold start. */
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { performance } from 'node:perf_hooks'
import { runnerEnvironment } from '../../__tests__/harness/action.js'
import { startCluster, type Cluster } from '../../__tests__/harness/postgres.js'
import { inspectDatabase } from '../../src/core/catalog.js'
import { silentLogger } from '../../src/core/logger.js'
import { compareVersions } from '../../src/core/versions.js'
import { runMode } from '../../src/modes/index.js'
import { countWire, environment, measure, ms, ROOT, stats, table, verdict, type BenchOptions, type Section, type Stats } from './framework.js'


/** The contrib modules of PostgreSQL 13–17 (hstore_plperl and friends need a procedural language). */
const CONTRIB = [
  // First the ones with real multi-hop update paths, so that the small databases plan real work.
  'hstore', 'pg_trgm', 'citext', 'cube', 'earthdistance', 'ltree', 'btree_gist', 'intarray', 'pgcrypto', 'fuzzystrmatch',
  'adminpack', 'amcheck', 'autoinc', 'bloom', 'btree_gin', 'dblink', 'dict_int', 'dict_xsyn', 'file_fdw', 'insert_username',
  'intagg', 'isn', 'lo', 'moddatetime', 'old_snapshot', 'pageinspect', 'pg_buffercache', 'pg_freespacemap', 'pg_prewarm',
  'pg_stat_statements', 'pg_surgery', 'pg_visibility', 'pg_walinspect', 'pgrowlocks', 'pgstattuple', 'postgres_fdw', 'refint',
  'seg', 'sslinfo', 'tablefunc', 'tcn', 'tsm_system_rows', 'tsm_system_time', 'unaccent', 'uuid-ossp', 'xml2',
  'pg_logicalinspect'
]

/** Sizes of the benchmarked databases: installed extensions, plpgsql not counted. */
const SIZES = [1, 10, 40]

interface Seeded {
  database: string
  size: number
  installed: Record<string, string>
  behind: number
  skipped: Array<{ name: string; reason: string }>
}

/**
 * Creates a database with `size` contrib extensions installed, each at the oldest version the
 * server can create (CASCADE for requirements), so that most of them sit behind their default.
 */
async function seedDatabase(cluster: Cluster, size: number): Promise<Seeded> {
  const database = `bench_${size}`
  await cluster.createDatabase(database)
  const client = await cluster.connect(database)
  const skipped: Seeded['skipped'] = []
  try {
    const available = await client.query<{ name: string; versions: string[]; default_version: string }>(
      `SELECT a.name, a.default_version, array_agg(v.version) AS versions
       FROM pg_available_extensions a JOIN pg_available_extension_versions v USING (name)
       WHERE a.name = ANY($1) GROUP BY a.name, a.default_version`,
      [CONTRIB]
    )
    const byName = new Map(available.rows.map((row) => [row.name, row]))
    const count = async () =>
      Number((await client.query(`SELECT count(*) AS n FROM pg_extension WHERE extname <> 'plpgsql'`)).rows[0].n)
    for (const name of CONTRIB) {
      if ((await count()) >= size) break
      const row = byName.get(name)
      if (!row) continue
      const versions = [...row.versions].sort(compareVersions)
      let created = false
      let lastError = ''
      for (const version of versions) {
        try {
          await client.query('BEGIN')
          await client.query(`CREATE EXTENSION IF NOT EXISTS ${client.escapeIdentifier(name)} VERSION ${client.escapeLiteral(version)} CASCADE`)
          // CASCADE may pull in requirements; never go past the size asked for.
          const after = Number((await client.query(`SELECT count(*) AS n FROM pg_extension WHERE extname <> 'plpgsql'`)).rows[0].n)
          if (after > size) {
            await client.query('ROLLBACK')
            lastError = `would take the database past ${size} extensions (requirements)`
            break
          }
          await client.query('COMMIT')
          created = true
          break
        } catch (error) {
          await client.query('ROLLBACK')
          lastError = error instanceof Error ? error.message : String(error)
        }
      }
      if (!created) skipped.push({ name, reason: lastError })
    }
    const installed = Object.fromEntries(
      (await client.query<{ extname: string; extversion: string }>(`SELECT extname, extversion FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY extname`)).rows.map(
        (r) => [r.extname, r.extversion]
      )
    )
    const behind = Number(
      (
        await client.query(
          `SELECT count(*) AS n FROM pg_extension e JOIN pg_available_extensions a ON a.name = e.extname
           WHERE e.extname <> 'plpgsql' AND a.default_version <> e.extversion`
        )
      ).rows[0].n
    )
    if (Object.keys(installed).length !== size) {
      throw new Error(`could install only ${Object.keys(installed).length} of ${size} extensions in ${database}: ${JSON.stringify(skipped)}`)
    }
    return { database, size, installed, behind, skipped }
  } finally {
    await client.end()
  }
}

interface ColdStart {
  command: string
  expectedExit: number
  exit: number | null
  stats: Stats
}

function spawnOnce(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; ms: number }> {
  return new Promise((resolvePromise, reject) => {
    const start = performance.now()
    const child = spawn(process.execPath, args, { env, cwd: ROOT, stdio: ['ignore', 'ignore', 'ignore'] })
    child.on('error', reject)
    child.on('close', (code) => resolvePromise({ code, ms: performance.now() - start }))
  })
}

export async function coldStart(label: string, args: string[], env: NodeJS.ProcessEnv, expectedExit: number, options: BenchOptions): Promise<ColdStart> {
  let exit: number | null = null
  const samples: number[] = []
  for (let i = 0; i < options.warmup + options.runs; i++) {
    const run = await spawnOnce(args, env)
    exit = run.code
    if (run.code !== expectedExit) throw new Error(`${label} exited with ${run.code}, expected ${expectedExit}`)
    if (i >= options.warmup) samples.push(run.ms)
  }
  return { command: label, expectedExit, exit, stats: stats(samples) }
}


const TARGETS = {
  dryRunMs: 200,
  coldStartMs: 300
}

export const dryRunSection: Section = {
  name: 'dry-run',
  description: 'dry-run wall time and catalog round trips for one database with 1, 10 and 40 extensions; cold start of the bundles',
  async run(options) {
    const missed: string[] = []

    // (b) Cold start first, while the machine is quiet: the bundles, and bare node for reference.
    const actionBundle = join(ROOT, 'dist', 'index.js')
    const cliBundle = join(ROOT, 'dist', 'cli', 'index.js')
    for (const bundle of [actionBundle, cliBundle]) {
      if (!existsSync(bundle)) throw new Error(`${relative(ROOT, bundle)} is missing: run npm run package first`)
    }
    const runnerDir = mkdtempSync(join(tmpdir(), 'pgxu-bench-runner-'))
    let cold: ColdStart[]
    try {
      const plainEnv = { PATH: process.env.PATH, HOME: process.env.HOME }
      cold = [
        await coldStart('node -e "" (baseline: Node itself)', ['-e', ''], plainEnv, 0, options),
        await coldStart('node dist/index.js with INPUT_MODE=bogus (action, exits 1)', [actionBundle], runnerEnvironment(runnerDir, { mode: 'bogus' }), 1, options),
        await coldStart('node dist/cli/index.js --help (CLI)', [cliBundle, '--help'], plainEnv, 0, options)
      ]
    } finally {
      rmSync(runnerDir, { recursive: true, force: true })
    }
    for (const entry of cold.slice(1)) {
      if (entry.stats.median >= TARGETS.coldStartMs) missed.push(`cold start: ${entry.command} median ${ms(entry.stats.median)} ≥ ${TARGETS.coldStartMs} ms`)
    }

    // (a) dry-run against one database of each size on a local throwaway cluster.
    const cluster = await startCluster()
    try {
      const serverVersion = (await cluster.query<{ v: string }>("SELECT current_setting('server_version') AS v"))[0]?.v
      const rows: Array<Record<string, unknown>> = []
      for (const size of SIZES) {
        const seeded = await seedDatabase(cluster, size)
        const names = Object.keys(seeded.installed)
        const inputs = { mode: 'dry-run', 'database-url': cluster.url(seeded.database), extensions: names.join('\n') }
        const env = { PATH: process.env.PATH }

        // One counted run: what reaches the server, and the verdict.
        const counted = await countWire(() => runMode(inputs, silentLogger, env))
        const result = counted.value
        if (!result.plan || result.status === 'dry_run_blocked') {
          throw new Error(`dry-run of ${seeded.database} did not plan: ${result.status} ${result.error ?? ''}`)
        }
        const planned = result.plan.databases[0]?.extensions ?? []
        const updates = planned.filter((e) => e.action === 'update').length

        // The core's own count, on an open session (includes library probes, if any).
        const client = await cluster.connect(seeded.database)
        let inspectRoundTrips = 0
        let inspectStats: Stats
        try {
          inspectRoundTrips = (await inspectDatabase(client, { targets: names, longTransactionMs: 300_000 }, true)).roundTrips
          inspectStats = await measure(options.runs, options.warmup, async () => {
            await inspectDatabase(client, { targets: names, longTransactionMs: 300_000 }, true)
          })
        } finally {
          await client.end()
        }

        // Wall time of the whole mode: parse inputs, connect (SCRAM), inspect, plan, disconnect.
        const wall = await measure(options.runs, options.warmup, async () => {
          const run = await runMode(inputs, silentLogger, env)
          if (run.status !== result.status) throw new Error(`dry-run status changed between runs: ${result.status} → ${run.status}`)
        })

        if (wall.median >= TARGETS.dryRunMs) missed.push(`dry-run of ${size} extension(s): median ${ms(wall.median)} ≥ ${TARGETS.dryRunMs} ms`)
        rows.push({
          extensions: size,
          behindDefault: seeded.behind,
          planned: { update: updates, none: planned.filter((e) => e.action === 'none').length, total: planned.length },
          status: result.status,
          roundTrips: { inspectDatabase: inspectRoundTrips, queriesSent: counted.queries, connections: counted.connections },
          dryRunMs: wall,
          inspectMs: inspectStats,
          installed: seeded.installed,
          ...(seeded.skipped.length ? { skipped: seeded.skipped } : {})
        })
      }

      const tripsPerDb = rows.map((r) => (r.roundTrips as { queriesSent: number }).queriesSent)
      const constant = tripsPerDb.every((t) => t === tripsPerDb[0])
      if (!constant) missed.push(`round trips per database vary with the number of extensions: ${tripsPerDb.join(', ')}`)

      const dryRunTable = table(
        ['extensions', 'behind default', 'planned updates', 'status', 'round trips (sent / core count)', 'sessions', 'dry-run median', 'dry-run p95', 'inspect median', 'inspect p95'],
        rows.map((r) => {
          const trips = r.roundTrips as { inspectDatabase: number; queriesSent: number; connections: number }
          const wall = r.dryRunMs as Stats
          const inspect = r.inspectMs as Stats
          return [
            String(r.extensions),
            String(r.behindDefault),
            String((r.planned as { update: number }).update),
            String(r.status),
            `${trips.queriesSent} / ${trips.inspectDatabase}`,
            String(trips.connections),
            ms(wall.median),
            ms(wall.p95),
            ms(inspect.median),
            ms(inspect.p95)
          ]
        })
      )
      const coldTable = table(
        ['command', 'exit', 'median', 'p95', 'min', 'max'],
        cold.map((c) => [c.command, String(c.exit), ms(c.stats.median), ms(c.stats.p95), ms(c.stats.min), ms(c.stats.max)])
      )
      const worstDryRun = Math.max(...rows.map((r) => (r.dryRunMs as Stats).median))
      const worstCold = Math.max(...cold.slice(1).map((c) => c.stats.median))
      const targetsTable = table(
        ['target', 'measured', 'verdict'],
        [
          ['constant round trips per database', tripsPerDb.join(', '), verdict(constant)],
          [`dry-run of one database < ${TARGETS.dryRunMs} ms (median)`, ms(worstDryRun), verdict(worstDryRun < TARGETS.dryRunMs)],
          [`cold start < ${TARGETS.coldStartMs} ms (median)`, ms(worstCold), verdict(worstCold < TARGETS.coldStartMs)]
        ]
      )
      const markdown = [
        `### dry-run of one database (${options.runs} runs after ${options.warmup} warm-up, PostgreSQL ${serverVersion}, local cluster)`,
        '',
        dryRunTable,
        '',
        '"dry-run" is runMode() in-process: input parsing, a new session (TCP + SCRAM), the catalog inspection, planning and disconnect.',
        '"inspect" is inspectDatabase() alone on an open session. "round trips sent" counts every query the dry-run sent through the driver.',
        '',
        `### cold start (${options.runs} runs after ${options.warmup} warm-up)`,
        '',
        coldTable,
        '',
        '### targets',
        '',
        targetsTable
      ].join('\n')
      return {
        markdown,
        missed,
        json: {
          section: 'dry-run',
          environment: environment(serverVersion),
          runs: options.runs,
          warmup: options.warmup,
          targets: { roundTripsPerDatabase: 'constant', dryRunMedianMs: TARGETS.dryRunMs, coldStartMedianMs: TARGETS.coldStartMs },
          dryRun: rows,
          coldStart: cold,
          verdict: { constantRoundTrips: constant, dryRunUnderTarget: worstDryRun < TARGETS.dryRunMs, coldStartUnderTarget: worstCold < TARGETS.coldStartMs }
        }
      }
    } finally {
      await cluster.destroy()
    }
  }
}

