import { describe, expect, it } from '@jest/globals'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import type { Logger } from '../src/core/logger.js'
import { updateSessionSettings } from '../src/core/executor.js'
import { classify } from '../src/core/sqlstate.js'
import type { ExecuteReport } from '../src/modes/execute.js'
import { runMode } from '../src/modes/index.js'
import type { ModeResult } from '../src/modes/types.js'
import { CLI_BUNDLE } from './harness/action.js'
import { fixtureFiles, writeExtensionFiles, type FixtureExtension } from './harness/fixtures.js'
import { dryRun, runInProcess, testCluster, uniqueName } from './helpers.js'

/**
 * Fault injection on the serialisation of updates: the coordinator holding the advisory lock is
 * terminated, the process is killed or interrupted, a second run starts at once. Every case is a
 * real server, a real slow ALTER EXTENSION and real sessions.
 */

/** An extension whose 1.0 → 1.1 script sleeps, then changes a catalog row and its own table. */
function sleeper(name: string, seconds: number): FixtureExtension {
  return {
    name,
    control: { comment: `its update sleeps ${seconds}s`, default_version: '1.1', relocatable: true, superuser: true },
    scripts: {
      '1.0': `CREATE FUNCTION ${name}_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0' $$;
CREATE TABLE ${name}_rows (id int PRIMARY KEY);
INSERT INTO ${name}_rows SELECT generate_series(1, 100);`,
      '1.0--1.1': `SELECT pg_sleep(${seconds});
CREATE OR REPLACE FUNCTION ${name}_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.1' $$;
ALTER TABLE ${name}_rows ADD COLUMN note text;`
    }
  }
}

const FIXTURES = [
  sleeper('pgxu_lock_first', 0),
  sleeper('pgxu_lock_slow', 6),
  sleeper('pgxu_lock_then', 0),
  sleeper('pgxu_lock_race', 1.5),
  sleeper('pgxu_lock_brief', 0.8)
]

const cluster = await testCluster({ settings: { log_line_prefix: "'%m [%p] %d|'" } })
for (const fixture of FIXTURES) writeExtensionFiles(cluster.info.shareDir, fixtureFiles(fixture))

const UPDATE = 'pg-extension-upgrade/update'
/**
 * Which session runs the ALTER: a fresh one, as its first statement (the first-statement rule, here
 * by the input), or the coordinator itself, which names itself UPDATE while the update runs.
 */
const FRESH_SESSION = { 'first-statement-extensions': FIXTURES.map((f) => f.name).join(', ') }
const ON_COORDINATOR = { 'first-statement-extensions': '' }
const COORDINATOR = 'pg-extension-upgrade/coordinator'
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const report = (result: { report?: unknown }) => result.report as ExecuteReport
const extension = (result: { report?: unknown }, name: string) => report(result).databases[0].extensions.find((e) => e.name === name)

function collectingLogger(lines: string[]): Logger {
  return { info: (m) => lines.push(m), warn: (m) => lines.push(m), debug: () => undefined, group: (_t, work) => work() }
}

async function execute(database: string, inputs: Record<string, string>, lines?: string[]): Promise<ModeResult> {
  if (!lines) return runInProcess({ mode: 'execute', 'database-url': cluster.url(database), ...FRESH_SESSION, ...inputs })
  return runMode({ mode: 'execute', 'database-url': cluster.url(database), ...FRESH_SESSION, ...inputs }, collectingLogger(lines), { PATH: process.env.PATH })
}

/** Sessions of this tool in a database, by purpose. */
async function sessions(database: string, application: string, state?: string): Promise<number[]> {
  const rows = await cluster.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 AND ($3::text IS NULL OR state = $3)`,
    'postgres',
    [database, application, state ?? null]
  )
  return rows.map((r) => r.pid)
}

/** Waits until an update session (fresh, or the coordinator inside its update) runs ALTER EXTENSION on `extension`; returns its pid. */
async function updating(database: string, extension: string, timeoutMs = 15_000): Promise<number> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const rows = await cluster.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 AND state = 'active' AND query LIKE $3`,
      'postgres',
      [database, UPDATE, `%ALTER EXTENSION "${extension}"%`]
    )
    if (rows.length > 0) return rows[0].pid
    await sleep(25)
  }
  throw new Error(`no update of ${extension} started in ${database}`)
}

