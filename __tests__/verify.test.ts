import { afterAll, describe, expect, it } from '@jest/globals'
import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { VerifyReport } from '../src/modes/verify.js'
import { installLibrary } from './harness/fixtures.js'
import { defaultVersion, dryRun, runInProcess, testCluster, uniqueName } from './helpers.js'

const cluster = await testCluster()

const verifyReport = (result: { report?: unknown }) => result.report as VerifyReport
const checks = (result: { report?: unknown }) => verifyReport(result).databases.flatMap((d) => d.checks)
const failed = (result: { report?: unknown }) => checks(result).filter((c) => !c.ok)

async function verify(database: string, inputs: Record<string, string> = {}, url = cluster.url(database)) {
  return runInProcess({ mode: 'verify', 'database-url': url, ...inputs })
}

describe('verify', () => {
  const db = uniqueName('verify_main')

  it('passes after an upgrade and reports what the update added and removed', async () => {
    await cluster.createDatabase(db, { hstore: '1.4', citext: '1.4' })
    await cluster.query(
      `CREATE TABLE people (name citext, tags hstore);
       CREATE INDEX people_name ON people (name);
       CREATE VIEW people_tags AS SELECT name, tags -> 'role' AS role FROM people;
       CREATE FUNCTION role_of(h hstore) RETURNS text LANGUAGE sql AS $$ SELECT h -> 'role' $$;`,
      db
    )
    const plan = await dryRun(cluster, db, { extensions: 'hstore, citext' })
    const executed = await runInProcess({ mode: 'execute', 'database-url': cluster.url(db), plan: JSON.stringify(plan) })
    expect(executed.status).toBe('success')
    const result = await verify(db, { plan: JSON.stringify(plan) })
    expect(result.status).toBe('verified')
    expect(failed(result)).toEqual([])
    const names = new Set(checks(result).map((c) => c.check))
    expect([...names].sort()).toEqual(['dependents', 'library', 'members', 'version'])
    const library = checks(result).find((c) => c.check === 'library' && c.extension === 'hstore')!
    expect(library.message).toMatch(/all \d+ C function\(s\) resolve/)
    const dependents = (name: string) => checks(result).find((c) => c.check === 'dependents' && c.extension === name)!.message
    expect(dependents('hstore')).toBe('2 dependent user object(s) valid')
    expect(dependents('citext')).toBe('1 dependent user object(s) valid')
    const change = verifyReport(result).databases[0].memberChanges.citext
    expect(change.added.length + change.removed.length).toBeGreaterThan(0)
  })

  it('fails on a version other than the expected one, and on drift behind the default', async () => {
    const wrong = await verify(db, { extensions: 'hstore@1.7' })
    expect(wrong.status).toBe('verify_failed')
    expect(failed(wrong)).toEqual([expect.objectContaining({ check: 'version', extension: 'hstore', message: 'hstore is at 1.8, expected 1.7' })])

    const stale = uniqueName('verify_drift')
    await cluster.createDatabase(stale, { pg_trgm: '1.3' })
    const gate = await verify(stale)
    expect(gate.status).toBe('verify_failed')
    expect(failed(gate).map((c) => c.check).sort()).toEqual(['drift', 'version'])
    expect(gate.errors.map((e) => e.code).sort()).toEqual(['DRIFT', 'VERIFY_FAILED'])
  })

  it('runs the user probes read-only, comparing an expected value', async () => {
    await cluster.query(`INSERT INTO people VALUES ('Ada', 'role=>admin')`, db)
    const sql = [
      `SELECT count(*) FROM people; -- expect: 1`,
      `SELECT role_of(tags) FROM people WHERE name = 'ADA'; -- expect: admin`,
      `SELECT 'a;b' = 'a;b'; -- expect: t`,
      `SELECT $$ ; $$ <> ''`
    ].join('\n')
    const ok = await verify(db, { extensions: 'hstore, citext', 'verify-sql': sql })
    expect(ok.status).toBe('verified')
    expect(checks(ok).filter((c) => c.check === 'probe')).toHaveLength(4)

    const file = join(tmpdir(), `${uniqueName('probes')}.sql`)
    writeFileSync(file, `SELECT count(*) FROM people; -- expect: 2\nSELECT no_such_column FROM people;\nINSERT INTO people VALUES ('x', '');\nSELECT 1;\n`)
    const bad = await verify(db, { extensions: 'hstore', 'verify-sql': file })
    expect(bad.status).toBe('verify_failed')
    const probes = checks(bad).filter((c) => c.check === 'probe')
    expect(probes.map((p) => p.ok)).toEqual([false, false, false, true])
    expect(probes[0].message).toContain('returned "1", expected "2"')
    expect(probes[1].message).toContain('42703')
    expect(probes[2].message).toContain('read-only')
    expect((await cluster.query(`SELECT count(*)::int AS n FROM people`, db))[0].n).toBe(1)
  })

  it('fails when a dependent index is invalid', async () => {
    const broken = uniqueName('verify_index')
    await cluster.createDatabase(broken, { citext: await defaultVersion(cluster, 'citext') })
    await cluster.query(`CREATE TABLE t (k citext); INSERT INTO t VALUES ('a'), ('A')`, broken)
    await expect(cluster.query(`CREATE UNIQUE INDEX CONCURRENTLY t_k ON t (k)`, broken)).rejects.toThrow(/could not create unique index/)
    const result = await verify(broken, { extensions: 'citext' })
    expect(result.status).toBe('verify_failed')
    expect(failed(result)).toEqual([expect.objectContaining({ check: 'dependents', extension: 'citext', details: ['index t_k is invalid'] })])
  })
})

describe('verify against the installed libraries', () => {
  const pkgLibDir = cluster.info.pkgLibDir
  afterAll(() => installLibrary(pkgLibDir, 'pgxu_badlib', 'hstore'))

  it('finds C functions the installed library no longer provides (catalog newer than library)', async () => {
    const db = uniqueName('verify_lib')
    installLibrary(pkgLibDir, 'pgxu_badlib', 'hstore')
    await cluster.createDatabase(db, { pgxu_badlib: '1.0' })
    expect((await verify(db, { extensions: 'pgxu_badlib' })).status).toBe('verified')

    installLibrary(pkgLibDir, 'pgxu_badlib', 'citext')
    const result = await verify(db, { extensions: 'pgxu_badlib' })
    expect(result.status).toBe('verify_failed')
    const library = failed(result)[0]
    expect(library).toMatchObject({ check: 'library', extension: 'pgxu_badlib' })
    expect(library.details?.[0]).toContain('pgxu_badlib_diag()')
    expect(library.details?.[0]).toContain('could not find function "hstore_version_diag"')
    expect(result.errors[0].code).toBe('LIBRARY_MISMATCH')
  })

  it('skips the library check visibly for a role that may not call the C validator', async () => {
    const db = uniqueName('verify_monitor')
    await cluster.createDatabase(db, { hstore: '1.8' })
    await cluster.query(`DROP ROLE IF EXISTS pgxu_monitor; CREATE ROLE pgxu_monitor LOGIN PASSWORD 'monitor-pw'`)
    const result = await verify(db, { extensions: 'hstore' }, cluster.url(db, 'pgxu_monitor', 'monitor-pw'))
    expect(result.status).toBe('verified')
    const library = checks(result).find((c) => c.check === 'library')!
    expect(library).toMatchObject({ ok: true, skipped: true })
    expect(verifyReport(result).counts.skipped).toBe(1)
  })
})
