import { describe, expect, it } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { dirname, join } from 'node:path'
import type { Logger } from '../src/core/logger.js'
import type { SnapshotManifest } from '../src/core/recovery/manifest.js'
import type { RawInputs } from '../src/inputs.js'
import { runMode } from '../src/modes/index.js'
import type { RollbackReport } from '../src/modes/rollback.js'
import type { ModeResult } from '../src/modes/types.js'
import { clusterOwner, startCluster, SUPERUSER_PASSWORD, temporaryDirectory } from './harness/postgres.js'
import { requires, runInProcess, testCluster } from './helpers.js'

/**
 * Whole-cluster point-in-time recovery on real clusters with WAL archiving: the marker ladder of
 * the issue, a second database rewound too, a second rollback, refusals that change nothing, and
 * a recovery that fails on purpose and puts the original data directory back.
 */
const cluster = await testCluster({ archive: true })

/** A logger that can act when a line appears (synchronously, so the run waits for it). */
function hookedLogger(hooks: Array<{ when: RegExp; run: () => void }>, lines: string[] = []): Logger {
  const fire = (message: string) => {
    lines.push(message)
    for (const hook of hooks) {
      if (hook.when.test(message)) {
        hooks.splice(hooks.indexOf(hook), 1)
        hook.run()
      }
    }
  }
  return { info: fire, warn: fire, debug: () => undefined, group: (_title, work) => work() }
}

/** psql, synchronously: blocks the event loop, so it runs exactly between two steps of the run. */
function psqlNow(db: string, sql: string): void {
  const result = spawnSync(join(cluster.info.binDir, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', '-d', db, '-c', sql], {
    encoding: 'utf8',
    env: { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD }
  })
  if (result.status !== 0) throw new Error(result.stderr)
}

async function run(inputs: RawInputs, log?: Logger): Promise<ModeResult> {
  return log ? runMode(inputs, log, { PATH: process.env.PATH }) : runInProcess(inputs)
}

const rollbackInputs = (snapshot: string, extra: RawInputs = {}): RawInputs => ({
  mode: 'rollback',
  'database-url': cluster.url('app'),
  snapshot,
  'rollback-strategy': 'pitr',
  pgdata: cluster.dataDir,
  'confirm-data-loss': 'true',
  'wait-timeout': '60s',
  ...extra
})

async function phases(db: string): Promise<string[]> {
  return (await cluster.query<{ phase: string }>('SELECT phase FROM markers ORDER BY id', db)).map((r) => r.phase)
}

const timeline = async () => Number((await cluster.query<{ tl: number }>(`SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int AS tl`))[0].tl)
const systemId = async () => (await cluster.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0].id
const siblings = (suffix: string) => readdirSync(dirname(cluster.dataDir)).filter((name) => name.startsWith(`data.${suffix}`))

/** The postmaster's pid: unchanged means the server was never stopped. */
const postmasterPid = () => readFileSync(join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]

/** Inverts one byte of a file; returns the function that puts it back. */
function flipByte(path: string, offset: number): () => void {
  const bytes = readFileSync(path)
  const original = bytes[offset]
  bytes[offset] = original ^ 0xff
  writeFileSync(path, bytes)
  return () => {
    bytes[offset] = original
    writeFileSync(path, bytes)
  }
}

let snapshotPath = ''
let manifest: SnapshotManifest

