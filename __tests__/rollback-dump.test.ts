import { describe, expect, it } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { appendFileSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { SnapshotManifest } from '../src/core/recovery/manifest.js'
import type { RawInputs } from '../src/inputs.js'
import type { RollbackReport } from '../src/modes/rollback.js'
import { removeExtensionFiles, writeExtensionFiles } from './harness/fixtures.js'
import { SUPERUSER_PASSWORD, temporaryDirectory } from './harness/postgres.js'
import { requires, runInProcess, testCluster, uniqueName } from './helpers.js'

/** The per-database restore pinned to the recorded extension versions, on a real cluster. */
const cluster = await testCluster()

const takeDump = async (db: string) => {
  const result = await runInProcess({ mode: 'snapshot', 'database-url': cluster.url(db), 'snapshot-strategy': 'dump', 'snapshot-dir': temporaryDirectory('pgxu-dumps-') })
  expect(result.error).toBeUndefined()
  return result.outputs!.snapshot!
}
const rollback = (db: string, snapshot: string, inputs: RawInputs = {}) =>
  runInProcess({ mode: 'rollback', 'database-url': cluster.url(db), snapshot, 'rollback-strategy': 'dump', ...inputs })
const count = async (db: string, table: string) => Number((await cluster.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`, db))[0].n)
const databases = async () => (await cluster.query<{ datname: string }>('SELECT datname FROM pg_database ORDER BY 1')).map((r) => r.datname)

function pgRestore(db: string, file: string): { status: number | null; stderr: string } {
  const result = spawnSync(join(cluster.info.binDir, 'pg_restore'), ['-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', '-d', db, file], {
    encoding: 'utf8',
    env: { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD }
  })
  return { status: result.status, stderr: result.stderr }
}

requires('pg_dump', 'pg_restore').describe('dump rollback', () => {
  let snapshot = ''
  let db = ''

  it('restores one database at the OLD extension versions with every row, and leaves the other databases alone', async () => {
    db = uniqueName('dump_app')
    const neighbour = uniqueName('dump_neighbour')
    const owner = uniqueName('dump_owner')
    await cluster.query(`CREATE ROLE ${owner} LOGIN`)
    await cluster.createDatabase(db, { pgxu_dep: '1.0' })
    await cluster.query(`ALTER DATABASE ${db} OWNER TO ${owner}; ALTER DATABASE ${db} SET work_mem = '7MB'; COMMENT ON DATABASE ${db} IS 'the app'`)
    await cluster.query(
      `CREATE SCHEMA ext;
       CREATE EXTENSION hstore VERSION '1.7' SCHEMA ext;
       CREATE EXTENSION pg_trgm VERSION '1.5';
       CREATE TABLE items (id int PRIMARY KEY, attrs ext.hstore, name text);
       INSERT INTO items SELECT g, ext.hstore('k', g::text), 'item ' || g FROM generate_series(1, 2000) g;
       CREATE INDEX items_trgm ON items USING gin (name gin_trgm_ops);
       CREATE UNLOGGED TABLE cache AS SELECT g AS id FROM generate_series(1, 30) g;
       CREATE TABLE owned_by_app (id int); ALTER TABLE owned_by_app OWNER TO ${owner};`,
      db
    )
    await cluster.createDatabase(neighbour, { hstore: '1.7' })
    await cluster.query('CREATE TABLE t AS SELECT 1 AS id', neighbour)

    snapshot = await takeDump(db)
    const manifest = JSON.parse(readFileSync(snapshot, 'utf8')) as SnapshotManifest
    expect(manifest.databases[0].owner).toBe(owner)

    // After the snapshot: the upgrade, and writes in both databases.
    const upgrade = await runInProcess({ mode: 'execute', 'database-url': cluster.url(db), extensions: 'hstore@1.8, pg_trgm@1.6, pgxu_dep, pgxu_base' })
    expect(upgrade.status).toBe('success')
    await cluster.query(`INSERT INTO items SELECT g, NULL, 'late' FROM generate_series(2001, 2100) g`, db)
    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'`, neighbour)
    await cluster.query('INSERT INTO t VALUES (2)', neighbour)

    const result = await rollback(db, snapshot)
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('rolled_back')
    const report = result.report as RollbackReport
    expect(report.strategy).toBe('dump')

    expect(await cluster.extensionVersions(db)).toMatchObject({ hstore: '1.7', pg_trgm: '1.5', pgxu_base: '1.1', pgxu_dep: '1.0' })
    expect((await cluster.query<{ nspname: string }>(`SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE extname = 'hstore'`, db))[0].nspname).toBe('ext')
    expect(await count(db, 'items')).toBe(2000)
    expect(await count(db, 'cache')).toBe(30)
    expect((await cluster.query<{ v: string }>(`SELECT attrs OPERATOR(ext.->) 'k' AS v FROM items WHERE id = 7`, db))[0].v).toBe('7')
    expect((await cluster.query<{ n: string }>(`SELECT count(*) AS n FROM items WHERE name LIKE '%item 19%'`, db))[0].n).toBe('111')
    // The database itself: owner, settings, comment, the owner of its objects.
    const props = (
      await cluster.query<{ owner: string; comment: string; settings: string[]; tableowner: string }>(
        `SELECT pg_get_userbyid(d.datdba) AS owner, shobj_description(d.oid, 'pg_database') AS comment,
                (SELECT setconfig FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0) AS settings,
                (SELECT tableowner FROM pg_tables WHERE tablename = 'owned_by_app') AS tableowner
         FROM pg_database d WHERE datname = current_database()`,
        db
      )
    )[0]
    expect(props).toEqual({ owner, comment: 'the app', settings: ['work_mem=7MB'], tableowner: owner })
    // Verified against the manifest, and said so.
    const restored = report.databases.find((d) => d.name === db)!
    expect(restored.outcome).toBe('rolled_back')
    expect(restored.rowsChecked).toMatchObject({ tables: 3, rows: 2030, mismatches: [] })
    expect(report.discarded?.scope).toBe('databases')
    // The neighbour is untouched: still upgraded, with its later row.
    expect((await cluster.extensionVersions(neighbour)).hstore).toBe('1.8')
    expect(await count(neighbour, 't')).toBe(2)
    // keep-previous: the replaced database is kept, at the upgraded versions, with the late rows.
    expect(restored.keptAs).toMatch(new RegExp(`^${db}__pre_rollback_`))
    expect(await databases()).toContain(restored.keptAs)
    expect((await cluster.extensionVersions(restored.keptAs!)).hstore).toBe('1.8')
    expect(await count(restored.keptAs!, 'items')).toBe(2100)
  })

  it('shows why pinning matters: a plain pg_restore of the same dump lands on the NEW default version', async () => {
    const manifest = JSON.parse(readFileSync(snapshot, 'utf8')) as SnapshotManifest
    const naive = uniqueName('dump_naive')
    await cluster.createDatabase(naive)
    const restored = pgRestore(naive, join(dirname(snapshot), manifest.databases[0].dump!.file))
    expect(restored.status).toBe(0)
    // pg_dump wrote CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA ext: no VERSION.
    expect(await cluster.extensionVersions(naive)).toMatchObject({ hstore: '1.8', pg_trgm: '1.6', pgxu_dep: '1.1' })
    expect(manifest.databases[0].extensions.find((e) => e.name === 'hstore')?.version).toBe('1.7')
    expect(await count(naive, 'items')).toBe(2000)
  })

  it('is nothing_to_do once the database matches, and a second rollback after another upgrade works', async () => {
    const again = await rollback(db, snapshot)
    expect(again.status).toBe('nothing_to_do')
    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'`, db)
    await cluster.query(`DELETE FROM items WHERE id <= 10`, db)
    const second = await rollback(db, snapshot, { 'keep-previous': 'false' })
    expect(second.error).toBeUndefined()
    expect(second.status).toBe('rolled_back')
    expect((await cluster.extensionVersions(db)).hstore).toBe('1.7')
    expect(await count(db, 'items')).toBe(2000)
    const report = second.report as RollbackReport
    expect(report.databases[0].keptAs).toBeUndefined()
    expect((await databases()).filter((name) => name.startsWith(`${db}__pre_rollback_`))).toHaveLength(1)
  })

  it('refuses while other sessions are connected, and terminates them with terminate-connections', async () => {
    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'`, db)
    const session = await cluster.connect(db, { application_name: 'reporting-job' })
    try {
      const refused = await rollback(db, snapshot)
      expect(refused.status).toBe('rollback_failed')
      expect(refused.errors.map((e) => e.code)).toEqual(['SESSIONS_CONNECTED'])
      expect(refused.errors[0].message).toContain('reporting-job')
      expect(refused.error).toContain('Nothing was changed')
      expect((await cluster.extensionVersions(db)).hstore).toBe('1.8')

      const done = await rollback(db, snapshot, { 'terminate-connections': 'true', 'keep-previous': 'false' })
      expect(done.status).toBe('rolled_back')
      expect((await cluster.extensionVersions(db)).hstore).toBe('1.7')
      await expect(session.query('SELECT 1')).rejects.toThrow()
    } finally {
      await session.end().catch(() => undefined)
    }
  })

  it('puts the original database back when the restore fails midway (a role the dump needs was dropped)', async () => {
    const app = uniqueName('dump_fail')
    const helper = uniqueName('dump_helper')
    await cluster.query(`CREATE ROLE ${helper}`)
    await cluster.createDatabase(app, { hstore: '1.7' })
    await cluster.query(`CREATE TABLE a (id int); INSERT INTO a VALUES (1); CREATE TABLE b (id int); ALTER TABLE b OWNER TO ${helper}`, app)
    const snap = await takeDump(app)
    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'; INSERT INTO a VALUES (2); REASSIGN OWNED BY ${helper} TO postgres; DROP OWNED BY ${helper}`, app)
    await cluster.query(`DROP ROLE ${helper}`)
    const result = await rollback(app, snap)
    expect(result.status).toBe('rollback_failed')
    const failed = (result.report as RollbackReport).databases[0]
    expect(failed.outcome).toBe('put_back')
    expect(failed.detail).toContain(helper)
    expect(failed.detail).toContain('was put back under its name')
    expect((await cluster.extensionVersions(app)).hstore).toBe('1.8')
    expect(await count(app, 'a')).toBe(2)
    expect((await databases()).filter((name) => name.startsWith(`${app}__`))).toEqual([])
  })

  it('refuses a dump that fails its checksum (SNAPSHOT_CORRUPT), changing nothing', async () => {
    const app = uniqueName('dump_corrupt')
    await cluster.createDatabase(app, { hstore: '1.7' })
    const snap = await takeDump(app)
    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'`, app)
    const manifest = JSON.parse(readFileSync(snap, 'utf8')) as SnapshotManifest
    appendFileSync(join(dirname(snap), manifest.databases[0].dump!.file), 'x')
    const result = await rollback(app, snap)
    expect(result.status).toBe('rollback_failed')
    expect(result.errors.map((e) => e.code)).toEqual(['SNAPSHOT_CORRUPT'])
    expect((await cluster.extensionVersions(app)).hstore).toBe('1.8')
    expect((await databases()).filter((name) => name.startsWith(`${app}__`))).toEqual([])
  })

  it('refuses when the recorded version is no longer shipped (VERSION_NOT_AVAILABLE)', async () => {
    const name = 'pgxu_shortlived'
    const files = {
      [`${name}.control`]: `default_version = '1.1'\nrelocatable = true\n`,
      [`${name}--1.0.sql`]: `CREATE FUNCTION pgxu_shortlived_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0' $$;\n`,
      [`${name}--1.0--1.1.sql`]: `CREATE OR REPLACE FUNCTION pgxu_shortlived_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.1' $$;\n`
    }
    writeExtensionFiles(cluster.info.shareDir, files)
    try {
      const app = uniqueName('dump_gone')
      await cluster.createDatabase(app, { [name]: '1.0' })
      const snap = await takeDump(app)
      await cluster.query(`ALTER EXTENSION ${name} UPDATE TO '1.1'`, app)
      removeExtensionFiles(cluster.info.shareDir, [`${name}--1.0.sql`]) // the package upgrade removed the old script
      const result = await rollback(app, snap)
      expect(result.status).toBe('rollback_failed')
      expect(result.errors.map((e) => e.code)).toEqual(['VERSION_NOT_AVAILABLE'])
      expect((await cluster.extensionVersions(app))[name]).toBe('1.1')
    } finally {
      removeExtensionFiles(cluster.info.shareDir, Object.keys(files))
    }
  })
})
