import { afterAll, describe, expect, it } from '@jest/globals'
import type pg from 'pg'
import type { ExecuteReport } from '../src/modes/execute.js'
import { defaultVersion, dryRun, runInProcess, testCluster, uniqueName } from './helpers.js'

const cluster = await testCluster({
  settings: { log_statement: "'all'", log_connections: 'on', log_line_prefix: "'%p|%a|%d|'" }
})

const executeReport = (result: { report?: unknown }) => result.report as ExecuteReport
const extensionReport = (result: { report?: unknown }, name: string) => executeReport(result).databases[0].extensions.find((e) => e.name === name)!

async function execute(database: string, inputs: Record<string, string>) {
  return runInProcess({ mode: 'execute', 'database-url': cluster.url(database), ...inputs })
}

describe('execute', () => {
  it('walks a multi-hop contrib path in one statement, and a re-run is nothing_to_do', async () => {
    const db = uniqueName('exec_multi')
    await cluster.createDatabase(db, { hstore: '1.4', pg_trgm: '1.3', citext: '1.4' })
    const plan = await dryRun(cluster, db, { extensions: 'hstore@1.8\npg_trgm\ncitext' })
    const result = await execute(db, { plan: JSON.stringify(plan) })
    expect(result.status).toBe('success')
    expect(result.changed).toBe(true)
    expect(await cluster.extensionVersions(db)).toMatchObject({ hstore: '1.8', pg_trgm: '1.6', citext: await defaultVersion(cluster, 'citext') })
    expect(extensionReport(result, 'hstore')).toMatchObject({ from: '1.4', to: '1.8', walked: ['1.4', '1.5', '1.6', '1.7', '1.8'], outcome: 'updated', attempts: 1, finalVersion: '1.8' })

    const again = await execute(db, { plan: JSON.stringify(plan) })
    expect(again.status).toBe('nothing_to_do')
    expect(again.changed).toBe(false)
    expect(executeReport(again).databases[0].extensions.every((e) => e.outcome === 'already_current')).toBe(true)
  })

  it('plans first when given extensions, and refuses a blocked plan without changing anything', async () => {
    const db = uniqueName('exec_inline')
    await cluster.createDatabase(db, { hstore: '1.4' })
    const blocked = await execute(db, { extensions: 'hstore@1.8, no_such_extension' })
    expect(blocked.status).toBe('failed')
    expect(blocked.errors.map((e) => e.code)).toEqual(['EXTENSION_NOT_AVAILABLE'])
    expect((await cluster.extensionVersions(db)).hstore).toBe('1.4')
    const done = await execute(db, { extensions: 'hstore@1.8' })
    expect(done.status).toBe('success')
  })

  it('refuses a stale plan and names what changed, changing nothing', async () => {
    const db = uniqueName('exec_stale')
    await cluster.createDatabase(db, { hstore: '1.4', citext: '1.4' })
    const plan = await dryRun(cluster, db, { extensions: 'hstore' })
    await cluster.query(`CREATE EXTENSION cube VERSION '1.4'`, db)
    const result = await execute(db, { plan: JSON.stringify(plan) })
    expect(result.status).toBe('failed')
    expect(result.errors[0].code).toBe('PLAN_STALE')
    expect(result.errors[0].message).toContain('now installed: cube@1.4')
    expect((await cluster.extensionVersions(db)).hstore).toBe('1.4')

    await cluster.query(`DROP EXTENSION cube; ALTER EXTENSION hstore UPDATE TO '1.5'`, db)
    const resumed = await execute(db, { plan: JSON.stringify(plan) })
    expect(resumed.status).toBe('success')
    expect(extensionReport(resumed, 'hstore').walked).toEqual(['1.5', '1.6', '1.7', '1.8'])

    await cluster.query(`ALTER EXTENSION citext UPDATE TO '1.5'`, db)
    const stale = await execute(db, { plan: JSON.stringify(plan) })
    expect(stale.errors[0].code).toBe('PLAN_STALE')
    expect(stale.errors[0].message).toContain('citext@1.5')
  })

  it('leaves the original version and none of the first hop objects when the second hop fails', async () => {
    const db = uniqueName('exec_fail')
    await cluster.createDatabase(db, { pgxu_fail: '1.0', hstore: '1.4' })
    const result = await execute(db, { extensions: 'pgxu_fail, hstore' })
    expect(result.status).toBe('failed')
    const failed = extensionReport(result, 'pgxu_fail')
    expect(failed).toMatchObject({ outcome: 'failed', code: 'UPGRADE_SCRIPT_FAILED', sqlstate: 'P0001', finalVersion: '1.0' })
    expect(failed.message).toContain('fails by design')
    expect(extensionReport(result, 'hstore').outcome).toBe('updated')
    expect((await cluster.extensionVersions(db)).pgxu_fail).toBe('1.0')
    const objects = await cluster.query(`SELECT to_regproc('pgxu_fail_hop_one') AS fn, to_regclass('pgxu_fail_hop_one_table') AS tbl`, db)
    expect(objects[0]).toEqual({ fn: null, tbl: null })
    expect(result.errors[0]).toMatchObject({ code: 'UPGRADE_SCRIPT_FAILED', database: db, extension: 'pgxu_fail' })
  })

  it('does not attempt an extension whose requirement failed (a name collision with a user object)', async () => {
    const db = uniqueName('exec_requires')
    await cluster.createDatabase(db, {})
    await cluster.query(`CREATE FUNCTION pgxu_base_version() RETURNS text LANGUAGE sql AS $$ SELECT 'mine' $$`, db)
    const result = await execute(db, { extensions: 'pgxu_dep', 'install-missing': 'true' })
    expect(result.status).toBe('failed')
    expect(extensionReport(result, 'pgxu_base')).toMatchObject({ outcome: 'failed', sqlstate: '42723', finalVersion: null })
    expect(extensionReport(result, 'pgxu_dep')).toMatchObject({ outcome: 'skipped', attempts: 0 })
    expect(extensionReport(result, 'pgxu_dep').message).toContain('requires pgxu_base, which failed')
    expect(await cluster.extensionVersions(db)).not.toHaveProperty('pgxu_dep')

    await cluster.query(`DROP FUNCTION pgxu_base_version()`, db)
    const retried = await execute(db, { extensions: 'pgxu_dep', 'install-missing': 'true' })
    expect(retried.status).toBe('success')
    expect(await cluster.extensionVersions(db)).toMatchObject({ pgxu_base: '1.1', pgxu_dep: '1.1' })
  })

  it('retries a lock wait, reports the blocking session, gives up with LOCK_TIMEOUT, then succeeds once released', async () => {
    const db = uniqueName('exec_lock')
    await cluster.createDatabase(db, { pgxu_lock: '1.0' })
    const holder = await cluster.connect(db, { application_name: 'reporting-job' })
    try {
      await holder.query('BEGIN')
      await holder.query('SELECT count(*) FROM pgxu_lock_data')
      const started = Date.now()
      const result = await execute(db, { extensions: 'pgxu_lock', 'lock-timeout': '300ms', 'max-retries': '2' })
      const elapsed = Date.now() - started
      expect(result.status).toBe('failed')
      const report = extensionReport(result, 'pgxu_lock')
      expect(report).toMatchObject({ outcome: 'failed', code: 'LOCK_TIMEOUT', sqlstate: '55P03', attempts: 3, finalVersion: '1.0' })
      const pid = (holder as unknown as { processID: number }).processID
      expect(report.blockers.map((b) => b.pid)).toContain(pid)
      expect(report.blockers[0]).toMatchObject({ application: 'reporting-job', query: 'SELECT count(*) FROM pgxu_lock_data' })
      expect(report.message).toContain(`pid ${pid}`)
      expect(elapsed).toBeGreaterThanOrEqual(900)
      expect((await cluster.extensionVersions(db)).pgxu_lock).toBe('1.0')
    } finally {
      await holder.query('ROLLBACK')
      await holder.end()
    }
    const after = await execute(db, { extensions: 'pgxu_lock', 'lock-timeout': '300ms' })
    expect(after.status).toBe('success')
    expect((await cluster.extensionVersions(db)).pgxu_lock).toBe('1.1')
  })

  it('serialises two runs started together: one updates, the other waits and finds nothing to do', async () => {
    const db = uniqueName('exec_race')
    await cluster.createDatabase(db, { pgxu_slow: '1.0' })
    const plan = JSON.stringify(await dryRun(cluster, db, { extensions: 'pgxu_slow' }))
    const [a, b] = await Promise.all([execute(db, { plan, 'lock-timeout': '2s', 'max-retries': '3' }), execute(db, { plan, 'lock-timeout': '2s', 'max-retries': '3' })])
    expect([a.status, b.status].sort()).toEqual(['nothing_to_do', 'success'])
    expect(JSON.stringify([a, b])).not.toContain('tuple concurrently updated')
    expect((await cluster.extensionVersions(db)).pgxu_slow).toBe('1.1')
  })

  it('gives up with CONCURRENT_RUN when the other run holds the lock too long', async () => {
    const db = uniqueName('exec_busy')
    await cluster.createDatabase(db, { pgxu_slow: '1.0' })
    const plan = JSON.stringify(await dryRun(cluster, db, { extensions: 'pgxu_slow' }))
    const first = execute(db, { plan })
    await new Promise((resolve) => setTimeout(resolve, 500))
    const second = await execute(db, { plan, 'lock-timeout': '200ms', 'max-retries': '1' })
    expect(second.status).toBe('failed')
    expect(second.errors[0].code).toBe('CONCURRENT_RUN')
    // The holder is the first run's coordinator, named as an update while it runs pgxu_slow's.
    expect(second.errors[0].message).toMatch(/pid \d+ \(postgres, pg-extension-upgrade\/(coordinator|update)\)/)
    expect((await first).status).toBe('success')
  })

  it('re-reads the version after a connection is killed mid-update, and a re-run completes', async () => {
    const db = uniqueName('exec_kill')
    await cluster.createDatabase(db, { pgxu_slow: '1.0' })
    const running = execute(db, { extensions: 'pgxu_slow' })
    let killed = 0
    for (let i = 0; i < 50 && killed === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      const rows = await cluster.query<{ killed: boolean }>(
        `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pg-extension-upgrade/update'`,
        'postgres',
        [db]
      )
      killed = rows.length
    }
    const result = await running
    expect(killed).toBe(1)
    expect(result.status).toBe('failed')
    const report = extensionReport(result, 'pgxu_slow')
    expect(report).toMatchObject({ code: 'CONNECTION_LOST', sqlstate: '57P01', finalVersion: '1.0' })
    expect(report.message).toContain('the catalog still says 1.0')
    const rerun = await execute(db, { extensions: 'pgxu_slow' })
    expect(rerun.status).toBe('success')
    expect((await cluster.extensionVersions(db)).pgxu_slow).toBe('1.1')
  })

  it('updates on the coordinator in a transaction of its own, and on a fresh session as its first statement where the first-statement rule applies', async () => {
    const db = uniqueName('exec_first')
    await cluster.createDatabase(db, { hstore: '1.6', pg_trgm: '1.4' })
    const result = await execute(db, { extensions: 'hstore, pg_trgm', 'lock-timeout': '7s', 'first-statement-extensions': 'pg_trgm' })
    expect(result.status).toBe('success')
    const statements = new Map<string, { application: string; sent: string[] }>()
    for (const line of cluster.log().split('\n')) {
      const match = /^(\d+)\|([^|]*)\|([^|]*)\|.*statement: (.*)$/.exec(line)
      if (!match || match[3] !== db || !match[2].startsWith('pg-extension-upgrade/')) continue
      const session = statements.get(match[1]) ?? { application: match[2], sent: [] }
      session.sent.push(match[4])
      statements.set(match[1], session)
    }
    const sessions = [...statements.values()]
    // First-statement rule (pg_trgm listed in first-statement-extensions): a fresh session, the ALTER its only statement.
    expect(sessions.filter((s) => s.application === 'pg-extension-upgrade/update').map((s) => s.sent)).toEqual([['ALTER EXTENSION "pg_trgm" UPDATE TO \'1.6\'']])
    // Everything else: on the coordinator, which holds the lock and has only read catalogs before, in one transaction with its settings.
    const coordinators = sessions.filter((s) => s.application === 'pg-extension-upgrade/coordinator')
    expect(coordinators).toHaveLength(1)
    const updates = coordinators[0].sent.filter((statement) => /ALTER|CREATE|SET/.test(statement))
    expect(updates).toEqual([
      "BEGIN; SET LOCAL application_name = 'pg-extension-upgrade/update'; SET LOCAL lock_timeout = '7000ms'; SET LOCAL statement_timeout = '900000ms'; " +
        "SET LOCAL max_parallel_workers_per_gather = '0'; SET LOCAL max_parallel_maintenance_workers = '0'; ALTER EXTENSION \"hstore\" UPDATE TO '1.8'; COMMIT"
    ])
    expect(coordinators[0].sent.indexOf(updates[0])).toBeGreaterThan(0)
    expect(cluster.log()).not.toMatch(/pg-extension-upgrade\/update\|.*statement: SET /)
  })

  it('runs staged extensions one hop per transaction, and resumes from the hop reached', async () => {
    const db = uniqueName('exec_staged')
    await cluster.createDatabase(db, { pgxu_staged: '1.0' })
    const result = await execute(db, { extensions: 'pgxu_staged', 'staged-extensions': 'pgxu_staged' })
    expect(result.status).toBe('success')
    expect(extensionReport(result, 'pgxu_staged').walked).toEqual(['1.0', '1.1', '1.2'])
    const xids = await cluster.query<{ version: string; xid: string }>('SELECT version, xid::text AS xid FROM pgxu_staged_log ORDER BY version', db)
    expect(new Set(xids.map((r) => r.xid)).size).toBe(3)

    const together = uniqueName('exec_unstaged')
    await cluster.createDatabase(together, { pgxu_staged: '1.0' })
    await execute(together, { extensions: 'pgxu_staged' })
    const one = await cluster.query<{ xid: string }>(`SELECT DISTINCT xid::text AS xid FROM pgxu_staged_log WHERE version <> '1.0'`, together)
    expect(one).toHaveLength(1)

    const resume = uniqueName('exec_resume')
    await cluster.createDatabase(resume, { pgxu_staged: '1.0' })
    const plan = JSON.stringify(await dryRun(cluster, resume, { extensions: 'pgxu_staged', 'staged-extensions': 'pgxu_staged' }))
    await cluster.query(`ALTER EXTENSION pgxu_staged UPDATE TO '1.1'`, resume)
    const resumed = await execute(resume, { plan })
    expect(resumed.status).toBe('success')
    expect(extensionReport(resumed, 'pgxu_staged').walked).toEqual(['1.1', '1.2'])
  })
})

describe('execute when the server says no', () => {
  let readOnly: pg.Client | undefined
  afterAll(async () => {
    await readOnly?.end()
  })

  it('refuses on a read-only database and names the input problem before connecting', async () => {
    const db = uniqueName('exec_ro')
    await cluster.createDatabase(db, { hstore: '1.4' })
    await cluster.query(`ALTER DATABASE ${db} SET default_transaction_read_only = on`)
    const result = await execute(db, { extensions: 'hstore' })
    expect(result.status).toBe('failed')
    expect(result.errors.map((e) => e.code)).toContain('READ_ONLY_SERVER')
    const both = await execute(db, { extensions: 'hstore', plan: '{}' })
    expect(both.errors[0].code).toBe('INVALID_INPUT')
    expect(both.error).toContain('"plan" and "extensions"')
    const garbage = await execute(db, { plan: 'not json and not a file' })
    expect(garbage.error).toContain('input "plan"')
  })
})
