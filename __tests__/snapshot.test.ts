import { describe, expect, it } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { SnapshotManifest } from '../src/core/recovery/manifest.js'
import type { RawInputs } from '../src/inputs.js'
import type { SnapshotReport } from '../src/modes/snapshot.js'
import { chownToOwner, SUPERUSER_PASSWORD, type Cluster, temporaryDirectory } from './harness/postgres.js'
import { requires, runInProcess, testCluster, uniqueName } from './helpers.js'

/** The snapshot mode on real clusters: one with WAL archiving, one without. */
const archiving = await testCluster({ archive: true })
const plain = await testCluster()

const snapshotDir = () => temporaryDirectory('pgxu-snapshots-')
const snap = (cluster: Cluster, database: string, inputs: RawInputs = {}) =>
  runInProcess({ mode: 'snapshot', 'database-url': cluster.url(database), 'snapshot-dir': snapshotDir(), 'wait-timeout': '30s', ...inputs })
const manifestOf = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as SnapshotManifest
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex')

/** Restore points named in WAL files (pg_waldump), anywhere in a directory of segments. */
function restorePointsIn(cluster: Cluster, dir: string): string[] {
  const segments = readdirSync(dir).filter((name) => /^[0-9A-F]{24}$/.test(name)).sort()
  const names: string[] = []
  for (const segment of segments) {
    const result = spawnSync(join(cluster.info.binDir, 'pg_waldump'), ['-p', dir, '-r', 'XLOG', segment, segment], { encoding: 'utf8' })
    for (const match of result.stdout.matchAll(/desc: RESTORE_POINT (\S+)/g)) names.push(match[1])
  }
  return names
}

