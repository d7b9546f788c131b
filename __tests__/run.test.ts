import { describe, expect, it } from '@jest/globals'
import { join } from 'node:path'
import type { RunReport } from '../src/modes/run.js'
import { fails } from '../src/modes/types.js'
import { temporaryDirectory } from './harness/postgres.js'
import { requires, runInProcess, testCluster, uniqueName } from './helpers.js'

const cluster = await testCluster()
const snapshotDir = temporaryDirectory('pgxu-run-snapshots-', true)

const stages = (result: { report?: unknown }) => Object.fromEntries((result.report as RunReport).stages.map((s) => [s.name, s.status]))

async function run(database: string, inputs: Record<string, string>) {
  return runInProcess({ mode: 'run', 'database-url': cluster.url(database), 'snapshot-dir': snapshotDir, ...inputs })
}

describe('run: the whole envelope in one step', () => {
  requires('pg_dump', 'pg_restore').it('plans, snapshots, executes and verifies; a second run has nothing to do', async () => {
    const db = uniqueName('run_ok')
    await cluster.createDatabase(db, { hstore: '1.4', pg_trgm: '1.3' })
    const result = await run(db, { extensions: 'hstore, pg_trgm' })
    expect(result.status).toBe('success')
    expect(result.changed).toBe(true)
    expect(stages(result)).toEqual({ 'dry-run': 'dry_run_approved', snapshot: 'snapshot_created', execute: 'success', verify: 'verified', rollback: 'skipped' })
    expect(result.outputs?.['snapshot-strategy']).toBe('dump')
    expect(result.outputs?.snapshot).toMatch(/manifest\.json$/)
    expect(await cluster.extensionVersions(db)).toMatchObject({ hstore: '1.8', pg_trgm: '1.6' })

    const again = await run(db, { extensions: 'hstore, pg_trgm' })
    expect(again.status).toBe('nothing_to_do')
    expect(again.changed).toBe(false)
    expect(stages(again)).toMatchObject({ 'dry-run': 'nothing_to_do', snapshot: 'not_reached' })
  })

  requires('pg_dump', 'pg_restore').it('rolls back on its own when verify fails after a real change, and still fails the step', async () => {
    const db = uniqueName('run_verify')
    await cluster.createDatabase(db, { pgxu_breaking: '1.0' })
    await cluster.query(`CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 250)`, db)
    const result = await run(db, { extensions: 'pgxu_breaking', 'snapshot-strategy': 'dump', 'verify-sql': 'SELECT greeting(); -- expect: hello', 'terminate-connections': 'true' })
    expect(result.status).toBe('rolled_back')
    expect(fails(result)).toBe(true)
    expect(stages(result)).toEqual({ 'dry-run': 'dry_run_approved', snapshot: 'snapshot_created', execute: 'success', verify: 'verify_failed', rollback: 'rolled_back' })
    expect(result.error).toContain('verify failed; the databases were restored to the snapshot')
    expect((await cluster.extensionVersions(db)).pgxu_breaking).toBe('1.0')
    expect((await cluster.query<{ n: number }>('SELECT count(*)::int AS n FROM orders', db))[0].n).toBe(250)
    expect((await cluster.query<{ g: string }>('SELECT greeting() AS g', db))[0].g).toBe('hello')
  })

  it('without a snapshot, rolls back by downgrade scripts to the planned versions when every changed extension has one', async () => {
    const db = uniqueName('run_down')
    await cluster.createDatabase(db, { pgxu_down: '1.0' })
    await cluster.query(`CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 40)`, db)
    const result = await run(db, { extensions: 'pgxu_down', 'snapshot-strategy': 'none', 'verify-sql': 'SELECT 1; -- expect: 2' })
    expect(result.status).toBe('rolled_back')
    expect(fails(result)).toBe(true)
    expect(stages(result)).toEqual({ 'dry-run': 'dry_run_approved', snapshot: 'skipped', execute: 'success', verify: 'verify_failed', rollback: 'rolled_back' })
    const report = result.report as RunReport
    expect(report.rollback).toMatchObject({ status: 'rolled_back', strategy: 'downgrade', databases: [{ name: db, outcome: 'rolled_back', before: { pgxu_down: '1.1' }, after: { pgxu_down: '1.0' } }] })
    expect(report.rollback?.snapshot).toBeUndefined()
    expect(result.error).toContain('brought back to their planned versions by downgrade scripts')
    expect((await cluster.extensionVersions(db)).pgxu_down).toBe('1.0')
    expect((await cluster.query<{ n: number }>('SELECT count(*)::int AS n FROM orders', db))[0].n).toBe(40)
  })

  it('stops before anything moves on a blocked plan', async () => {
    const db = uniqueName('run_blocked')
    await cluster.createDatabase(db, { hstore: '1.4' })
    const result = await run(db, { extensions: 'hstore, no_such_extension' })
    expect(result.status).toBe('dry_run_blocked')
    expect(stages(result)).toMatchObject({ snapshot: 'not_reached', execute: 'not_reached' })
    expect((await cluster.extensionVersions(db)).hstore).toBe('1.4')
  })

  requires('pg_dump', 'pg_restore').it('when the rollback is impossible too, says failed, where the databases stand and what to do', async () => {
    const db = uniqueName('run_noway')
    await cluster.createDatabase(db, { pgxu_breaking: '1.0' })
    const none = await run(db, { extensions: 'pgxu_breaking', 'snapshot-strategy': 'none', 'verify-sql': 'SELECT greeting(); -- expect: hello' })
    expect(none.status).toBe('failed')
    // pgxu_breaking ships no script back from 1.1: the downgrade is checked, found impossible, nothing touched.
    expect(stages(none)).toMatchObject({ snapshot: 'skipped', verify: 'verify_failed', rollback: 'rollback_failed' })
    const guidance = (none.report as RunReport).guidance!
    expect(guidance).toContain(`${db}: pgxu_breaking at 1.1`)
    expect(none.error).toContain('there is no way back: no snapshot')
    expect(none.errors.map((e) => e.code)).toContain('NO_UPDATE_PATH')
    expect((await cluster.extensionVersions(db)).pgxu_breaking).toBe('1.1')

    const other = uniqueName('run_noway_pitr')
    await cluster.createDatabase(other, { pgxu_breaking: '1.0' })
    const refused = await run(other, { extensions: 'pgxu_breaking', 'snapshot-strategy': 'dump', 'rollback-strategy': 'downgrade', 'verify-sql': 'SELECT greeting(); -- expect: hello' })
    expect(refused.status).toBe('failed')
    expect(stages(refused)).toMatchObject({ verify: 'verify_failed', rollback: 'rollback_failed' })
    expect(refused.error).toContain('the rollback failed too')
    expect((refused.report as RunReport).guidance?.[0]).toBe('The databases are now at:')
  })
})
