import { accessSync, constants, existsSync, lstatSync, mkdtempSync, readlinkSync, realpathSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { withSession } from '../connection.js'
import { formatDuration } from '../duration.js'
import { CodedError, errorMessage } from '../errors.js'
import type { Finding } from '../plan.js'
import { describePgError } from '../pg-error.js'
import { findCompatibleProgram, findProgram, runAsMethod, runShell, shellQuote } from '../programs.js'
import { formatBytes } from '../recovery/format.js'
import { readVersions } from '../catalog.js'
import { inSnapshot, verifyFiles } from '../recovery/manifest.js'
import { CURRENT_TIMELINE_SQL, missingSegments, parseLsn, scanRestorePoints, segmentOf, segmentRange } from '../recovery/wal.js'
import { freeBytes } from '../snapshot/preflight.js'
import { verifyBaseBackup } from '../snapshot/basebackup.js'
import { DataDirectory, fileSize, readLogTail, withoutRecoverySettings, withRecoverySettings } from './data-directory.js'
import { versionsBefore, type DiscardReport, type PitrDetails, type RollbackContext, type RollbackDatabaseResult } from './types.js'

const MARKER = 'pg-extension-upgrade rollback'

export interface PreparedPitr {
  dataDir: DataDirectory
  base: string
  restoreCommand: string
  programs: { pgCtl?: string; pgControldata: string; pgVerifybackup: string; pgWaldump: string }
  /** Where recovery connects while the cluster is paused (a database that existed at the snapshot). */
  probeDatabase: string
}

/** What a pitr rollback discards: every commit since the restore point, in every database. */
export function pitrDiscards(ctx: RollbackContext, walBytes: number | null): DiscardReport {
  const { manifest, facts } = ctx
  const rp = manifest.restorePoint!
  const sinceMs = Date.parse(facts.now) - Date.parse(rp.createdAt)
  const now = facts.databases.map((d) => d.name)
  const then = manifest.server.clusterDatabases
  const createdSince = now.filter((name) => !then.includes(name))
  const droppedSince = then.filter((name) => !now.includes(name))
  const commitsSince = facts.commits !== null && manifest.server.commitsAtSnapshot !== null && facts.commits >= manifest.server.commitsAtSnapshot ? facts.commits - manifest.server.commitsAtSnapshot : null
  const parts = [
    `every transaction committed in the cluster after restore point ${rp.name} (${formatDuration(Math.max(0, sinceMs))} ago${walBytes !== null ? `, ${formatBytes(walBytes)} of WAL since` : ''}${commitsSince !== null ? `, about ${commitsSince} commit(s)` : ''})`,
    `in all ${now.length} database(s): ${now.join(', ')}`
  ]
  if (createdSince.length) parts.push(`databases created since the snapshot disappear: ${createdSince.join(', ')}`)
  if (droppedSince.length) parts.push(`databases dropped since come back: ${droppedSince.join(', ')}`)
  if (facts.replicas.length) parts.push(`${facts.replicas.length} streaming replica(s) must be rebuilt afterwards`)
  if (facts.replicationSlots.length) parts.push(`replication slots are not in the base backup and will be gone: ${facts.replicationSlots.map((s) => s.name).join(', ')}`)
  parts.push('unlogged tables come back empty')
  return {
    scope: 'cluster',
    summary: `A point-in-time recovery discards ${parts.join('; ')}.`,
    walBytes,
    sinceMs,
    commitsSince,
    databases: now,
    createdSince,
    droppedSince,
    replicas: facts.replicas.map((r) => r.application || r.address || '?'),
    slots: facts.replicationSlots.map((s) => s.name)
  }
}

export async function walSinceRestorePoint(ctx: RollbackContext): Promise<number | null> {
  const rp = ctx.manifest.restorePoint
  if (!rp || ctx.facts.currentLsn === null) return null
  const diff = parseLsn(ctx.facts.currentLsn) - parseLsn(rp.lsn)
  return diff >= 0n ? Number(diff) : null
}

function expandRestoreCommand(command: string, file: string, path: string, lastRestart: string): string {
  return command.replace(/%[fpr%]/g, (token) => ({ '%f': file, '%p': path, '%r': lastRestart, '%%': '%' })[token] ?? token)
}

/**
 * Every precondition of a pitr rollback, before anything moves: a base backup of ours, the data
 * directory of this very cluster (system identifier of the server and of pgdata), the programs,
 * every WAL segment from the backup's start to the restore point in the archive, and the restore
 * point itself in its segment (pg_waldump), free space for the copy, and confirm-data-loss.
 */
export async function pitrObstacles(ctx: RollbackContext): Promise<{ obstacles: Finding[]; prepared?: PreparedPitr }> {
  const { manifest, request, facts } = ctx
  const obstacles: Finding[] = []
  const fail = (code: Finding['code'], message: string) => obstacles.push({ code, message })
  const rp = manifest.restorePoint
  const backup = manifest.baseBackup
  if (!rp || !backup) {
    fail('NO_ROLLBACK_PATH', `the snapshot (strategy ${manifest.strategy}) has no restore point, so a point-in-time recovery has no target`)
    return { obstacles }
  }
  if (backup.external || !backup.path) {
    fail(
      'NO_ROLLBACK_PATH',
      `the snapshot's base backup is external (${backup.note ?? 'taken by another tool'}): restore it with that tool to restore point "${rp.name}" on timeline ${rp.timeline}, e.g. pgbackrest restore --type=name --target=${rp.name} --target-timeline=${rp.timeline} --target-action=promote, or barman restore --target-name ${rp.name} --target-tli ${rp.timeline}`
    )
    return { obstacles }
  }
  if (!request.pgdata) {
    fail('INVALID_INPUT', 'input "pgdata": a pitr rollback needs the data directory of the server (for example /var/lib/postgresql/15/main)')
    return { obstacles }
  }
  if (facts.systemIdentifier !== manifest.server.systemIdentifier) {
    fail('SNAPSHOT_MISMATCH', `the snapshot belongs to another cluster: its system identifier is ${manifest.server.systemIdentifier}, the server at database-url has ${facts.systemIdentifier}`)
  }
  const pgdata = request.pgdata
  if (!existsSync(join(pgdata, 'PG_VERSION'))) {
    fail('INVALID_INPUT', `input "pgdata": ${pgdata} is not a PostgreSQL data directory (no PG_VERSION)`)
    return { obstacles }
  }
  const major = Math.floor(facts.versionNum / 10000)
  const search = { binDir: request.pgBinDir || undefined, env: request.env }
  const find = async (name: string, needed = true) => {
    if (!needed) return undefined
    try {
      return await findCompatibleProgram(name, major, search, 'exact')
    } catch (error) {
      fail(error instanceof CodedError ? error.code : 'PROGRAM_MISSING', errorMessage(error))
      return undefined
    }
  }
  const pgCtl = await find('pg_ctl', !request.stopCommand || !request.startCommand)
  const pgControldata = await find('pg_controldata')
  const pgVerifybackup = await find('pg_verifybackup')
  const pgWaldump = await find('pg_waldump')
  let dataDir: DataDirectory
  try {
    dataDir = new DataDirectory(pgdata, { pgCtl: pgCtl ?? safeFind('pg_ctl', major, search), pgControldata }, request.env)
  } catch (error) {
    fail('INVALID_INPUT', `input "pgdata": ${errorMessage(error)}`)
    return { obstacles }
  }
  if (facts.dataDirectory) {
    const real = (path: string) => {
      try {
        return realpathSync(path)
      } catch {
        return path
      }
    }
    if (real(facts.dataDirectory) !== real(pgdata)) {
      fail('INVALID_INPUT', `input "pgdata": ${pgdata} is not the data directory of the server at database-url, which is ${facts.dataDirectory}`)
    }
  }
  if (pgControldata) {
    try {
      const control = await dataDir.controlData()
      const id = control['Database system identifier']
      if (id !== manifest.server.systemIdentifier) {
        fail('SNAPSHOT_MISMATCH', `${pgdata} belongs to another cluster: pg_controldata says system identifier ${id}, the snapshot ${manifest.server.systemIdentifier}`)
      }
    } catch (error) {
      fail('INSUFFICIENT_PRIVILEGE', `cannot read ${pgdata} as its owner ${dataDir.owner.name}: ${errorMessage(error)}`)
    }
  }
  try {
    if (lstatSync(join(pgdata, 'pg_wal')).isSymbolicLink()) {
      ctx.warnings.push({
        code: 'UNSUPPORTED_LAYOUT',
        message: `${pgdata}/pg_wal is a symbolic link to ${readlinkSync(join(pgdata, 'pg_wal'))}; the restored data directory keeps its WAL in a plain pg_wal directory inside it (move it back with the server stopped if you want the separate WAL volume again)`
      })
    }
  } catch {
    // no pg_wal: PG_VERSION was checked above; pg_controldata reports the rest
  }
  if (runAsMethod(dataDir.owner) === 'self') {
    try {
      accessSync(dataDir.parent, constants.W_OK)
    } catch {
      fail('INSUFFICIENT_PRIVILEGE', `${dataDir.parent} is not writable: the data directory cannot be moved aside there`)
    }
  }
  const base = inSnapshot(ctx.manifestDir, backup.path)
  if (!existsSync(join(base, 'PG_VERSION'))) {
    fail('SNAPSHOT_CORRUPT', `the base backup ${base} is missing`)
  } else {
    try {
      await verifyFiles(ctx.manifestDir, manifest, (path) => path.startsWith(`${backup.path}/`))
    } catch (error) {
      fail('SNAPSHOT_CORRUPT', errorMessage(error))
    }
    const needed = (backup.bytes ?? 0) + 4 * manifest.server.walSegmentSize
    const free = freeBytes(dataDir.parent)
    if (free < needed) fail('INSUFFICIENT_SPACE', `${dataDir.parent} has ${formatBytes(free)} free; the restored copy needs about ${formatBytes(needed)} next to the kept data directory`)
  }
  const archiveDir = manifest.archive?.directory ?? null
  const restoreCommand = request.restoreCommand || (archiveDir ? `cp ${shellQuote(archiveDir)}/%f %p` : '')
  if (!restoreCommand) {
    fail('INVALID_INPUT', 'input "restore-command": the snapshot recorded no local archive directory, so give the restore_command that fetches WAL from your archive (for example `pgbackrest --stanza=main archive-get %f "%p"`)')
  }
  if (backup.startWalFile && pgWaldump && restoreCommand) {
    const scratch = archiveDir && existsSync(archiveDir) ? undefined : mkdtempSync(join(tmpdir(), 'pgxu-wal-'))
    try {
      const segments = segmentRange(backup.startWalFile, rp.walFile, manifest.server.walSegmentSize)
      let dir = archiveDir!
      if (scratch) {
        dir = scratch
        for (const segment of segments) {
          const command = expandRestoreCommand(restoreCommand, segment, join(scratch, segment), backup.startWalFile)
          const fetched = await runShell(command, { env: request.env, timeoutMs: 120_000, okCodes: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 74, 127] }).catch(() => undefined)
          if (!fetched || fetched.code !== 0 || !existsSync(join(scratch, segment))) {
            fail('WAL_MISSING', `restore-command could not fetch ${segment}, which recovery to ${rp.name} needs`)
            break
          }
        }
      } else {
        const missing = missingSegments(dir, backup.startWalFile, rp.walFile, manifest.server.walSegmentSize)
        if (missing.length > 0) fail('WAL_MISSING', `the archive ${dir} lacks ${missing.join(', ')}, which recovery from the base backup to ${rp.name} needs`)
      }
      if (!obstacles.some((o) => o.code === 'WAL_MISSING')) {
        // Every record recovery will replay, CRC-checked by pg_waldump before anything stops.
        const scan = await scanRestorePoints(pgWaldump, dir, segments, manifest.server.walSegmentSize, { env: request.env, strict: true }).catch((error: unknown) => error as Error)
        if (scan instanceof Error) {
          fail('SNAPSHOT_CORRUPT', `the archived WAL recovery needs is damaged${corruptSegment(scan.message, rp.timeline, manifest.server.walSegmentSize)}: ${errorMessage(scan)}`)
        } else if (!scan.points.some((p) => p.name === rp.name && p.endLsn === parseLsn(rp.lsn))) {
          fail('SNAPSHOT_MISMATCH', `the archived segment ${rp.walFile} holds no restore point "${rp.name}" at ${rp.lsn}; this archive does not belong to the snapshot`)
        }
      }
    } finally {
      if (scratch) rmSync(scratch, { recursive: true, force: true })
    }
  }
  if (!request.confirmDataLoss) {
    const discard = pitrDiscards(ctx, await walSinceRestorePoint(ctx))
    fail('CONFIRMATION_REQUIRED', `A pitr rollback rewinds the whole cluster and needs confirm-data-loss: true. ${discard.summary}`)
  }
  if (obstacles.length > 0 || !pgControldata || !pgVerifybackup || !pgWaldump) return { obstacles }
  const probeDatabase = manifest.server.clusterDatabases.includes('postgres') ? 'postgres' : (manifest.databases[0]?.name ?? ctx.target.database)
  return { obstacles, prepared: { dataDir, base, restoreCommand, programs: { pgCtl, pgControldata, pgVerifybackup, pgWaldump }, probeDatabase } }
}