async function switchAndWait(cluster: Cluster): Promise<void> {
  const before = (await cluster.query<{ n: string }>('SELECT archived_count AS n FROM pg_stat_archiver'))[0].n
  // pg_switch_wal() does nothing without WAL since the last switch, and only a new segment wakes
  // an archiver that is backing off after failures.
  await cluster.query('CREATE TABLE IF NOT EXISTS wal_nudge (x int); INSERT INTO wal_nudge VALUES (1)')
  await cluster.query('SELECT pg_switch_wal()')
  for (let i = 0; i < 200; i++) {
    const now = (await cluster.query<{ n: string }>('SELECT archived_count AS n FROM pg_stat_archiver'))[0].n
    if (Number(now) > Number(before)) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('nothing was archived')
}

requires('pg_basebackup').describe('snapshot-strategy basebackup', () => {
  it('takes a verified base backup, then a restore point after it, archived, and records everything a rollback needs', async () => {
    const db = uniqueName('snap_bb')
    await archiving.createDatabase(db, { pgxu_dep: '1.0' })
    await archiving.query(`CREATE SCHEMA extensions; CREATE EXTENSION hstore VERSION '1.6' SCHEMA extensions`, db)
    const result = await snap(archiving, db, { 'snapshot-strategy': 'basebackup' })
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('snapshot_created')
    const outputs = result.outputs!
    expect(outputs['snapshot-strategy']).toBe('basebackup')
    const manifest = manifestOf(outputs.snapshot!)
    const server = (
      await archiving.query<{ id: string; version: string; lsn_wal: string; tl: number }>(
        `SELECT system_identifier::text AS id, current_setting('server_version') AS version, pg_walfile_name($1::pg_lsn) AS lsn_wal,
                ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int AS tl FROM pg_control_system()`,
        'postgres',
        [outputs['restore-lsn']]
      )
    )[0]
    expect(manifest).toMatchObject({
      kind: 'pg-extension-upgrade/snapshot',
      strategy: 'basebackup',
      id: outputs['restore-point'],
      server: { systemIdentifier: server.id, version: server.version, timeline: server.tl, walSegmentSize: 16 * 1024 * 1024 },
      archive: { method: 'archive_command', directory: archiving.info.archiveDir },
      restorePoint: { name: outputs['restore-point'], lsn: outputs['restore-lsn'], walFile: server.lsn_wal, timeline: server.tl }
    })
    expect(Buffer.byteLength(manifest.id)).toBeLessThanOrEqual(63)
    expect(manifest.server.clusterDatabases).toEqual(expect.arrayContaining([db, 'postgres', 'template1']))
    // The restore point lies after the end of the backup, its segment is archived.
    const [rpHigh, rpLow] = manifest.restorePoint!.lsn.split('/').map((x) => parseInt(x, 16))
    const [endHigh, endLow] = manifest.baseBackup!.endLsn!.split('/').map((x) => parseInt(x, 16))
    expect(rpHigh * 2 ** 32 + rpLow).toBeGreaterThan(endHigh * 2 ** 32 + endLow)
    expect(existsSync(join(archiving.info.archiveDir!, manifest.restorePoint!.walFile))).toBe(true)
    expect(manifest.restorePoint!.uniqueness).toContain('exactly one')
    // Exactly one restore point of this name in the archive.
    expect(restorePointsIn(archiving, archiving.info.archiveDir!).filter((name) => name === manifest.id)).toHaveLength(1)
    // The base backup: plain, verified, and still verifiable.
    const base = join(dirname(outputs.snapshot!), manifest.baseBackup!.path!)
    expect(manifest.baseBackup).toMatchObject({ external: false, format: 'plain', label: `pg-extension-upgrade ${manifest.id}` })
    expect(readFileSync(join(base, 'backup_label'), 'utf8')).toContain(`LABEL: pg-extension-upgrade ${manifest.id}`)
    expect(spawnSync(join(archiving.info.binDir, 'pg_verifybackup'), ['-q', base]).status).toBe(0)
    const report = result.report as SnapshotReport
    expect(report.phases.map((p) => p.name)).toEqual(expect.arrayContaining(['base backup (pg_basebackup)', 'verify the base backup (pg_verifybackup)', 'write the manifest']))
    expect(report.phases.every((p) => p.ok && p.durationMs >= 0)).toBe(true)
    // Files with checksums.
    expect(manifest.files).toEqual([expect.objectContaining({ path: 'base/backup_manifest' })])
    expect(manifest.files[0].sha256).toBe(sha256(join(base, 'backup_manifest')))
    // The database: owner, encoding, locale, extensions in requires order with their schemas.
    const recorded = manifest.databases.find((d) => d.name === db)!
    expect(recorded).toMatchObject({ owner: 'postgres', encoding: 'UTF8', collate: 'C.UTF-8', ctype: 'C.UTF-8', localeProvider: 'libc', tablespace: 'pg_default' })
    const order = recorded.extensions.map((e) => `${e.name}@${e.version}:${e.schema}`)
    expect(order).toEqual(expect.arrayContaining(['pgxu_base@1.1:public', 'pgxu_dep@1.0:public', 'hstore@1.6:extensions', 'plpgsql@1.0:pg_catalog']))
    expect(order.indexOf('pgxu_base@1.1:public')).toBeLessThan(order.indexOf('pgxu_dep@1.0:public'))
    expect(recorded.extensions.find((e) => e.name === 'pgxu_dep')?.requires).toEqual(['pgxu_base'])
    expect(recorded.schemas).toEqual(['extensions', 'pg_catalog', 'public'])
    // Never a secret.
    expect(JSON.stringify([result, readFileSync(outputs.snapshot!, 'utf8')])).not.toContain(SUPERUSER_PASSWORD)
  })

  it('auto chooses basebackup when archiving works and the role may replicate, and says so', async () => {
    const db = uniqueName('snap_auto')
    await archiving.createDatabase(db, { hstore: '1.7' })
    const result = await snap(archiving, db)
    expect(result.status).toBe('snapshot_created')
    expect(result.outputs?.['snapshot-strategy']).toBe('basebackup')
    expect((result.report as SnapshotReport).reason).toMatch(/auto chose basebackup: WAL archiving works/)
  })
})

requires('pg_dump', 'pg_restore').describe('snapshot-strategy dump', () => {
  it('dumps each database with the row counts of the same snapshot, even while rows are being written', async () => {
    const db = uniqueName('snap_dump')
    await archiving.createDatabase(db, { hstore: '1.7' })
    await archiving.query(`CREATE TABLE busy (id bigserial PRIMARY KEY, note text); CREATE TABLE quiet AS SELECT g AS id FROM generate_series(1, 500) g`, db)
    const writer = await archiving.connect(db)
    let writing = true
    const writes = (async () => {
      while (writing) await writer.query(`INSERT INTO busy (note) SELECT 'w' FROM generate_series(1, 50)`)
    })()
    const dir = snapshotDir()
    let result
    try {
      result = await runInProcess({ mode: 'snapshot', 'database-url': archiving.url(db), 'snapshot-strategy': 'dump', 'snapshot-dir': dir })
    } finally {
      writing = false
      await writes
      await writer.end()
    }
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('snapshot_created')
    expect(result.outputs).toMatchObject({ 'snapshot-strategy': 'dump' })
    expect(result.outputs?.['restore-point']).toBeUndefined()
    const manifest = manifestOf(result.outputs!.snapshot!)
    const recorded = manifest.databases[0]
    expect(recorded.dump).toBeDefined()
    expect(recorded.dump!.tocEntries).toBeGreaterThan(3)
    expect(recorded.dump!.rowCounts['public.quiet']).toBe(500)
    expect(recorded.extensions.map((e) => `${e.name}@${e.version}`)).toContain('hstore@1.7')
    const file = join(dirname(result.outputs!.snapshot!), recorded.dump!.file)
    expect(manifest.files).toEqual([{ path: recorded.dump!.file, bytes: readFileSync(file).length, sha256: sha256(file) }])
    // The dump holds exactly the rows the manifest counted (same exported snapshot).
    const scratch = uniqueName('snap_dump_check')
    await archiving.createDatabase(scratch)
    const restored = spawnSync(join(archiving.info.binDir, 'pg_restore'), ['-h', '127.0.0.1', '-p', String(archiving.port), '-U', 'postgres', '-d', scratch, file], {
      encoding: 'utf8',
      env: { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD }
    })
    expect(restored.stderr).toBe('')
    const dumped = Number((await archiving.query<{ n: string }>('SELECT count(*) AS n FROM busy', scratch))[0].n)
    expect(dumped).toBeGreaterThan(0)
    expect(recorded.dump!.rowCounts['public.busy']).toBe(dumped)
    const now = Number((await archiving.query<{ n: string }>('SELECT count(*) AS n FROM busy', db))[0].n)
    expect(now).toBeGreaterThan(dumped)
  })

  it('auto falls back to dump when WAL archiving is off, and says why', async () => {
    const db = uniqueName('snap_noarch')
    await plain.createDatabase(db, { hstore: '1.7' })
    const result = await snap(plain, db)
    expect(result.status).toBe('snapshot_created')
    expect(result.outputs?.['snapshot-strategy']).toBe('dump')
    expect((result.report as SnapshotReport).reason).toMatch(/auto chose dump: archive_mode is off/)
  })
})

describe('snapshot-strategy restore-point (an external backup tool)', () => {
  it('creates and archives only a restore point, and records that the base backup is external', async () => {
    const db = uniqueName('snap_rp')
    await archiving.createDatabase(db, { hstore: '1.7' })
    const name = `site_backup_${process.pid}`
    const result = await snap(archiving, db, { 'snapshot-strategy': 'restore-point', 'restore-point': name })
    expect(result.error).toBeUndefined()
    expect(result.outputs).toMatchObject({ 'snapshot-strategy': 'restore-point', 'restore-point': name })
    const manifest = manifestOf(result.outputs!.snapshot!)
    expect(manifest.baseBackup).toMatchObject({ external: true })
    expect(manifest.files).toEqual([])
    expect(existsSync(join(archiving.info.archiveDir!, manifest.restorePoint!.walFile))).toBe(true)
    expect(restorePointsIn(archiving, archiving.info.archiveDir!).filter((n) => n === name)).toHaveLength(1)
  })
})

describe('snapshot refusals change nothing', () => {
  it('refuses a restore point without WAL archiving (ARCHIVING_DISABLED), although PostgreSQL would have created one', async () => {
    const db = uniqueName('snap_off')
    await plain.createDatabase(db, { hstore: '1.7' })
    const dir = snapshotDir()
    for (const strategy of ['basebackup', 'restore-point']) {
      const result = await runInProcess({ mode: 'snapshot', 'database-url': plain.url(db), 'snapshot-strategy': strategy, 'snapshot-dir': dir, 'restore-point': `refused_${strategy.replace('-', '_')}` })
      expect(result.status).toBe('failed')
      expect(result.errors.map((e) => e.code)).toEqual(['ARCHIVING_DISABLED'])
      expect(result.errors[0].message).toContain('archive_mode is off')
      expect(result.error).toContain('Nothing was changed')
      expect((result.report as SnapshotReport).changed).toBe(false)
    }
    expect(readdirSync(dir)).toEqual([])
    const pgWal = join(plain.dataDir, 'pg_wal')
    expect(restorePointsIn(plain, pgWal).filter((n) => n.startsWith('refused_'))).toEqual([])
    // The trap the check exists for: PostgreSQL itself accepts the restore point.
    const trap = await plain.query<{ lsn: string }>(`SELECT pg_create_restore_point('unrecoverable_${process.pid}')::text AS lsn`)
    expect(trap[0].lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/)
  })

  it('refuses a restore point name already in the WAL archive, and one already recorded in a manifest', async () => {
    const db = uniqueName('snap_dup')
    await archiving.createDatabase(db, { hstore: '1.7' })
    const used = `used_name_${process.pid}`
    await archiving.query(`SELECT pg_create_restore_point('${used}')`)
    await switchAndWait(archiving)
    const dir = snapshotDir()
    const inArchive = await runInProcess({ mode: 'snapshot', 'database-url': archiving.url(db), 'snapshot-strategy': 'basebackup', 'snapshot-dir': dir, 'restore-point': used })
    expect(inArchive.status).toBe('failed')
    expect(inArchive.errors.map((e) => e.code)).toEqual(['RESTORE_POINT_EXISTS'])
    expect(inArchive.errors[0].message).toContain('already exists in the WAL archive')
    expect(readdirSync(dir)).toEqual([])
    expect(restorePointsIn(archiving, archiving.info.archiveDir!).filter((n) => n === used)).toHaveLength(1)

    const recorded = `recorded_name_${process.pid}`
    const first = await runInProcess({ mode: 'snapshot', 'database-url': archiving.url(db), 'snapshot-strategy': 'dump', 'snapshot-dir': dir, 'restore-point': recorded })
    expect(first.status).toBe('snapshot_created')
    const second = await runInProcess({ mode: 'snapshot', 'database-url': archiving.url(db), 'snapshot-strategy': 'restore-point', 'snapshot-dir': dir, 'restore-point': recorded })
    expect(second.status).toBe('failed')
    expect(second.errors.map((e) => e.code)).toContain('RESTORE_POINT_EXISTS')
    expect(second.errors.find((e) => e.code === 'RESTORE_POINT_EXISTS')?.message).toContain(first.outputs!.snapshot!)
    expect(restorePointsIn(archiving, archiving.info.archiveDir!).filter((n) => n === recorded)).toEqual([])
  })

  it('refuses a failing archiver', async () => {
    const db = uniqueName('snap_failing')
    await archiving.createDatabase(db)
    const original = (await archiving.query<{ c: string }>(`SELECT current_setting('archive_command') AS c`))[0].c
    await archiving.query(`ALTER SYSTEM SET archive_command = 'false'`)
    await archiving.query('SELECT pg_reload_conf()')
    try {
      await archiving.query('CREATE TABLE IF NOT EXISTS wal_nudge (x int); INSERT INTO wal_nudge VALUES (1)')
      await archiving.query('SELECT pg_switch_wal()')
      for (let i = 0; i < 200; i++) {
        const failed = (await archiving.query<{ n: string }>('SELECT failed_count AS n FROM pg_stat_archiver'))[0].n
        if (Number(failed) > 0) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      const result = await snap(archiving, db, { 'snapshot-strategy': 'restore-point' })
      expect(result.status).toBe('failed')
      expect(result.errors.map((e) => e.code)).toContain('ARCHIVING_DISABLED')
      expect(result.errors.find((e) => e.code === 'ARCHIVING_DISABLED')?.message).toContain('the archiver is failing')
    } finally {
      await archiving.query(`ALTER SYSTEM SET archive_command = ${'$q$' + original + '$q$'}`)
      await archiving.query('SELECT pg_reload_conf()')
    }
    await switchAndWait(archiving)
  })

  it('refuses basebackup to a role that may not replicate, and auto then takes a dump', async () => {
    const db = uniqueName('snap_role')
    await archiving.createDatabase(db, { hstore: '1.7' })
    const role = uniqueName('snap_user')
    await archiving.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw'; GRANT pg_read_all_data TO ${role}`)
    // Function privileges live in each database's catalog.
    await archiving.query(`GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO ${role}; GRANT EXECUTE ON FUNCTION pg_switch_wal() TO ${role}`, db)
    const url = archiving.url(db, role, 'pw')
    const refused = await runInProcess({ mode: 'snapshot', 'database-url': url, 'snapshot-strategy': 'basebackup', 'snapshot-dir': snapshotDir() })
    expect(refused.status).toBe('failed')
    expect(refused.errors).toEqual([expect.objectContaining({ code: 'INSUFFICIENT_PRIVILEGE' })])
    expect(refused.errors[0].message).toContain('REPLICATION')
    const auto = await runInProcess({ mode: 'snapshot', 'database-url': url, 'snapshot-dir': snapshotDir() })
    expect(auto.status).toBe('snapshot_created')
    expect(auto.outputs?.['snapshot-strategy']).toBe('dump')
    expect((auto.report as SnapshotReport).reason).toContain('may not replicate')
  })

  it('refuses a plain base backup of a cluster with tablespaces (UNSUPPORTED_LAYOUT)', async () => {
    const space = temporaryDirectory('pgxu-space-')
    chownToOwner(space)
    const name = uniqueName('snap_space')
    await archiving.query(`CREATE TABLESPACE ${name} LOCATION '${space}'`)
    try {
      const dir = snapshotDir()
      const result = await runInProcess({ mode: 'snapshot', 'database-url': archiving.url('postgres'), 'snapshot-strategy': 'basebackup', 'snapshot-dir': dir })
      expect(result.errors.map((e) => e.code)).toEqual(['UNSUPPORTED_LAYOUT'])
      expect(readdirSync(dir)).toEqual([])
    } finally {
      await archiving.query(`DROP TABLESPACE ${name}`)
    }
  })

  it('refuses bad input naming the input, before connecting', async () => {
    const unreachable = 'postgresql://nobody@127.0.0.1:1/none'
    const cases: Array<[RawInputs, string]> = [
      [{ 'snapshot-strategy': 'none' }, 'input "snapshot-strategy": none is only for mode run'],
      [{ 'restore-point': 'x'.repeat(64) }, 'input "restore-point": "' + 'x'.repeat(64) + '" is 64 bytes'],
      [{ 'restore-point': 'bad/name' }, 'characters outside'],
      [{ 'restore-point': 'é'.repeat(32) }, 'is 64 bytes']
    ]
    for (const [inputs, message] of cases) {
      const result = await runInProcess({ mode: 'snapshot', 'database-url': unreachable, ...inputs })
      expect(result.status).toBe('failed')
      expect(result.errors).toEqual([expect.objectContaining({ code: 'INVALID_INPUT', message: expect.stringContaining(message) })])
    }
  })

  it('refuses a snapshot-dir that cannot be created', async () => {
    const db = uniqueName('snap_dir')
    await archiving.createDatabase(db)
    const file = join(snapshotDir(), 'a-file')
    writeFileSync(file, 'not a directory')
    const result = await snap(archiving, db, { 'snapshot-strategy': 'dump', 'snapshot-dir': join(file, 'snapshots') })
    expect(result.status).toBe('failed')
    expect(result.errors.map((e) => e.code)).toEqual(['INVALID_INPUT'])
    expect(result.errors[0].message).toContain('input "snapshot-dir"')
    expect(result.errors[0].message).toContain('not a directory')
  })
})