requires('pg_basebackup', 'psql').describe('pitr rollback', () => {
  it('rewinds the whole cluster to the restore point: exactly the rows committed before it, the recorded versions, every database', async () => {
    await cluster.createDatabase('app', { hstore: '1.7' })
    await cluster.createDatabase('tenant_b', {})
    for (const db of ['app', 'tenant_b']) await cluster.query('CREATE TABLE markers (id serial PRIMARY KEY, phase text NOT NULL)', db)
    const mark = (db: string, phase: string) => cluster.query('INSERT INTO markers (phase) VALUES ($1)', db, [phase])
    await mark('app', 'A before the base backup')
    await mark('tenant_b', 'A before the base backup')
    const systemBefore = await systemId()

    // C: a transaction opened before the restore point that commits after it.
    const open = await cluster.connect('app')
    await open.query('BEGIN')
    await open.query(`INSERT INTO markers (phase) VALUES ('C open across the restore point')`)

    const lines: string[] = []
    const snapshot = await run(
      { mode: 'snapshot', 'database-url': cluster.url('app'), databases: '', 'snapshot-strategy': 'basebackup', 'snapshot-dir': temporaryDirectory('pgxu-snap-') },
      hookedLogger(
        [
          {
            when: /^▶ create restore point/,
            run: () => {
              psqlNow('app', `INSERT INTO markers (phase) VALUES ('B after the base backup')`)
              psqlNow('tenant_b', `INSERT INTO markers (phase) VALUES ('B after the base backup')`)
            }
          }
        ],
        lines
      )
    )
    expect(snapshot.error).toBeUndefined()
    expect(snapshot.status).toBe('snapshot_created')
    snapshotPath = snapshot.outputs!.snapshot!
    manifest = JSON.parse(readFileSync(snapshotPath, 'utf8')) as SnapshotManifest
    await open.query('COMMIT')
    await open.end()

    await mark('app', 'D after the restore point')
    await mark('tenant_b', 'D after the restore point')
    const upgrade = await runInProcess({ mode: 'execute', 'database-url': cluster.url('app'), extensions: 'hstore@1.8' })
    expect(upgrade.status).toBe('success')
    await mark('app', 'F after the upgrade')
    await cluster.query('CREATE DATABASE created_after_snapshot')
    expect(await phases('app')).toEqual(['A before the base backup', 'C open across the restore point', 'B after the base backup', 'D after the restore point', 'F after the upgrade'])

    const result = await run(rollbackInputs(snapshotPath))
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('rolled_back')
    const report = result.report as RollbackReport
    expect(report.strategy).toBe('pitr')

    expect(await phases('app')).toEqual(['A before the base backup', 'B after the base backup'])
    expect(await phases('tenant_b')).toEqual(['A before the base backup', 'B after the base backup'])
    expect((await cluster.extensionVersions('app')).hstore).toBe('1.7')
    const databases = (await cluster.query<{ datname: string }>('SELECT datname FROM pg_database')).map((r) => r.datname)
    expect(databases).not.toContain('created_after_snapshot')

    // What it said it would discard, before it did.
    expect(report.discarded?.scope).toBe('cluster')
    expect(report.discarded?.databases).toEqual(expect.arrayContaining(['app', 'tenant_b', 'created_after_snapshot']))
    expect(report.discarded?.createdSince).toEqual(['created_after_snapshot'])
    expect(report.discarded?.walBytes).toBeGreaterThan(0)
    expect(report.discarded?.summary).toContain('tenant_b')

    // The recovery itself: the recorded timeline, paused at the restore point, promoted, cleaned up.
    expect(report.pitr?.recoveryTimeline).toBe(manifest.restorePoint!.timeline)
    expect(report.pitr?.newTimeline).toBe(manifest.restorePoint!.timeline + 1)
    expect(await timeline()).toBe(manifest.restorePoint!.timeline + 1)
    expect(await systemId()).toBe(systemBefore)
    expect((await cluster.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0].r).toBe(false)
    expect(existsSync(join(cluster.dataDir, 'recovery.signal'))).toBe(false)
    expect(existsSync(join(cluster.dataDir, 'standby.signal'))).toBe(false)
    const autoConf = readFileSync(join(cluster.dataDir, 'postgresql.auto.conf'), 'utf8')
    expect(autoConf).not.toMatch(/^\s*recovery_target/m)
    expect(autoConf).not.toMatch(/^\s*restore_command/m)
    expect(readFileSync(report.pitr!.logFile!, 'utf8')).toContain(`recovery stopping at restore point "${manifest.restorePoint!.name}"`)
    expect(report.phases.map((p) => p.name)).toEqual(
      expect.arrayContaining(['stop the server', 'verify the recorded versions while paused (read-only)', 'promote', 'remove the recovery settings'])
    )
    // keep-previous (default true): the pre-rollback directory stays, with the upgraded catalog in it.
    expect(report.pitr?.previousDir).toBeDefined()
    expect(existsSync(join(report.pitr!.previousDir!, 'PG_VERSION'))).toBe(true)
    // The cluster takes writes on the new timeline.
    await mark('app', 'G after the rollback')
  })

  it('says nothing_to_do when the cluster already matches, and a second rollback to the same snapshot works', async () => {
    const again = await run(rollbackInputs(snapshotPath))
    expect(again.status).toBe('nothing_to_do')
    expect(again.changed).toBe(false)

    const upgrade = await runInProcess({ mode: 'execute', 'database-url': cluster.url('app'), extensions: 'hstore@1.8' })
    expect(upgrade.status).toBe('success')
    await cluster.query(`INSERT INTO markers (phase) VALUES ('H after the second upgrade')`, 'app')
    const second = await run(rollbackInputs(snapshotPath, { 'keep-previous': 'false' }))
    expect(second.error).toBeUndefined()
    expect(second.status).toBe('rolled_back')
    const report = second.report as RollbackReport
    // The archive now holds 00000002.history: the recorded timeline, not "latest", is followed.
    expect(readdirSync(manifest.archive!.directory!)).toContain('00000002.history')
    expect(report.pitr?.newTimeline).toBe(3)
    expect(await phases('app')).toEqual(['A before the base backup', 'B after the base backup'])
    expect((await cluster.extensionVersions('app')).hstore).toBe('1.7')
    expect(report.pitr?.previousDir).toBeUndefined()
    expect(siblings('pre-rollback-')).toHaveLength(1) // only the first rollback's, kept; this one's was removed
  })
})

