import { describe, expect, it } from '@jest/globals'
import { join } from 'node:path'
import type { RawInputs } from '../src/inputs.js'
import type { RollbackReport } from '../src/modes/rollback.js'
import { requires, runInProcess, testCluster, uniqueName } from './helpers.js'
import { temporaryDirectory } from './harness/postgres.js'

/**
 * Rollback by downgrade scripts, and how auto chooses among the strategies. The cases start from a
 * dump snapshot, so they need pg_dump; run.test.ts covers the downgrade without any snapshot.
 */
const cluster = await testCluster({ settings: { log_statement: "'ddl'", log_line_prefix: "'%p|%a|%d|'" } })

const takeDump = async (db: string) => {
  const result = await runInProcess({ mode: 'snapshot', 'database-url': cluster.url(db), 'snapshot-strategy': 'dump', 'snapshot-dir': temporaryDirectory('pgxu-dg-') })
  expect(result.error).toBeUndefined()
  return result.outputs!.snapshot!
}
const rollback = (db: string, snapshot: string, inputs: RawInputs = {}) => runInProcess({ mode: 'rollback', 'database-url': cluster.url(db), snapshot, ...inputs })
const databases = async () => (await cluster.query<{ datname: string }>('SELECT datname FROM pg_database')).map((r) => r.datname)

