import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import type pg from 'pg'
import { codes, defaultVersion, dryRun, entry, runInProcess, testCluster, uniqueName } from './helpers.js'

const cluster = await testCluster()

describe('dry-run on real contrib update paths', () => {
  const db = uniqueName('dryrun_contrib')

  beforeAll(async () => {
    await cluster.createDatabase(db, { hstore: '1.4', pg_trgm: '1.3', citext: '1.4', cube: '1.2', earthdistance: '1.1' })
    await cluster.query(
      `CREATE TABLE docs (id int, tags hstore, title text);
       CREATE INDEX docs_tags ON docs USING gin (tags);
       CREATE VIEW docs_a AS SELECT id, tags -> 'a' AS a FROM docs;`,
      db
    )
  })

  it('plans every hop PostgreSQL will walk, for an exact version and for the default', async () => {
    const plan = await dryRun(cluster, db, { extensions: 'hstore@1.8\npg_trgm' })
    expect(plan.status).toBe('dry_run_approved')
    expect(entry(plan, 'hstore')).toMatchObject({ from: '1.4', to: '1.8', path: ['1.4', '1.5', '1.6', '1.7', '1.8'], action: 'update' })
    expect(entry(plan, 'pg_trgm')).toMatchObject({ from: '1.3', to: '1.6', path: ['1.3', '1.4', '1.5', '1.6'], action: 'update' })
    expect(plan.blockers).toEqual([])
    expect(plan.schemaVersion).toBe(1)
    expect(plan.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/)
  })

  it('with no extensions listed, targets every installed extension behind its default', async () => {
    const plan = await dryRun(cluster, db)
    const planned = plan.databases[0].extensions.map((e) => `${e.name}:${e.from}->${e.to}`).sort()
    const installed = { citext: '1.4', cube: '1.2', earthdistance: '1.1', hstore: '1.4', pg_trgm: '1.3' }
    const expected: string[] = []
    for (const [name, from] of Object.entries(installed)) {
      const to = await defaultVersion(cluster, name)
      if (to !== from) expected.push(`${name}:${from}->${to}`)
    }
    expect(expected).toEqual(expect.arrayContaining(['cube:1.2->1.5', 'hstore:1.4->1.8', 'pg_trgm:1.3->1.6']))
    expect(planned).toEqual(expected)
  })

  it('orders required extensions first (cube before earthdistance)', async () => {
    const plan = await dryRun(cluster, db, { extensions: 'earthdistance, cube' })
    expect(entry(plan, 'cube').order).toBeLessThan(entry(plan, 'earthdistance').order)
    // earthdistance 1.1 is the default up to PostgreSQL 17; 18 ships 1.2.
    expect(entry(plan, 'earthdistance').action).toBe((await defaultVersion(cluster, 'earthdistance')) === '1.1' ? 'none' : 'update')
  })

  it('lists user objects that depend on extension members', async () => {
    const plan = await dryRun(cluster, db, { extensions: 'hstore' })
    const dependents = entry(plan, 'hstore').dependents
    expect(dependents?.count).toBe(3)
    expect(dependents?.sample).toEqual(expect.arrayContaining(['column tags of table docs', 'index docs_tags']))
    expect(codes(plan.warnings)).toContain('DEPENDENT_OBJECTS')
  })

  it('reports an unknown extension and an unknown version, listing what exists', async () => {
    const plan = await dryRun(cluster, db, { extensions: 'no_such_extension, hstore@9.9' })
    expect(plan.status).toBe('dry_run_blocked')
    expect(codes(plan.blockers)).toEqual(['EXTENSION_NOT_AVAILABLE', 'VERSION_NOT_AVAILABLE'])
    const version = plan.blockers.find((b) => b.code === 'VERSION_NOT_AVAILABLE')!
    expect(version.message).toContain('1.4')
    expect(version.message).toContain('1.8')
  })

  it('refuses a downgrade unless allowed, and reports a missing path with the reachable versions', async () => {
    const newer = uniqueName('dryrun_newer')
    await cluster.createDatabase(newer, { hstore: '1.8', pgxu_down: '1.1' })
    const down = await dryRun(cluster, newer, { extensions: 'hstore@1.4, pgxu_down@1.0' })
    expect(codes(down.blockers)).toEqual(['DOWNGRADE_NOT_ALLOWED', 'DOWNGRADE_NOT_ALLOWED'])
    const allowed = await dryRun(cluster, newer, { extensions: 'hstore@1.4, pgxu_down@1.0', 'allow-downgrade': 'true' })
    expect(codes(allowed.blockers)).toEqual(['NO_UPDATE_PATH'])
    expect(allowed.blockers[0].message).toContain('reachable from 1.8: none')
    expect(entry(allowed, 'pgxu_down')).toMatchObject({ action: 'update', direction: 'downgrade', path: ['1.1', '1.0'] })
  })

  it('lists the versions reachable from the installed one when the target has no path', async () => {
    const hop = uniqueName('dryrun_hop')
    await cluster.createDatabase(hop, { pgxu_hop: '1.0' })
    const plan = await dryRun(cluster, hop, { extensions: 'pgxu_hop@3.0' })
    expect(codes(plan.blockers)).toEqual(['NO_UPDATE_PATH'])
    expect(plan.blockers[0].message).toContain('reachable from 1.0: 0.9, 2.0')
  })

  it('blocks an extension that is not installed unless install-missing', async () => {
    const plan = await dryRun(cluster, db, { extensions: 'isn' })
    expect(codes(plan.blockers)).toEqual(['NOT_INSTALLED'])
    const install = await dryRun(cluster, db, { extensions: 'isn', 'install-missing': 'true' })
    expect(install.status).toBe('dry_run_approved')
    expect(entry(install, 'isn')).toMatchObject({ action: 'install', from: null })
  })

  it('answers nothing_to_do when every target already matches', async () => {
    const plan = await dryRun(cluster, db, { extensions: 'earthdistance@1.1, cube@1.2' })
    expect(plan.status).toBe('nothing_to_do')
  })

  it('changes nothing: no catalog change and no committed write', async () => {
    const before = await cluster.extensionVersions(db)
    const stats = async () =>
      (await cluster.query<{ tup: string }>(`SELECT (tup_inserted + tup_updated + tup_deleted)::text AS tup FROM pg_stat_database WHERE datname = $1`, 'postgres', [db]))[0].tup
    // 15 and later flush on request; 14's stats collector gets a backend's counts at its exit and
    // publishes them within its 500 ms interval.
    const flush = async () => {
      if ((await cluster.query<{ n: number }>('SELECT current_setting($1)::int AS n', 'postgres', ['server_version_num']))[0].n >= 150000) {
        await cluster.query('SELECT pg_stat_force_next_flush()', db)
      } else await new Promise((resolve) => setTimeout(resolve, 1500))
    }
    await flush()
    const writesBefore = await stats()
    await dryRun(cluster, db, { extensions: 'hstore, pg_trgm, citext, cube', 'install-missing': 'true' })
    await flush()
    expect(await cluster.extensionVersions(db)).toEqual(before)
    expect(await stats()).toBe(writesBefore)
  })
})