describe('pitr refusals change nothing', () => {
  async function upgraded(): Promise<void> {
    const versions = await cluster.extensionVersions('app')
    if (versions.hstore !== '1.8') await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'`, 'app')
  }

  async function unchanged(before: { timeline: number; markers: string[] }): Promise<void> {
    expect(cluster.isRunning()).toBe(true)
    expect(await timeline()).toBe(before.timeline)
    expect(await phases('app')).toEqual(before.markers)
    expect((await cluster.extensionVersions('app')).hstore).toBe('1.8')
    expect(siblings('rollback-staging-')).toEqual([])
  }

  it('refuses without confirm-data-loss, and says what would be discarded', async () => {
    await upgraded()
    const before = { timeline: await timeline(), markers: await phases('app') }
    const previous = siblings('pre-rollback-').length
    const result = await run(rollbackInputs(snapshotPath, { 'confirm-data-loss': 'false' }))
    expect(result.status).toBe('rollback_failed')
    expect(result.errors.map((e) => e.code)).toEqual(['CONFIRMATION_REQUIRED'])
    expect(result.error).toContain('Nothing was changed')
    const report = result.report as RollbackReport
    expect(report.discarded?.summary).toMatch(/every transaction committed in the cluster after restore point/)
    expect(report.discarded?.databases).toEqual(expect.arrayContaining(['app', 'tenant_b']))
    await unchanged(before)
    expect(siblings('pre-rollback-')).toHaveLength(previous)
  })

  it('auto never picks pitr without confirmation: hstore 1.8 has no downgrade script, the snapshot has no dump', async () => {
    await upgraded()
    const before = { timeline: await timeline(), markers: await phases('app') }
    const result = await run(rollbackInputs(snapshotPath, { 'rollback-strategy': 'auto', 'confirm-data-loss': 'false' }))
    expect(result.status).toBe('rollback_failed')
    expect(result.errors.map((e) => e.code)).toEqual(['CONFIRMATION_REQUIRED'])
    expect(result.errors[0].message).toContain('no downgrade script leads from 1.8 back to 1.7')
    expect(result.errors[0].message).toContain('has no dump')
    await unchanged(before)
  })

  it('refuses when a WAL segment up to the restore point is missing from the archive', async () => {
    await upgraded()
    const before = { timeline: await timeline(), markers: await phases('app') }
    const segment = join(manifest.archive!.directory!, manifest.restorePoint!.walFile)
    renameSync(segment, `${segment}.hidden`)
    try {
      const result = await run(rollbackInputs(snapshotPath))
      expect(result.status).toBe('rollback_failed')
      expect(result.errors.map((e) => e.code)).toEqual(['WAL_MISSING'])
      expect(result.errors[0].message).toContain(manifest.restorePoint!.walFile)
      await unchanged(before)
    } finally {
      renameSync(`${segment}.hidden`, segment)
    }
  })

  it('verifies every byte of the base backup before the server is touched: one flipped byte is SNAPSHOT_CORRUPT naming the file', async () => {
    await upgraded()
    const before = { timeline: await timeline(), markers: await phases('app') }
    const postmaster = postmasterPid()
    // A data file of the backup: sizes and backup_manifest still match, only its CRC32C does not.
    const relation = join('base', '1', readdirSync(join(dirname(snapshotPath), 'base', 'base', '1')).find((name) => /^\d+$/.test(name) && statSync(join(dirname(snapshotPath), 'base', 'base', '1', name)).size >= 8192)!)
    const file = join(dirname(snapshotPath), 'base', relation)
    const restore = flipByte(file, 4000)
    try {
      const result = await run(rollbackInputs(snapshotPath))
      expect(result.status).toBe('rollback_failed')
      expect(result.errors.map((e) => e.code)).toEqual(['SNAPSHOT_CORRUPT'])
      expect(result.errors[0].message).toContain(relation)
      expect(result.changed).toBe(false)
      expect(postmasterPid()).toBe(postmaster)
      expect((result.report as RollbackReport).phases.map((p) => p.name)).not.toContain('stop the server')
      await unchanged(before)
    } finally {
      restore()
    }
  })

  it('verifies the archived WAL recovery would replay before the server is touched: a damaged record is SNAPSHOT_CORRUPT naming the segment', async () => {
    await upgraded()
    const before = { timeline: await timeline(), markers: await phases('app') }
    const postmaster = postmasterPid()
    const segment = join(manifest.archive!.directory!, manifest.restorePoint!.walFile)
    // Inside the first record after the segment's long page header: its CRC no longer matches.
    const restore = flipByte(segment, 64)
    try {
      const result = await run(rollbackInputs(snapshotPath))
      expect(result.status).toBe('rollback_failed')
      expect(result.errors.map((e) => e.code)).toEqual(['SNAPSHOT_CORRUPT'])
      expect(result.errors[0].message).toContain(manifest.restorePoint!.walFile)
      expect(postmasterPid()).toBe(postmaster)
      await unchanged(before)
    } finally {
      restore()
    }
  })

  it('refuses pitr without pgdata before connecting (INVALID_INPUT)', async () => {
    const result = await run({ ...rollbackInputs(snapshotPath), pgdata: '' })
    expect(result.status).toBe('rollback_failed')
    expect(result.errors).toEqual([expect.objectContaining({ code: 'INVALID_INPUT', message: expect.stringContaining('input "pgdata"') })])
  })

  it('refuses a pgdata that is not the data directory of the server', async () => {
    await upgraded()
    const before = { timeline: await timeline(), markers: await phases('app') }
    const previous = siblings('pre-rollback-')[0]
    const result = await run(rollbackInputs(snapshotPath, { pgdata: join(dirname(cluster.dataDir), previous) }))
    expect(result.status).toBe('rollback_failed')
    expect(result.errors.map((e) => e.code)).toContain('INVALID_INPUT')
    expect(result.errors.find((e) => e.code === 'INVALID_INPUT')?.message).toContain('is not the data directory of the server')
    await unchanged(before)
  })
})

