import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import type { ExecuteReport } from '../src/modes/execute.js'
import type { DriftReport } from '../src/modes/drift.js'
import { removeExtensionFiles, writeExtensionFiles } from './harness/fixtures.js'
import { startCluster, type Cluster } from './harness/postgres.js'
import { dryRun, requires, runInProcess, testCluster } from './helpers.js'

const cluster = await testCluster()
const tenants = Array.from({ length: 8 }, (_, i) => `fleet_t${String(i + 1).padStart(2, '0')}`)
const archived = ['fleet_t_archive_1', 'fleet_t_archive_2']

const outcomes = (result: { report?: unknown }) =>
  Object.fromEntries((result.report as ExecuteReport).databases.map((d) => [d.name, d.outcome]))

async function makeFleet(extensions: Record<string, string>, extra: Record<string, Record<string, string>> = {}) {
  for (const name of [...tenants, ...archived]) await cluster.createDatabase(name, { ...extensions, ...(extra[name] ?? {}) })
}

describe('fleet targeting', () => {
  beforeAll(async () => {
    await makeFleet({ hstore: '1.4' })
    await cluster.query(`CREATE EXTENSION hstore VERSION '1.4'`, 'template1')
  })
  afterAll(async () => {
    await cluster.query(`DROP EXTENSION hstore`, 'template1')
  })

  const planned = async (inputs: Record<string, string>) => (await dryRun(cluster, 'postgres', { extensions: 'hstore', ...inputs })).databases.map((d) => d.name)

  it('expands patterns and removes exclusions', async () => {
    expect(await planned({ databases: 'fleet_t*', 'exclude-databases': 'fleet_t_archive_*' })).toEqual(tenants)
    expect(await planned({ databases: 'fleet_t01, fleet_t0[23]\nfleet_t_archive_2' })).toEqual(['fleet_t01', 'fleet_t02', 'fleet_t03', 'fleet_t_archive_2'])
  })

  it('reaches templates only when named, and all means every connectable non-template database', async () => {
    const all = await planned({ databases: 'all', extensions: '' })
    expect(all).toEqual(expect.arrayContaining([...tenants, ...archived, 'postgres']))
    expect(all).not.toContain('template1')
    expect(await planned({ databases: 'template*, fleet_t01' })).toEqual(['fleet_t01'])
    const named = await dryRun(cluster, 'postgres', { databases: 'template1', extensions: 'hstore' })
    expect(named.databases.map((d) => d.name)).toEqual(['template1'])
    expect(named.databases[0].extensions[0]).toMatchObject({ from: '1.4', to: '1.8', action: 'update' })
  })

  it('refuses a selection that matches nothing, listing what exists, and a database that takes no connections', async () => {
    const none = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url('postgres'), databases: 'nope_*' })
    expect(none.status).toBe('failed')
    expect(none.errors[0].code).toBe('INVALID_INPUT')
    expect(none.error).toContain('input "databases": nope_* matches no database')
    expect(none.error).toContain('fleet_t01')
    const excluded = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url('postgres'), databases: 'fleet_t0*', 'exclude-databases': 'fleet_t*' })
    expect(excluded.error).toContain('minus exclude-databases')
    const zero = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url('postgres'), databases: 'template0' })
    expect(zero.error).toContain('template0 does not allow connections')
  })
})