async function until(condition: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now()
  while (Date.now() - started < timeoutMs) {
    if (await condition()) return Date.now() - started
    await sleep(50)
  }
  return Infinity
}

const terminate = (pid: number) => cluster.query(`SELECT pg_terminate_backend($1)`, 'postgres', [pid])

async function rowCount(database: string, table: string): Promise<number> {
  const rows = await cluster.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`, database)
  return Number(rows[0].n)
}

interface ChildRun {
  child: ChildProcess
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>
}

/** The CLI bundle in a process of its own, so that it can be killed or signalled. */
function startCli(database: string, inputs: Record<string, string>): ChildRun {
  if (!existsSync(CLI_BUNDLE)) throw new Error(`${CLI_BUNDLE} is missing: run npm run package first`)
  const args = ['execute', '--json', '--database-url', cluster.url(database), ...Object.entries({ ...FRESH_SESSION, ...inputs }).flatMap(([k, v]) => [`--${k}`, v])]
  const child = spawn(process.execPath, [CLI_BUNDLE, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk) => (stdout += chunk))
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  )
  return { child, done }
}

describe('a coordinator that loses its session', () => {
  it('cancels its in-flight update, starts nothing further, reports CONNECTION_LOST and versions re-read from the catalog', async () => {
    const db = uniqueName('lock_coord')
    await cluster.createDatabase(db, { pgxu_lock_first: '1.0', pgxu_lock_slow: '1.0', pgxu_lock_then: '1.0' })
    const extensions = 'pgxu_lock_first, pgxu_lock_slow, pgxu_lock_then'
    const running = execute(db, { extensions })
    const updater = await updating(db, 'pgxu_lock_slow')
    const [coordinator] = await sessions(db, COORDINATOR)
    await terminate(coordinator)
    // A second run started at once must wait for the first one's update, not collide with it.
    const second = execute(db, { extensions, 'lock-timeout': '2s', 'max-retries': '3' })
    // Left alone, the ALTER would sleep about 6 s more and commit with no lock held.
    const gone = await until(async () => !(await cluster.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1`, 'postgres', [updater])).length, 10_000)
    expect(gone).toBeLessThan(3000)
    const first = await running
    expect(first.status).toBe('failed')
    const database = report(first).databases[0]
    expect(database).toMatchObject({ outcome: 'failed', code: 'CONNECTION_LOST' })
    expect(database.message).toContain('lost')
    expect(extension(first, 'pgxu_lock_first')).toMatchObject({ outcome: 'updated', finalVersion: '1.1' })
    expect(extension(first, 'pgxu_lock_slow')).toMatchObject({ outcome: 'failed', code: 'CONNECTION_LOST', finalVersion: '1.0' })
    expect(extension(first, 'pgxu_lock_then')).toMatchObject({ outcome: 'skipped', attempts: 0, finalVersion: '1.0' })

    await expectSecondRunCompletes(db, first, await second)
  }, 40_000)
})

/** After a fault: the second run finished every update with no collision, its report matches the catalog, and no row was lost. */
async function expectSecondRunCompletes(db: string, first: ModeResult, after: ModeResult): Promise<void> {
  expect(JSON.stringify([first, after])).not.toContain('tuple concurrently updated')
  expect(after.status).toBe('success')
  const versions = await cluster.extensionVersions(db)
  expect(versions).toMatchObject({ pgxu_lock_first: '1.1', pgxu_lock_slow: '1.1', pgxu_lock_then: '1.1' })
  for (const e of report(after).databases[0].extensions) expect(e.finalVersion).toBe(versions[e.name])
  expect(await rowCount(db, 'pgxu_lock_slow_rows')).toBe(100)
}