describe('a recovery that fails', () => {
  it('puts the original data directory back, restarts it, keeps the failed copy, and a later rollback still works', async () => {
    const versions = await cluster.extensionVersions('app')
    if (versions.hstore !== '1.8') await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'`, 'app')
    await cluster.query(`INSERT INTO markers (phase) VALUES ('I before the failed rollback')`, 'app')
    const before = { timeline: await timeline(), markers: await phases('app') }
    // The archive loses the restore point's segment after the preflight proved it was there
    // (a retention job, a full disk): recovery cannot reach the target and the server FATALs.
    const segment = join(manifest.archive!.directory!, manifest.restorePoint!.walFile)
    const log = hookedLogger([{ when: /^▶ stop the server/, run: () => renameSync(segment, `${segment}.hidden`) }])
    let result: ModeResult
    try {
      result = await run(rollbackInputs(snapshotPath), log)
    } finally {
      renameSync(`${segment}.hidden`, segment)
    }
    expect(result.status).toBe('rollback_failed')
    expect(result.errors[0].code).toBe('RECOVERY_FAILED')
    expect(result.errors[0].message).toMatch(/recovery ended before configured recovery target was reached|stopped during recovery/)
    const report = result.report as RollbackReport
    expect(report.pitr?.putBack).toBe(true)
    expect(report.recovery?.join('\n')).toContain('was put back')
    // The original is back, running, exactly as before, on its own timeline.
    expect(cluster.isRunning()).toBe(true)
    expect(await timeline()).toBe(before.timeline)
    expect(await phases('app')).toEqual(before.markers)
    expect((await cluster.extensionVersions('app')).hstore).toBe('1.8')
    // The failed restore is kept for diagnosis; the log excerpt says why.
    expect(existsSync(join(report.pitr!.failedDir!, 'PG_VERSION'))).toBe(true)
    expect(report.pitr?.logExcerpt).toContain('FATAL')

    const retry = await run(rollbackInputs(snapshotPath))
    expect(retry.error).toBeUndefined()
    expect(retry.status).toBe('rolled_back')
    expect(await phases('app')).toEqual(['A before the base backup', 'B after the base backup'])
  })
})