/** ` (segment …)` for the first LSN pg_waldump's error names, so the message points at a file. */
function corruptSegment(message: string, timeline: number, segmentSize: number): string {
  const lsn = /\bat ([0-9A-F]{1,8}\/[0-9A-F]{1,8})\b/.exec(message)?.[1]
  return lsn ? ` (segment ${segmentOf(parseLsn(lsn), timeline, segmentSize)})` : ''
}

function safeFind(name: string, major: number, search: { binDir?: string; env?: NodeJS.ProcessEnv }): string | undefined {
  try {
    return findProgram(name, { ...search, serverMajor: major })
  } catch {
    return undefined
  }
}

/** yyyymmddThhmmss.mmmZ without separators: unique per rollback, sortable. */
const stampOf = (date: Date) => date.toISOString().replace(/[-:.]/g, '')

interface RecoveryState {
  in_recovery: boolean
  pause_state: string
  replay_lsn: string | null
}

function logExcerpt(text: string, lines = 25): string {
  const all = text.split('\n').filter(Boolean)
  const important = all.filter((line) => /FATAL|PANIC|ERROR|recovery|restore point|redo|consistent|timeline/i.test(line))
  return (important.length ? important : all).slice(-lines).join('\n')
}

/**
 * pitr: the whole cluster back to the restore point. The base backup is copied next to the data
 * directory (while pg_verifybackup checks it) before the server stops, so downtime is a stop, two
 * renames and the replay. Recovery pauses at the target, the recorded versions are read while it
 * is paused and read-only, and only then is the server promoted. Until promotion, any failure
 * stops the restored copy and puts the original data directory back (renamed, never modified) and
 * starts it; the failed copy is kept for diagnosis.
 */