describe('updates on the coordinator (no first-statement rule): the ALTER dies with the lock', () => {
  it('a terminated coordinator takes its update with it; nothing further starts; a second run completes', async () => {
    const db = uniqueName('lock_oncoord')
    await cluster.createDatabase(db, { pgxu_lock_first: '1.0', pgxu_lock_slow: '1.0', pgxu_lock_then: '1.0' })
    const extensions = 'pgxu_lock_first, pgxu_lock_slow, pgxu_lock_then'
    const running = execute(db, { extensions, ...ON_COORDINATOR })
    const updater = await updating(db, 'pgxu_lock_slow')
    // One session holds the lock and runs the update: no coordinator beside it, no fresh session.
    expect(await sessions(db, COORDINATOR)).toEqual([])
    const held = await cluster.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1`, 'postgres', [updater])
    expect(held).toHaveLength(1)
    await terminate(updater)
    const second = execute(db, { extensions, 'lock-timeout': '2s', 'max-retries': '3', ...ON_COORDINATOR })
    const first = await running
    expect(first.status).toBe('failed')
    expect(report(first).databases[0]).toMatchObject({ outcome: 'failed', code: 'CONNECTION_LOST' })
    expect(extension(first, 'pgxu_lock_first')).toMatchObject({ outcome: 'updated', finalVersion: '1.1' })
    expect(extension(first, 'pgxu_lock_slow')).toMatchObject({ outcome: 'failed', code: 'CONNECTION_LOST', sqlstate: '57P01', finalVersion: '1.0' })
    expect(extension(first, 'pgxu_lock_then')).toMatchObject({ outcome: 'skipped', attempts: 0, finalVersion: '1.0' })
    await expectSecondRunCompletes(db, first, await second)
  }, 40_000)

  it('SIGKILL: the server aborts the ALTER with its session (client_connection_check_interval), and a run started at once completes', async () => {
    const db = uniqueName('lock_oncoord_kill')
    await cluster.createDatabase(db, { pgxu_lock_slow: '1.0' })
    const run = startCli(db, { extensions: 'pgxu_lock_slow', ...ON_COORDINATOR })
    const updater = await updating(db, 'pgxu_lock_slow')
    const setting = await cluster.query(`SELECT current_setting('client_connection_check_interval') FROM pg_stat_activity WHERE pid = $1`, 'postgres', [updater])
    expect(setting).toHaveLength(1)
    run.child.kill('SIGKILL')
    const second = execute(db, { extensions: 'pgxu_lock_slow', 'lock-timeout': '2s', 'max-retries': '3', ...ON_COORDINATOR })
    const gone = await until(async () => !(await cluster.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1`, 'postgres', [updater])).length, 10_000)
    expect(gone).toBeLessThan(3000)
    const result = await second
    expect(result.status).toBe('success')
    expect(extension(result, 'pgxu_lock_slow')).toMatchObject({ from: '1.0', outcome: 'updated', finalVersion: '1.1' })
    expect(await rowCount(db, 'pgxu_lock_slow_rows')).toBe(100)
  }, 40_000)

  it('SIGINT: the ALTER is cancelled and rolled back, the session keeps its lock to report, nothing new starts', async () => {
    const db = uniqueName('lock_oncoord_int')
    await cluster.createDatabase(db, { pgxu_lock_first: '1.0', pgxu_lock_slow: '1.0', pgxu_lock_then: '1.0' })
    const run = startCli(db, { extensions: 'pgxu_lock_first, pgxu_lock_slow, pgxu_lock_then', ...ON_COORDINATOR })
    await updating(db, 'pgxu_lock_slow')
    run.child.kill('SIGINT')
    const { code, stdout } = await run.done
    expect(code).toBe(130)
    const database = (JSON.parse(stdout) as { report: ExecuteReport }).report.databases[0]
    expect(database).toMatchObject({ outcome: 'failed', code: 'INTERRUPTED' })
    const byName = Object.fromEntries(database.extensions.map((e) => [e.name, e]))
    expect(byName.pgxu_lock_first).toMatchObject({ outcome: 'updated', finalVersion: '1.1' })
    expect(byName.pgxu_lock_slow).toMatchObject({ outcome: 'failed', code: 'INTERRUPTED', finalVersion: '1.0' })
    expect(byName.pgxu_lock_then).toMatchObject({ outcome: 'skipped', attempts: 0, finalVersion: '1.0' })
    expect(await cluster.extensionVersions(db)).toMatchObject({ pgxu_lock_first: '1.1', pgxu_lock_slow: '1.0', pgxu_lock_then: '1.0' })
  }, 40_000)
})