describe('a server run by other means', () => {
  it('uses stop-command and start-command (as for systemd or pg_ctlcluster) instead of pg_ctl', async () => {
    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'`, 'app')
    const asOwner = userInfo().uid === 0 ? `runuser -u ${clusterOwner().name} -- ` : ''
    const pgCtl = join(cluster.info.binDir, 'pg_ctl')
    const logFile = join(dirname(cluster.dataDir), 'custom-start.log')
    const result = await run(
      rollbackInputs(snapshotPath, {
        'stop-command': `${asOwner}${pgCtl} -D ${cluster.dataDir} -m fast -w stop`,
        'start-command': `${asOwner}${pgCtl} -D ${cluster.dataDir} -l ${logFile} -w start`
      })
    )
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('rolled_back')
    expect((await cluster.extensionVersions('app')).hstore).toBe('1.7')
    expect(readFileSync(logFile, 'utf8')).toContain(`recovery stopping at restore point "${manifest.restorePoint!.name}"`)
    const phasesRun = (result.report as RollbackReport).phases.map((p) => `${p.name}: ${p.detail ?? ''}`)
    expect(phasesRun).toContain('stop the server: with stop-command')
    expect(phasesRun).toContain('start recovery: with start-command')
  })
})

describe('snapshots that cannot be used for the asked strategy', () => {
  it('refuses a dump rollback from a base-backup snapshot, and has no way back from an external base backup', async () => {
    const wrong = await run({ ...rollbackInputs(snapshotPath), 'rollback-strategy': 'dump' })
    expect(wrong.errors).toEqual([expect.objectContaining({ code: 'INVALID_INPUT', message: expect.stringContaining('dump needs a snapshot taken with snapshot-strategy dump') })])

    await cluster.createDatabase('external', { hstore: '1.7' })
    const snap = await run({ mode: 'snapshot', 'database-url': cluster.url('external'), 'snapshot-strategy': 'restore-point', 'snapshot-dir': temporaryDirectory('pgxu-snap-') })
    expect(snap.status).toBe('snapshot_created')
    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'`, 'external')
    const pitr = await run({ ...rollbackInputs(snap.outputs!.snapshot!), 'database-url': cluster.url('external') })
    expect(pitr.errors).toEqual([expect.objectContaining({ code: 'NO_ROLLBACK_PATH', message: expect.stringContaining(`pgbackrest restore --type=name --target=${snap.outputs!['restore-point']}`) })])
    const auto = await run({ ...rollbackInputs(snap.outputs!.snapshot!), 'database-url': cluster.url('external'), 'rollback-strategy': 'auto' })
    expect(auto.errors.map((e) => e.code)).toEqual(['NO_ROLLBACK_PATH'])
    expect(auto.errors[0].message).toContain('no downgrade script leads from 1.8 back to 1.7')
    expect((await cluster.extensionVersions('external')).hstore).toBe('1.8')
  })
})

describe('a manifest from another cluster', () => {
  it('is refused with SNAPSHOT_MISMATCH and nothing is touched', async () => {
    const other = await startCluster({ archive: true, freshInitdb: true })
    try {
      await other.createDatabase('app', { hstore: '1.8' })
      const otherSystem = (await other.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0].id
      expect(otherSystem).not.toBe(manifest.server.systemIdentifier)
      const result = await run({ ...rollbackInputs(snapshotPath), 'database-url': other.url('app'), pgdata: other.dataDir })
      expect(result.status).toBe('rollback_failed')
      expect(result.errors.map((e) => e.code)).toEqual(['SNAPSHOT_MISMATCH'])
      expect(result.errors[0].message).toContain(otherSystem)
      expect(other.isRunning()).toBe(true)
      expect((await other.extensionVersions('app')).hstore).toBe('1.8')
      expect(readdirSync(dirname(other.dataDir)).filter((name) => name.includes('rollback'))).toEqual([])
    } finally {
      await other.destroy()
    }
  })
})