export async function rollBackByPitr(
  ctx: RollbackContext,
  prepared: PreparedPitr
): Promise<{ databases: RollbackDatabaseResult[]; pitr: PitrDetails; recovery: string[]; ok: boolean; changed: boolean }> {
  const { manifest, request, log, phases } = ctx
  const rp = manifest.restorePoint!
  const { dataDir } = prepared
  const pgdata = dataDir.path
  const stamp = stampOf(new Date())
  const previous = dataDir.sibling(`.pre-rollback-${stamp}`)
  const staging = dataDir.sibling(`.rollback-staging-${stamp}`)
  const failedDir = dataDir.sibling(`.failed-rollback-${stamp}`)
  const logFile = dataDir.sibling(`.rollback-${stamp}.log`)
  const pitr: PitrDetails = { pgdata, recoveryTimeline: rp.timeline }
  const recovery: string[] = []
  const timeout = request.waitTimeoutMs
  const results: RollbackDatabaseResult[] = []

  // 1. Copy and verify while the server still runs: nothing of the cluster moves yet. A backup
  // can rot between the snapshot and the rollback, so pg_verifybackup re-reads it in full (every
  // file's CRC32C, not only sizes) side by side with the copy, and the server is stopped only
  // once both are done.
  try {
    const copyStarted = performance.now()
    const verifying = verifyBaseBackup(prepared.programs.pgVerifybackup, prepared.base, request.env).then((ms) => {
      phases.record('verify the base backup (pg_verifybackup)', ms, true, 'backup_manifest checksum, every file with its size and CRC32C, and the WAL from start to end verified')
      return ms
    })
    verifying.catch(() => undefined)
    await phases.run('copy the base backup next to the data directory', async (note) => {
      await dataDir.copyTree(prepared.base, staging)
      note(`${staging} (${formatBytes(manifest.baseBackup?.bytes ?? 0)}) in ${formatDuration(performance.now() - copyStarted)}`)
    })
    await verifying
  } catch (error) {
    await dataDir.remove(staging).catch(() => undefined)
    throw error
  }

  const putBackCommands = [
    `${dataDir.pgCtlCommand(['-m', 'fast', 'stop'])}   # if a server runs on ${pgdata}`,
    `mv ${shellQuote(pgdata)} ${shellQuote(failedDir)}`,
    `mv ${shellQuote(previous)} ${shellQuote(pgdata)}`,
    request.startCommand ? request.startCommand : dataDir.pgCtlCommand(['-l', logFile, 'start'])
  ]
  log.info(`if this run is interrupted from here on, the original data directory is ${previous}; put it back with:\n  ${putBackCommands.join('\n  ')}`)

  let moved = false
  let stoppedAt = 0
  let logOffset = 0
  try {
    await phases.run('prepare the restored data directory', async (note) => {
      await dataDir.remove(join(staging, 'backup_manifest'))
      for (const signal of ['standby.signal', 'recovery.signal']) await dataDir.remove(join(staging, signal))
      const autoConf = join(staging, 'postgresql.auto.conf')
      const original = await dataDir.readText(autoConf)
      const settings = {
        restore_command: prepared.restoreCommand,
        recovery_target_name: rp.name,
        recovery_target_timeline: String(rp.timeline),
        recovery_target_action: 'pause',
        hot_standby: 'on'
      }
      await dataDir.writeText(autoConf, withRecoverySettings(original, settings, MARKER))
      await dataDir.writeText(join(staging, 'recovery.signal'), '')
      note(`recovery_target_name = '${rp.name}', recovery_target_timeline = ${rp.timeline}, recovery_target_action = pause; recovery.signal`)
    })
    await phases.run('stop the server', async (note) => {
      await dataDir.stop(request.stopCommand, timeout)
      stoppedAt = performance.now()
      note(request.stopCommand ? `with stop-command` : 'pg_ctl stop -m fast')
    })
    await phases.run('move the data directory aside and put the restored copy in place', async (note) => {
      await dataDir.rename(pgdata, previous)
      moved = true
      pitr.previousDir = previous
      await dataDir.rename(staging, pgdata)
      await dataDir.chmod(pgdata, dataDir.mode)
      note(`${pgdata} → ${previous}; restored copy → ${pgdata}`)
    })
    logOffset = fileSize(dataDir.currentLogFile(request.startCommand ? undefined : logFile))
    await phases.run('start recovery', async (note) => {
      try {
        await dataDir.start(request.startCommand, logFile, timeout)
      } catch (error) {
        const excerpt = logExcerpt(readLogTail(dataDir.currentLogFile(request.startCommand ? undefined : logFile), logOffset))
        throw new CodedError('RECOVERY_FAILED', `the restored server did not start: ${errorMessage(error)}${excerpt ? `\n${excerpt}` : ''}`)
      }
      note(request.startCommand ? 'with start-command' : `pg_ctl start, log ${logFile}`)
    })
    pitr.logFile = dataDir.currentLogFile(request.startCommand ? undefined : logFile)
    await phases.run(`replay to restore point ${rp.name}`, async (note) => {
      const reached = await waitForTarget(ctx, prepared, rp, pitr.logFile, logOffset, timeout)
      note(`paused at ${reached} (restore point ${rp.lsn})`)
    })
    await phases.run('verify the recorded versions while paused (read-only)', async (note) => {
      const problems: string[] = []
      for (const db of manifest.databases) {
        const versions = await withSession(ctx.connect, { database: db.name, purpose: 'rollback-verify' }, readVersions)
        for (const extension of db.extensions) {
          if (versions[extension.name] !== extension.version) problems.push(`${db.name}: ${extension.name} is ${versions[extension.name] ?? 'not installed'}, recorded ${extension.version}`)
        }
        const recorded = Object.fromEntries(db.extensions.map((e) => [e.name, e.version]))
        results.push({
          name: db.name,
          outcome: 'rolled_back',
          before: versionsBefore(ctx.drift.find((d) => d.name === db.name), recorded),
          after: versions,
          recorded,
          durationMs: 0
        })
      }
      if (problems.length > 0) throw new CodedError('RECOVERY_FAILED', `the recovered cluster does not hold the recorded versions: ${problems.join('; ')}`)
      note(`${manifest.databases.length} database(s) match the snapshot`)
    })
  } catch (error) {
    for (const result of results) result.outcome = 'put_back'
    const message = error instanceof CodedError ? error.message : describePgError(error) || errorMessage(error)
    pitr.logExcerpt = logExcerpt(readLogTail(pitr.logFile ?? dataDir.currentLogFile(request.startCommand ? undefined : logFile), logOffset))
    if (!moved) {
      await dataDir.remove(staging).catch(() => undefined)
      if (!dataDir.isRunning()) {
        const restarted = await dataDir.start(request.startCommand, logFile, timeout).then(
          () => true,
          () => false
        )
        recovery.push(
          restarted
            ? 'nothing was moved; the server had been stopped and was started again on the original data directory'
            : `the server was stopped but nothing was moved; start it again: ${request.startCommand || dataDir.pgCtlCommand(['-l', logFile, 'start'])}`
        )
      } else recovery.push('nothing was moved; the server still runs on the original data directory')
      throw Object.assign(new CodedError(error instanceof CodedError ? error.code : 'ROLLBACK_FAILED', message), { pitr, recovery })
    }
    const putBack = await putOriginalBack(ctx, prepared, previous, failedDir, logFile, putBackCommands)
    pitr.putBack = putBack.ok
    if (putBack.ok) pitr.failedDir = failedDir
    recovery.push(...putBack.lines)
    pitr.stoppedForMs = stoppedAt ? performance.now() - stoppedAt : undefined
    throw Object.assign(new CodedError(error instanceof CodedError ? error.code : 'RECOVERY_FAILED', message), { pitr, recovery })
  }

  // 2. Promotion: from here the cluster is on a new timeline and the rollback has happened.
  await phases.run('promote', async (note) => {
    // Paused at its target, recovery ends when replay is resumed (the startup process wakes at
    // once; a promotion request is only noticed on its next one-second check). pg_ctl promote
    // serves roles that may call neither function.
    // One session throughout: it survives the promotion, and polling on it costs no connection.
    const tl = await withSession(ctx.connect, { database: prepared.probeDatabase, purpose: 'rollback-promote' }, async (client) => {
      const resumed = await client.query('SELECT pg_wal_replay_resume()').then(
        () => true,
        () => false
      )
      if (!resumed) await dataDir.ctl(['-w', '-t', String(Math.ceil(timeout / 1000)), 'promote'], timeout + 10_000)
      const deadline = Date.now() + timeout
      for (;;) {
        const row = (await client.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec')).rows[0]
        if (!row.rec) break
        if (Date.now() > deadline) throw new CodedError('ROLLBACK_FAILED', 'the server did not leave recovery within wait-timeout after the promotion request')
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      return (await client.query<{ tl: number }>(`SELECT ${CURRENT_TIMELINE_SQL} AS tl`)).rows[0]
    })
    pitr.newTimeline = Number(tl.tl)
    pitr.stoppedForMs = performance.now() - stoppedAt
    note(`timeline ${rp.timeline} → ${tl.tl}; the server accepts writes`)
  })
  await phases.run('remove the recovery settings', async (note) => {
    const autoConf = join(pgdata, 'postgresql.auto.conf')
    try {
      const content = await dataDir.readText(autoConf)
      await dataDir.writeText(autoConf, withoutRecoverySettings(content, MARKER))
      if (existsSync(join(pgdata, 'recovery.signal'))) await dataDir.remove(join(pgdata, 'recovery.signal'))
      note('postgresql.auto.conf no longer sets recovery targets; recovery.signal is gone')
    } catch (error) {
      ctx.warnings.push({ code: 'ROLLBACK_FAILED', message: `the recovery settings could not be removed from ${autoConf} (${errorMessage(error)}): delete the lines between "# ${MARKER} begin" and "# ${MARKER} end" before the next restart` })
      note('failed; see warnings')
    }
  })
  const logText = readLogTail(pitr.logFile, logOffset)
  if (pitr.logFile && !logText.includes(`recovery stopping at restore point "${rp.name}"`)) {
    ctx.warnings.push({ code: 'RECOVERY_FAILED', message: `the server log ${pitr.logFile} does not show "recovery stopping at restore point \\"${rp.name}\\"", although replay paused at its LSN` })
  }
  if (!request.keepPrevious) {
    await phases.run('remove the previous data directory (keep-previous: false)', async (note) => {
      await dataDir.remove(previous)
      pitr.previousDir = undefined
      note(`removed ${previous}`)
    })
  }
  return { databases: results, pitr, recovery, ok: true, changed: true }
}

async function waitForTarget(ctx: RollbackContext, prepared: PreparedPitr, rp: NonNullable<RollbackContext['manifest']['restorePoint']>, logFile: string | undefined, logOffset: number, timeoutMs: number): Promise<string> {
  const started = Date.now()
  let lastReport = started
  const target = parseLsn(rp.lsn)
  const pauseState =
    ctx.manifest.server.versionNum >= 140000 ? 'pg_get_wal_replay_pause_state()' : `CASE WHEN pg_is_wal_replay_paused() THEN 'paused' ELSE 'not paused' END`
  let last: RecoveryState | undefined
  for (;;) {
    const log = readLogTail(logFile, logOffset)
    const fatal = log.split('\n').filter((line) => /\b(FATAL|PANIC)\b/.test(line) && !/the database system is (starting up|not yet accepting)/.test(line))
    if (fatal.length > 0) throw new CodedError('RECOVERY_FAILED', `recovery failed: ${fatal.slice(-3).join(' | ')}`)
    if (!prepared.dataDir.isRunning()) throw new CodedError('RECOVERY_FAILED', `the restored server stopped during recovery${log ? `: ${logExcerpt(log, 5).replace(/\n/g, ' | ')}` : ''}`)
    try {
      last = await withSession(ctx.connect, { database: prepared.probeDatabase, purpose: 'rollback-recovery' }, async (client) =>
        (await client.query<RecoveryState>(`SELECT pg_is_in_recovery() AS in_recovery, ${pauseState} AS pause_state, pg_last_wal_replay_lsn()::text AS replay_lsn`)).rows[0]
      )
      if (!last.in_recovery) throw new CodedError('RECOVERY_FAILED', 'recovery ended without pausing at the restore point (was the server promoted by someone else?)')
      if (last.pause_state === 'paused' && last.replay_lsn && parseLsn(last.replay_lsn) >= target) return last.replay_lsn
    } catch (error) {
      if (error instanceof CodedError && error.code === 'RECOVERY_FAILED') throw error
      // not accepting connections yet
    }
    const elapsed = Date.now() - started
    if (elapsed > timeoutMs) {
      throw new CodedError('RECOVERY_FAILED', `recovery did not pause at ${rp.name} within wait-timeout (${formatDuration(timeoutMs)}); last replayed ${last?.replay_lsn ?? 'nothing yet'}`)
    }
    if (Date.now() - lastReport >= 5000) {
      lastReport = Date.now()
      ctx.log.info(`replaying WAL: at ${last?.replay_lsn ?? '(not accepting connections yet)'}, target ${rp.lsn}, ${formatDuration(elapsed)} elapsed`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Stops the failed restore, renames it aside, renames the original back and starts it. */
async function putOriginalBack(
  ctx: RollbackContext,
  prepared: PreparedPitr,
  previous: string,
  failedDir: string,
  logFile: string,
  commands: string[]
): Promise<{ ok: boolean; lines: string[] }> {
  const { dataDir } = prepared
  const { request } = ctx
  const lines: string[] = []
  try {
    await ctx.phases.run('put the original data directory back', async (note) => {
      if (dataDir.isRunning()) {
        await dataDir.stop(request.stopCommand, request.waitTimeoutMs).catch(async () => {
          if (dataDir.isRunning()) await dataDir.ctl(['-m', 'immediate', '-w', 'stop'])
        })
      }
      if (existsSync(dataDir.path)) await dataDir.rename(dataDir.path, failedDir)
      await dataDir.rename(previous, dataDir.path)
      const putBackLog = logFile.replace(/\.log$/, '.put-back.log')
      await dataDir.start(request.startCommand, putBackLog, request.waitTimeoutMs)
      const deadline = Date.now() + request.waitTimeoutMs
      for (;;) {
        try {
          const inRecovery = await withSession(ctx.connect, { database: prepared.probeDatabase, purpose: 'rollback-check' }, async (client) => (await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r)
          if (!inRecovery) break
        } catch {
          // still starting
        }
        if (Date.now() > deadline) throw new Error('the original server did not come back within wait-timeout')
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      note(`${dataDir.path} is the original again and the server runs; the failed restore is kept in ${failedDir}`)
    })
    lines.push(
      `The original data directory was put back in ${dataDir.path} (it was only renamed, never modified) and the server was started again: the cluster is as it was before the rollback.`,
      `The failed restore is kept in ${failedDir} for diagnosis; remove it when done: rm -rf ${shellQuote(failedDir)}`
    )
    return { ok: true, lines }
  } catch (error) {
    lines.push(`Putting the original back failed (${errorMessage(error)}). The original data directory is intact in ${previous}. Put it back by hand, as ${dataDir.owner.name}:`, ...commands.map((c) => `  ${c}`))
    return { ok: false, lines }
  }
}