describe('a run killed with SIGKILL mid-update (a cancelled CI job)', () => {
  it('has its ALTER aborted by the server (client_connection_check_interval), and a run started at once completes', async () => {
    const db = uniqueName('lock_kill')
    await cluster.createDatabase(db, { pgxu_lock_slow: '1.0' })
    const run = startCli(db, { extensions: 'pgxu_lock_slow' })
    const updater = await updating(db, 'pgxu_lock_slow')
    const setting = await cluster.query<{ setting: string }>(
      `SELECT current_setting('client_connection_check_interval') AS setting FROM pg_stat_activity WHERE pid = $1`,
      'postgres',
      [updater]
    )
    expect(setting).toHaveLength(1)
    run.child.kill('SIGKILL')
    const killedAt = Date.now()
    const second = execute(db, { extensions: 'pgxu_lock_slow', 'lock-timeout': '2s', 'max-retries': '3' })
    const gone = await until(async () => !(await cluster.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1`, 'postgres', [updater])).length, 10_000)
    expect(gone).toBeLessThan(3000)
    expect((await run.done).signal).toBe('SIGKILL')
    // Aborted, not committed: the catalog stayed at 1.0 until the second run updated it.
    const result = await second
    expect(Date.now() - killedAt).toBeLessThan(5500 + 6000)
    expect(JSON.stringify(result)).not.toContain('tuple concurrently updated')
    expect(result.status).toBe('success')
    expect(extension(result, 'pgxu_lock_slow')).toMatchObject({ from: '1.0', outcome: 'updated', finalVersion: '1.1' })
    expect(await rowCount(db, 'pgxu_lock_slow_rows')).toBe(100)
  }, 40_000)
})

describe('client_connection_check_interval by server version', () => {
  it('is sent from PostgreSQL 14 on, and never to 13, which would refuse the connection', () => {
    const settings = { lockTimeoutMs: 1000, statementTimeoutMs: 60_000, maxRetries: 1, longTransactionMs: 1000 }
    expect(updateSessionSettings(settings, { versionNum: 140000 })).toMatchObject({ client_connection_check_interval: '1s' })
    expect(updateSessionSettings(settings, { versionNum: 130012 })).not.toHaveProperty('client_connection_check_interval')
  })
})

describe('a run that takes the lock while an earlier run’s update is still alive', () => {
  it('waits for it, names it, and only then proceeds', async () => {
    const db = uniqueName('lock_wait')
    await cluster.createDatabase(db, { pgxu_lock_first: '1.0' })
    const orphan = await cluster.connect(db, { application_name: UPDATE })
    const pid = (orphan as unknown as { processID: number }).processID
    const orphanQuery = orphan.query('SELECT pg_sleep(2)')
    try {
      await sleep(200)
      const lines: string[] = []
      const started = Date.now()
      const result = await execute(db, { extensions: 'pgxu_lock_first', 'lock-timeout': '1s', 'max-retries': '3' }, lines)
      expect(result.status).toBe('success')
      expect(Date.now() - started).toBeGreaterThanOrEqual(1500)
      expect(lines.join('\n')).toContain(`pid ${pid}`)
    } finally {
      await orphanQuery
      await orphan.end()
    }
  }, 30_000)

  it('gives up with CONCURRENT_RUN naming the pid when it outlives the lock wait, changing nothing', async () => {
    const db = uniqueName('lock_busy')
    await cluster.createDatabase(db, { pgxu_lock_first: '1.0' })
    const orphan = await cluster.connect(db, { application_name: UPDATE })
    const pid = (orphan as unknown as { processID: number }).processID
    const orphanQuery = orphan.query('SELECT pg_sleep(30)').catch(() => undefined)
    try {
      await sleep(200)
      const result = await execute(db, { extensions: 'pgxu_lock_first', 'lock-timeout': '300ms', 'max-retries': '1' })
      expect(result.status).toBe('failed')
      expect(result.errors[0].code).toBe('CONCURRENT_RUN')
      expect(result.errors[0].message).toContain(`pid ${pid}`)
      expect((await cluster.extensionVersions(db)).pgxu_lock_first).toBe('1.0')
    } finally {
      await terminate(pid)
      await orphanQuery
      await orphan.end().catch(() => undefined)
    }
  }, 30_000)
})

describe('tuple concurrently updated', () => {
  it('is a concurrent update (CONCURRENT_RUN), not a library mismatch, while other XX000 errors stay LIBRARY_MISMATCH', async () => {
    const db = uniqueName('lock_tuple')
    await cluster.createDatabase(db, { pgxu_lock_race: '1.0' })
    // Someone updates the extension by hand, outside the lock and under another name.
    const manual = await cluster.connect(db, { application_name: 'psql' })
    const manualUpdate = manual.query(`ALTER EXTENSION pgxu_lock_race UPDATE TO '1.1'`)
    try {
      await sleep(300)
      const result = await execute(db, { extensions: 'pgxu_lock_race' })
      expect(result.status).toBe('failed')
      expect(extension(result, 'pgxu_lock_race')).toMatchObject({ outcome: 'failed', sqlstate: 'XX000', code: 'CONCURRENT_RUN', finalVersion: '1.1' })
      expect(extension(result, 'pgxu_lock_race')!.message).toContain('tuple concurrently updated')
    } finally {
      await manualUpdate
      await manual.end()
    }
    const citus = Object.assign(new Error('cache lookup failed for function 12345'), { code: 'XX000' })
    expect(classify(citus).code).toBe('LIBRARY_MISMATCH')
  }, 30_000)
})

describe('an interrupted execute (SIGINT, as a cancelled job sends)', () => {
  it('cancels the in-flight ALTER so it rolls back, starts nothing new, and still reports each extension', async () => {
    const db = uniqueName('lock_sigint')
    await cluster.createDatabase(db, { pgxu_lock_first: '1.0', pgxu_lock_slow: '1.0', pgxu_lock_then: '1.0' })
    const plan = JSON.stringify(await dryRun(cluster, db, { extensions: 'pgxu_lock_first, pgxu_lock_slow, pgxu_lock_then' }))
    const run = startCli(db, { plan })
    const updater = await updating(db, 'pgxu_lock_slow')
    run.child.kill('SIGINT')
    const signalledAt = Date.now()
    const { code, stdout } = await run.done
    expect(Date.now() - signalledAt).toBeLessThan(4000)
    expect(code).toBe(130)
    expect((await cluster.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1`, 'postgres', [updater])).length).toBe(0)
    const output = JSON.parse(stdout) as { status: string; report: ExecuteReport }
    expect(output.status).toBe('failed')
    const database = output.report.databases[0]
    expect(database).toMatchObject({ outcome: 'failed', code: 'INTERRUPTED' })
    const byName = Object.fromEntries(database.extensions.map((e) => [e.name, e]))
    expect(byName.pgxu_lock_first).toMatchObject({ outcome: 'updated', finalVersion: '1.1' })
    expect(byName.pgxu_lock_slow).toMatchObject({ outcome: 'failed', code: 'INTERRUPTED', finalVersion: '1.0' })
    expect(byName.pgxu_lock_then).toMatchObject({ outcome: 'skipped', attempts: 0, finalVersion: '1.0' })
    await sleep(500)
    expect(await cluster.extensionVersions(db)).toMatchObject({ pgxu_lock_first: '1.1', pgxu_lock_slow: '1.0', pgxu_lock_then: '1.0' })
  }, 40_000)
})