describe('fleet execution', () => {
  it('keeps at most `concurrency` databases in flight (observed in pg_stat_activity)', async () => {
    await makeFleet({ pgxu_slow: '1.0' })
    const samples: Array<{ coordinators: number; updates: number }> = []
    let done = false
    const sampler = (async () => {
      while (!done) {
        const rows = await cluster.query<{ coordinators: string; updates: string }>(
          // A database in flight has a coordinator, which names itself an update while it runs one.
          `SELECT count(DISTINCT datname) FILTER (WHERE application_name IN ('pg-extension-upgrade/coordinator', 'pg-extension-upgrade/update'))::text AS coordinators,
                  count(*) FILTER (WHERE application_name = 'pg-extension-upgrade/update')::text AS updates
           FROM pg_stat_activity WHERE datname LIKE 'fleet_t%'`
        )
        samples.push({ coordinators: Number(rows[0].coordinators), updates: Number(rows[0].updates) })
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    })()
    const result = await runInProcess({ mode: 'execute', 'database-url': cluster.url('postgres'), databases: 'fleet_t0*', extensions: 'pgxu_slow', concurrency: '3' })
    done = true
    await sampler
    expect(result.status).toBe('success')
    expect((result.report as ExecuteReport).counts).toEqual({ updated: 8, current: 0, failed: 0, notStarted: 0 })
    expect(Math.max(...samples.map((s) => s.coordinators))).toBe(3)
    expect(Math.max(...samples.map((s) => s.updates))).toBe(3)
  })

  describe('a tenant whose update fails', () => {
    beforeAll(async () => {
      await makeFleet({ hstore: '1.4' }, { fleet_t03: { pgxu_fail: '1.0' } })
    })

    it('on-failure stop: no new database starts after the failure', async () => {
      const result = await runInProcess({ mode: 'execute', 'database-url': cluster.url('postgres'), databases: 'fleet_t0*', concurrency: '1' })
      expect(result.status).toBe('failed')
      expect(outcomes(result)).toEqual({
        fleet_t01: 'updated', fleet_t02: 'updated', fleet_t03: 'failed',
        fleet_t04: 'not_started', fleet_t05: 'not_started', fleet_t06: 'not_started', fleet_t07: 'not_started', fleet_t08: 'not_started'
      })
      expect((result.report as ExecuteReport).counts).toEqual({ updated: 2, current: 0, failed: 1, notStarted: 5 })
      expect(result.error).toContain('1 database(s) failed, 5 not started')
    })

    it('a re-run touches only the databases still behind; continue attempts every one', async () => {
      const result = await runInProcess({ mode: 'execute', 'database-url': cluster.url('postgres'), databases: 'fleet_t0*', 'on-failure': 'continue', concurrency: '2' })
      expect(result.status).toBe('failed')
      const byName = outcomes(result)
      expect(byName).toMatchObject({ fleet_t01: 'current', fleet_t02: 'current', fleet_t03: 'failed', fleet_t04: 'updated', fleet_t08: 'updated' })
      const t03 = (result.report as ExecuteReport).databases.find((d) => d.name === 'fleet_t03')!
      // Its hstore went through in the first run, so with no extensions listed only pgxu_fail is still behind.
      expect(t03.extensions.map((e) => e.name)).toEqual(['pgxu_fail'])
      expect(t03.extensions.find((e) => e.name === 'pgxu_fail')).toMatchObject({ outcome: 'failed', finalVersion: '1.0' })
    })

    it('max-failures stops starting databases once the budget is spent', async () => {
      await makeFleet({ hstore: '1.4' }, { fleet_t02: { pgxu_fail: '1.0' }, fleet_t04: { pgxu_fail: '1.0' } })
      const result = await runInProcess({ mode: 'execute', 'database-url': cluster.url('postgres'), databases: 'fleet_t0*', 'on-failure': 'continue', 'max-failures': '2', concurrency: '1' })
      expect(outcomes(result)).toMatchObject({ fleet_t01: 'updated', fleet_t02: 'failed', fleet_t03: 'updated', fleet_t04: 'failed', fleet_t05: 'not_started' })
    })
  })

  it('a canary that fails verify stops the rollout before the rest start', async () => {
    await makeFleet({ hstore: '1.4' })
    for (const name of tenants.slice(1)) await cluster.query(`CREATE TABLE app_ready (ok boolean); INSERT INTO app_ready VALUES (true)`, name)
    const result = await runInProcess({
      mode: 'execute',
      'database-url': cluster.url('postgres'),
      databases: 'fleet_t0*',
      extensions: 'hstore',
      canary: '1',
      'verify-sql': 'SELECT ok FROM app_ready; -- expect: t'
    })
    expect(result.status).toBe('failed')
    const report = result.report as ExecuteReport
    expect(report.canary).toEqual(['fleet_t01'])
    expect(report.databases[0]).toMatchObject({ name: 'fleet_t01', outcome: 'failed', code: 'VERIFY_FAILED', canary: { verified: false } })
    expect(report.counts.notStarted).toBe(7)
    expect((await cluster.extensionVersions('fleet_t02')).hstore).toBe('1.4')

    await cluster.query(`CREATE TABLE app_ready (ok boolean); INSERT INTO app_ready VALUES (true)`, 'fleet_t01')
    const passed = await runInProcess({ mode: 'execute', 'database-url': cluster.url('postgres'), databases: 'fleet_t0*', extensions: 'hstore', canary: '2', 'verify-sql': 'SELECT ok FROM app_ready; -- expect: t' })
    expect(passed.status).toBe('success')
    expect((passed.report as ExecuteReport).databases.slice(0, 2).map((d) => d.canary?.verified)).toEqual([true, true])
  })
})

describe('drift', () => {
  let reference: Cluster
  const gone = { name: 'pgxu_gone', files: { 'pgxu_gone.control': "default_version = '1.0'\nrelocatable = true\n", 'pgxu_gone--1.0.sql': 'SELECT 1;\n', 'pgxu_gone--1.0--2.0.sql': 'SELECT 2;\n' } }
  const vanish = { 'pgxu_vanish.control': "default_version = '1.0'\nrelocatable = true\n", 'pgxu_vanish--1.0.sql': 'SELECT 1;\n' }

  beforeAll(async () => {
    writeExtensionFiles(cluster.info.shareDir, { ...gone.files, ...vanish })
    await cluster.createDatabase('drift_behind', { hstore: '1.4', pg_trgm: '1.6' })
    await cluster.createDatabase('drift_current', { hstore: '1.8', pg_trgm: '1.6' })
    await cluster.createDatabase('drift_odd', { hstore: '1.8', pgxu_gone: '2.0', pgxu_vanish: '1.0' })
    removeExtensionFiles(cluster.info.shareDir, ['pgxu_gone--1.0--2.0.sql', 'pgxu_vanish.control', 'pgxu_vanish--1.0.sql'])
    reference = await startCluster({ settings: { work_mem: "'64MB'" } })
    await reference.createDatabase('prod', { hstore: '1.8', pg_trgm: '1.5' })
  })
  afterAll(async () => {
    removeExtensionFiles(cluster.info.shareDir, Object.keys(gone.files))
    await reference.destroy()
  })

  const drift = (inputs: Record<string, string>) => runInProcess({ mode: 'drift', 'database-url': cluster.url('postgres'), ...inputs })
  const entry = (report: DriftReport, database: string, extension: string) =>
    report.databases.find((d) => d.name === database)!.extensions.find((e) => e.extension === extension)!

  it('tells catalog behind, catalog ahead, unavailable and fleet skew apart, with the probed library', async () => {
    const result = await drift({ databases: 'drift_*' })
    expect(result.status).toBe('drift_detected')
    const report = result.report as DriftReport
    expect(entry(report, 'drift_behind', 'hstore')).toMatchObject({ catalog: '1.4', control: '1.8', class: 'catalog_behind' })
    expect(entry(report, 'drift_current', 'hstore').class).toBe('ok')
    expect(entry(report, 'drift_current', 'pg_trgm').library).toBeNull()
    expect(entry(report, 'drift_odd', 'pgxu_gone')).toMatchObject({ catalog: '2.0', control: '1.0', class: 'catalog_ahead' })
    expect(entry(report, 'drift_odd', 'pgxu_vanish')).toMatchObject({ class: 'unavailable', control: null })
    expect(report.fleet.map((f) => f.extension)).toEqual(['hstore'])
    expect(report.fleet[0].versions).toEqual({ '1.4': ['drift_behind'], '1.8': ['drift_current', 'drift_odd'] })
    expect(JSON.parse(result.outputs!.drift!).status).toBe('drift_detected')
  })

  it('compares each database with the target, not with the majority; fail-on-drift decides the exit', async () => {
    const behind = await drift({ databases: 'drift_behind', extensions: 'hstore@1.4, pg_trgm' })
    expect(behind.status).toBe('no_drift')
    const strict = await drift({ databases: 'drift_current, drift_behind', extensions: 'pg_trgm' })
    expect(strict.status).toBe('no_drift')
    const soft = await drift({ databases: 'drift_behind', extensions: 'hstore', 'fail-on-drift': 'false' })
    expect(soft.status).toBe('drift_detected')
    expect(soft.fails).toBe(false)
    expect(soft.warnings).toHaveLength(1)
  })

  requires('postgis').it('probes the library version of an extension with a C library (PostGIS)', async () => {
    await cluster.createDatabase('postgis_drift', { postgis: '3.3.2' })
    const result = await drift({ databases: 'postgis_drift', extensions: 'postgis' })
    expect(result.status).toBe('no_drift')
    expect(entry(result.report as DriftReport, 'postgis_drift', 'postgis')).toMatchObject({ class: 'ok', library: '3.3.2', control: '3.3.2' })
  })

  it('works with a monitoring role that can only connect', async () => {
    await cluster.query(`DROP ROLE IF EXISTS pgxu_watch; CREATE ROLE pgxu_watch LOGIN PASSWORD 'watch-pw'`)
    const result = await runInProcess({ mode: 'drift', 'database-url': cluster.url('postgres', 'pgxu_watch', 'watch-pw'), databases: 'drift_current' })
    expect(result.status).toBe('no_drift')
  })

  it('lists parity differences with a reference server', async () => {
    const result = await drift({ databases: 'drift_behind', extensions: 'hstore@1.4', 'reference-database-url': reference.url('prod') })
    expect(result.status).toBe('drift_detected')
    const subjects = (result.report as DriftReport).parity.map((p) => `${p.subject}: ${p.target} vs ${p.reference}`)
    expect(subjects).toEqual(expect.arrayContaining(['extension hstore: 1.4 vs 1.8', 'extension pg_trgm: 1.6 vs 1.5', 'work_mem: 4096 × kB vs 65536 × kB']))
    expect(subjects.some((s) => s.startsWith('max_connections'))).toBe(false)
  })
})