describe('downgrade rollback', () => {
  requires('pg_dump', 'pg_restore').it('auto picks the downgrade script over the dump: the extension goes back, the data written since stays', async () => {
    const db = uniqueName('dg_auto')
    await cluster.createDatabase(db, { pgxu_down: '1.0' })
    await cluster.query('CREATE TABLE orders (id int)', db)
    const snapshot = await takeDump(db)
    const upgrade = await runInProcess({ mode: 'execute', 'database-url': cluster.url(db), extensions: 'pgxu_down' })
    expect(upgrade.status).toBe('success')
    expect((await cluster.query<{ f: string | null }>(`SELECT to_regproc('pgxu_down_added')::text AS f`, db))[0].f).toBe('pgxu_down_added')
    await cluster.query('INSERT INTO orders VALUES (1), (2)', db)

    const result = await rollback(db, snapshot)
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('rolled_back')
    const report = result.report as RollbackReport
    expect(report.strategy).toBe('downgrade')
    expect(report.reason).toMatch(/auto chose downgrade: every changed extension has a downgrade script/)
    expect(report.discarded?.scope).toBe('none')
    expect(report.databases[0]).toMatchObject({ name: db, outcome: 'rolled_back', before: { pgxu_down: '1.1' }, after: expect.objectContaining({ pgxu_down: '1.0' }) })
    expect((await cluster.extensionVersions(db)).pgxu_down).toBe('1.0')
    expect((await cluster.query<{ f: string | null }>(`SELECT to_regproc('pgxu_down_added')::text AS f`, db))[0].f).toBeNull()
    expect((await cluster.query<{ n: string }>('SELECT count(*) AS n FROM orders', db))[0].n).toBe('2')
    // No database was replaced.
    expect((await databases()).filter((name) => name.startsWith(`${db}__`))).toEqual([])
    // Under execute's discipline: the ALTER ran on the session holding the lock, in a transaction of its own with its timeouts.
    const log = cluster.log()
    expect(log).toMatch(
      new RegExp(`\\|pg-extension-upgrade/coordinator\\|${db}\\|LOG:  statement: BEGIN; SET LOCAL application_name = 'pg-extension-upgrade/update'; SET LOCAL lock_timeout = .*; ALTER EXTENSION "pgxu_down" UPDATE TO '1.0'; COMMIT`)
    )

    const again = await rollback(db, snapshot)
    expect(again.status).toBe('nothing_to_do')
  })

  requires('pg_dump', 'pg_restore').it('rollback-strategy downgrade refuses an extension without a downgrade script (NO_UPDATE_PATH), changing nothing', async () => {
    const db = uniqueName('dg_nopath')
    await cluster.createDatabase(db, { hstore: '1.7', pgxu_down: '1.0' })
    const snapshot = await takeDump(db)
    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'; ALTER EXTENSION pgxu_down UPDATE TO '1.1'`, db)
    const result = await rollback(db, snapshot, { 'rollback-strategy': 'downgrade' })
    expect(result.status).toBe('rollback_failed')
    expect(result.errors).toEqual([expect.objectContaining({ code: 'NO_UPDATE_PATH', extension: 'hstore', message: expect.stringContaining('no downgrade script leads from 1.8 back to 1.7') })])
    expect(result.error).toContain('Nothing was changed')
    expect(await cluster.extensionVersions(db)).toMatchObject({ hstore: '1.8', pgxu_down: '1.1' })
  })

  requires('pg_dump', 'pg_restore').it('auto falls back to the dump when one extension has no way down, and says why', async () => {
    const db = uniqueName('dg_mixed')
    await cluster.createDatabase(db, { hstore: '1.7', pgxu_down: '1.0' })
    const snapshot = await takeDump(db)
    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'; ALTER EXTENSION pgxu_down UPDATE TO '1.1'`, db)
    const result = await rollback(db, snapshot)
    expect(result.status).toBe('rolled_back')
    const report = result.report as RollbackReport
    expect(report.strategy).toBe('dump')
    expect(report.reason).toContain('downgrade is impossible (hstore: no downgrade script leads from 1.8 back to 1.7)')
    expect(await cluster.extensionVersions(db)).toMatchObject({ hstore: '1.7', pgxu_down: '1.0' })
  })

  requires('pg_dump', 'pg_restore').it('auto uses the dump when an extension was installed since the snapshot (a downgrade never drops one)', async () => {
    const db = uniqueName('dg_added')
    await cluster.createDatabase(db, { pgxu_down: '1.0' })
    const snapshot = await takeDump(db)
    await cluster.query(`ALTER EXTENSION pgxu_down UPDATE TO '1.1'; CREATE EXTENSION citext`, db)
    const result = await rollback(db, snapshot)
    expect(result.status).toBe('rolled_back')
    expect((result.report as RollbackReport).strategy).toBe('dump')
    expect((result.report as RollbackReport).reason).toContain('citext')
    const versions = await cluster.extensionVersions(db)
    expect(versions.pgxu_down).toBe('1.0')
    expect(versions).not.toHaveProperty('citext')
  })

  requires('pg_dump', 'pg_restore').it('refuses a databases input that the snapshot does not cover', async () => {
    const db = uniqueName('dg_none')
    await cluster.createDatabase(db, { hstore: '1.7' })
    const snapshot = await takeDump(db)
    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'`, db)
    // A databases input naming a database the snapshot does not cover.
    const unknown = await rollback(db, snapshot, { databases: 'not_in_snapshot' })
    expect(unknown.errors).toEqual([expect.objectContaining({ code: 'INVALID_INPUT', message: expect.stringContaining('not_in_snapshot') })])
    expect((await cluster.extensionVersions(db)).hstore).toBe('1.8')
  })

  it('refuses a rollback without a snapshot, naming the input', async () => {
    const result = await runInProcess({ mode: 'rollback', 'database-url': 'postgresql://nobody@127.0.0.1:1/none' })
    expect(result.status).toBe('rollback_failed')
    expect(result.errors).toEqual([expect.objectContaining({ code: 'INVALID_INPUT', message: expect.stringContaining('input "snapshot"') })])
  })

  requires('pg_dump', 'pg_restore').it('finds the snapshot from restore-point and snapshot-dir when no manifest path is given', async () => {
    const db = uniqueName('dg_byname')
    await cluster.createDatabase(db, { pgxu_down: '1.0' })
    const dir = temporaryDirectory('pgxu-dg-')
    const name = `named_${process.pid}`
    const snap = await runInProcess({ mode: 'snapshot', 'database-url': cluster.url(db), 'snapshot-strategy': 'dump', 'snapshot-dir': dir, 'restore-point': name })
    expect(snap.status).toBe('snapshot_created')
    await cluster.query(`ALTER EXTENSION pgxu_down UPDATE TO '1.1'`, db)
    const result = await runInProcess({ mode: 'rollback', 'database-url': cluster.url(db), 'restore-point': name, 'snapshot-dir': dir })
    expect(result.status).toBe('rolled_back')
    expect(result.outputs?.snapshot).toBe(snap.outputs?.snapshot)
    const missing = await runInProcess({ mode: 'rollback', 'database-url': cluster.url(db), 'restore-point': 'no_such_point', 'snapshot-dir': dir })
    expect(missing.errors).toEqual([expect.objectContaining({ code: 'INVALID_INPUT', message: expect.stringContaining('no_such_point') })])
  })
})