describe('a server that goes away mid-update', () => {
  it('reports the versions as unknown, with the reason, never as the planned or the old ones', async () => {
    const db = uniqueName('lock_down')
    await cluster.createDatabase(db, { pgxu_lock_first: '1.0', pgxu_lock_slow: '1.0' })
    const running = execute(db, { extensions: 'pgxu_lock_first, pgxu_lock_slow', 'connect-timeout': '2s' })
    await updating(db, 'pgxu_lock_slow')
    cluster.stop('immediate')
    let result: ModeResult
    try {
      result = await running
    } finally {
      cluster.start()
    }
    expect(result.status).toBe('failed')
    expect(report(result).databases[0]).toMatchObject({ outcome: 'failed', code: 'CONNECTION_LOST' })
    for (const name of ['pgxu_lock_first', 'pgxu_lock_slow']) {
      const e = extension(result, name)!
      expect(e.finalVersion).toBeNull()
      expect(e.finalVersionUnknown).toContain('could not be re-read')
    }
    // The test server runs with synchronous_commit=off, so an immediate stop may lose even the
    // first update's commit: exactly why the report must not claim any version here.
    expect((await cluster.extensionVersions(db)).pgxu_lock_slow).toBe('1.0')
  }, 60_000)
})

describe('randomized faults, then a second run at once', () => {
  it('never has two updaters, never loses a row, and the last report matches the catalog', async () => {
    const faults = ['kill', 'coordinator', 'updater'] as const
    const iterations = 15
    const extensions = 'pgxu_lock_first, pgxu_lock_brief, pgxu_lock_then'
    const template = uniqueName('lock_random_template')
    await cluster.createDatabase(template, { pgxu_lock_first: '1.0', pgxu_lock_brief: '1.0', pgxu_lock_then: '1.0' })
    let seed = Number(process.env.PGXU_FAULT_SEED ?? Date.now() % 100_000)
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
    const seen: string[] = []
    for (let i = 0; i < iterations; i++) {
      const fault = faults[i % faults.length]
      const path = i % 2 === 0 ? FRESH_SESSION : ON_COORDINATOR
      const delayMs = Math.floor(random() * 1600)
      const db = uniqueName('lock_random')
      await cluster.createDatabase(db, {}, { template })
      seen.push(`${db}: ${fault} after ${delayMs}ms, ${path === FRESH_SESSION ? 'fresh session' : 'on the coordinator'} (seed ${seed})`)
      let maxUpdaters = 0
      let sampling = true
      const sampler = (async () => {
        while (sampling) {
          maxUpdaters = Math.max(maxUpdaters, (await sessions(db, UPDATE, 'active')).length)
          await sleep(20)
        }
      })()
      const first = startCli(db, { extensions, ...path })
      await sleep(delayMs)
      if (fault === 'kill') first.child.kill('SIGKILL')
      else for (const pid of await sessions(db, fault === 'coordinator' ? COORDINATOR : UPDATE)) await terminate(pid)
      const second = await execute(db, { extensions, 'lock-timeout': '2s', 'max-retries': '3', ...path })
      const firstDone = await first.done
      sampling = false
      await sampler
      const context = seen[seen.length - 1]
      expect([context, maxUpdaters]).toEqual([context, maxUpdaters <= 1 ? maxUpdaters : 1])
      expect(JSON.stringify(second) + firstDone.stdout).not.toContain('tuple concurrently updated')
      expect([context, second.status]).toEqual([context, expect.stringMatching(/^(success|nothing_to_do)$/)])
      if (firstDone.signal === null) {
        // What the first run says it updated, it updated: never a version assumed from the plan.
        const firstReport = JSON.parse(firstDone.stdout) as { report: ExecuteReport }
        for (const e of (firstReport.report?.databases[0]?.extensions ?? []).filter((x) => x.outcome === 'updated')) {
          expect([context, e.name, e.finalVersion]).toEqual([context, e.name, '1.1'])
        }
      }
      const versions = await cluster.extensionVersions(db)
      expect(versions).toMatchObject({ pgxu_lock_first: '1.1', pgxu_lock_brief: '1.1', pgxu_lock_then: '1.1' })
      for (const e of report(second).databases[0].extensions) expect({ context, name: e.name, version: e.finalVersion }).toEqual({ context, name: e.name, version: versions[e.name] })
      for (const table of ['pgxu_lock_first_rows', 'pgxu_lock_brief_rows', 'pgxu_lock_then_rows']) expect(await rowCount(db, table)).toBe(100)
    }
    const collisions = cluster.log().split('\n').filter((line) => line.includes('lock_random') && line.includes('tuple concurrently updated'))
    expect(collisions).toEqual([])
  }, 120_000)
})