describe('dry-run checks with fixture extensions', () => {
  const db = uniqueName('dryrun_fixtures')
  let holder: pg.Client

  beforeAll(async () => {
    await cluster.createDatabase(db, { pgxu_lock: '1.0', pgxu_hop: '1.0', pgxu_dep: '1.0' })
    holder = await cluster.connect(db, { application_name: 'lock-holder' })
  })

  afterAll(async () => {
    await holder.end()
  })

  it('warns about a path that passes through a lower version', async () => {
    const plan = await dryRun(cluster, db, { extensions: 'pgxu_hop' })
    expect(entry(plan, 'pgxu_hop').path).toEqual(['1.0', '0.9', '2.0'])
    expect(codes(plan.warnings)).toEqual(['DOWNGRADE_HOP'])
    expect(plan.status).toBe('dry_run_approved')
  })

  it('blocks on a lock held on an extension-owned table, naming the session', async () => {
    await holder.query('BEGIN')
    await holder.query('SELECT * FROM pgxu_lock_data')
    try {
      const plan = await dryRun(cluster, db, { extensions: 'pgxu_lock' })
      const conflict = plan.blockers.find((b) => b.code === 'LOCK_CONFLICT')!
      expect(conflict).toBeDefined()
      expect(conflict.sessions?.[0]).toMatchObject({ application: 'lock-holder', relation: 'pgxu_lock_data', mode: 'AccessShareLock' })
      expect(conflict.message).toContain(`pid ${(holder as unknown as { processID: number }).processID}`)
    } finally {
      await holder.query('ROLLBACK')
    }
  })

  it('warns about long transactions with their pid, user, application, age and query', async () => {
    await holder.query('BEGIN')
    await holder.query('SELECT 42 AS long_running_marker')
    await new Promise((resolve) => setTimeout(resolve, 300))
    try {
      const plan = await dryRun(cluster, db, { extensions: 'pgxu_lock', 'long-transaction-threshold': '100ms' })
      const long = plan.warnings.find((w) => w.code === 'LONG_TRANSACTION')!
      expect(long.sessions?.[0]).toMatchObject({ application: 'lock-holder', user: 'postgres' })
      expect(long.message).toContain('long_running_marker')
    } finally {
      await holder.query('ROLLBACK')
    }
  })

  it('requires the required extension to be installed or planned first', async () => {
    await cluster.query('DROP EXTENSION pgxu_dep; DROP EXTENSION pgxu_base', db)
    try {
      const missing = await dryRun(cluster, db, { extensions: 'pgxu_dep', 'install-missing': 'false' })
      expect(codes(missing.blockers)).toEqual(['NOT_INSTALLED'])
      const cascade = await dryRun(cluster, db, { extensions: 'pgxu_dep', 'install-missing': 'true' })
      expect(cascade.status).toBe('dry_run_approved')
      expect(entry(cascade, 'pgxu_base')).toMatchObject({ action: 'install', requiredBy: 'pgxu_dep' })
      expect(entry(cascade, 'pgxu_base').order).toBeLessThan(entry(cascade, 'pgxu_dep').order)
    } finally {
      await cluster.query('CREATE EXTENSION pgxu_dep VERSION \'1.0\' CASCADE', db)
    }
  })

  it('marks staged extensions, from the input list', async () => {
    await cluster.query(`CREATE EXTENSION IF NOT EXISTS pgxu_staged VERSION '1.0'`, db)
    const plan = await dryRun(cluster, db, { extensions: 'pgxu_staged', 'staged-extensions': 'pgxu_staged' })
    expect(entry(plan, 'pgxu_staged').staged?.reason).toContain('staged-extensions')
  })

  it('blocks with INVALID_INPUT before connecting, naming the input', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': 'postgresql://nobody@192.0.2.1:1/x', extensions: 'hstore; drop table t', 'lock-timeout': '5 parsecs' })
    expect(result.status).toBe('failed')
    expect(result.errors[0].code).toBe('INVALID_INPUT')
    expect(result.error).toContain('input "extensions"')
    expect(result.error).toContain('input "lock-timeout"')
    expect(result.plan).toBeUndefined()
  })
})
