import { accessSync, constants, existsSync, statfsSync, statSync } from 'node:fs'
import { dirname, relative, resolve, isAbsolute } from 'node:path'
import { closeQuietly, type Connector } from '../connection.js'
import { errorMessage } from '../errors.js'
import { describePgError } from '../pg-error.js'
import type { CheckList } from '../recovery/phases.js'
import type { ClusterFacts } from '../recovery/inventory.js'
import { manifestsUnder } from '../recovery/manifest.js'
import { archivedSegments, newestBackupStart, parseSegmentName, scanRestorePoints, type ScanResult } from '../recovery/wal.js'
import { formatBytes } from '../recovery/format.js'

/** Why WAL archiving cannot carry a restore point, one reason per failed condition (empty: it can). */
export function archivingProblems(facts: ClusterFacts): string[] {
  const problems: string[] = []
  if (!['replica', 'logical'].includes(facts.walLevel)) {
    problems.push(`wal_level is ${facts.walLevel}; point-in-time recovery needs replica or logical (set it and restart the server)`)
  }
  if (!['on', 'always'].includes(facts.archiveMode)) {
    problems.push(
      `archive_mode is ${facts.archiveMode}: WAL is not archived, so a restore point would be unrecoverable (pg_create_restore_point succeeds anyway, which is why this is checked first); set archive_mode = on and archive_command, then restart`
    )
  } else if (!facts.archiveCommand.trim() && !facts.archiveLibrary.trim()) {
    problems.push('archive_mode is on but archive_command and archive_library are empty: archiving is paused and WAL piles up in pg_wal; set archive_command')
  } else if (/^\s*(\/bin\/true|\/usr\/bin\/true|true|:|exit 0)\s*;?\s*$/.test(facts.archiveCommand) && !facts.archiveLibrary.trim()) {
    problems.push(`archive_command is "${facts.archiveCommand.trim()}", which discards every segment: the archive has gaps, so no restore point is reachable`)
  }
  const { lastFailedTime, lastArchivedTime, lastFailedWal, failedCount } = facts.archiver
  if (lastFailedTime && (!lastArchivedTime || new Date(lastFailedTime) >= new Date(lastArchivedTime))) {
    problems.push(
      `the archiver is failing: ${failedCount} failure(s), the last on ${lastFailedWal} at ${lastFailedTime}${lastArchivedTime ? ` (last success ${lastArchivedTime})` : ' and nothing archived yet'}; check archive_command and the server log`
    )
  }
  return problems
}

/** Free bytes on the filesystem that holds `path` (or its nearest existing ancestor). */
export function freeBytes(path: string): number {
  let probe = resolve(path)
  while (!existsSync(probe) && dirname(probe) !== probe) probe = dirname(probe)
  const stats = statfsSync(probe)
  return Number(stats.bavail) * Number(stats.bsize)
}

/** The nearest existing ancestor must be writable so that the snapshot directory can be made. */
export function checkWritableDirectory(root: string, checks: CheckList, input = 'snapshot-dir'): void {
  let probe = resolve(root)
  while (!existsSync(probe) && dirname(probe) !== probe) probe = dirname(probe)
  if (!statSync(probe).isDirectory()) {
    checks.fail('INVALID_INPUT', `input "${input}": ${probe} is not a directory, so ${root} cannot be created`)
    return
  }
  try {
    accessSync(probe, constants.W_OK | constants.X_OK)
  } catch (error) {
    const readOnly = (error as NodeJS.ErrnoException).code === 'EROFS'
    checks.fail('INVALID_INPUT', `input "${input}": ${probe} is not writable${readOnly ? ' (a read-only filesystem)' : ' by this process'}, so ${root} cannot be written`)
  }
}

export function isInside(child: string, parent: string): boolean {
  const path = relative(resolve(parent), resolve(child))
  return path === '' || (!path.startsWith('..') && !isAbsolute(path))
}

/** Refuses a snapshot directory inside the data directory: a base backup would copy itself. */
export function checkOutsideDataDirectory(root: string, facts: ClusterFacts, checks: CheckList): void {
  if (facts.dataDirectory && isInside(root, facts.dataDirectory)) {
    checks.fail('INVALID_INPUT', `input "snapshot-dir": ${root} is inside the data directory ${facts.dataDirectory}; put snapshots elsewhere`)
  }
}

export function checkFreeSpace(root: string, needed: number, what: string, checks: CheckList): void {
  const free = freeBytes(root)
  if (free < needed) {
    checks.fail('INSUFFICIENT_SPACE', `input "snapshot-dir": ${root} is too full: it has ${formatBytes(free)} free; ${what} needs about ${formatBytes(needed)}`)
  }
}

/**
 * Proves that pg_basebackup will get its connections: a walsender session (pg_hba.conf
 * `replication` entry, REPLICATION attribute) and two free max_wal_senders slots (-X stream).
 */
export async function checkReplication(connect: Connector, facts: ClusterFacts, checks: CheckList): Promise<void> {
  if (!facts.replication) {
    checks.fail('INSUFFICIENT_PRIVILEGE', `role ${facts.role} has neither SUPERUSER nor REPLICATION, which pg_basebackup needs (ALTER ROLE ${facts.role} REPLICATION, or use snapshot-strategy: dump)`)
    return
  }
  const free = facts.maxWalSenders - facts.walSenders
  if (free < 2) {
    checks.fail('REPLICATION_UNAVAILABLE', `max_wal_senders is ${facts.maxWalSenders} with ${facts.walSenders} in use; pg_basebackup -X stream needs 2 free (raise max_wal_senders and restart)`)
    return
  }
  try {
    const client = await connect({ purpose: 'snapshot-probe', replication: true })
    try {
      await client.query('IDENTIFY_SYSTEM')
    } finally {
      await closeQuietly(client)
    }
  } catch (error) {
    checks.fail('REPLICATION_UNAVAILABLE', `a replication connection, as pg_basebackup makes, is refused: ${describePgError(error)} (add a "replication" line for this role and address to pg_hba.conf)`)
  }
}

export interface NameCheck {
  /** How uniqueness was established, for the manifest. */
  evidence: string
}

/**
 * A restore point name must never be used twice: recovery stops at the first match. Looks in the
 * manifests under snapshot-dir and, when the archive is a local directory, in the archived WAL
 * since the newest base backup (pg_waldump), at most `maxSegments` of the newest segments.
 */
export async function checkNameUnused(
  name: string,
  root: string,
  archive: { dir: string | null; waldump?: string; segmentSize: number },
  checks: CheckList,
  env: NodeJS.ProcessEnv,
  maxSegments = 1024
): Promise<NameCheck> {
  for (const { path, manifest } of manifestsUnder(root)) {
    if (manifest.id === name || manifest.restorePoint?.name === name) {
      checks.fail('RESTORE_POINT_EXISTS', `restore point "${name}" is already recorded in ${path}; choose another name (input "restore-point") or leave it empty for a generated one`)
      return { evidence: 'refused' }
    }
  }
  if (!archive.dir || !archive.waldump) {
    return { evidence: 'the archive is not a local directory: uniqueness rests on the generated name and the manifests in snapshot-dir' }
  }
  let segments: string[]
  try {
    segments = archivedSegments(archive.dir)
  } catch (error) {
    checks.fail('ARCHIVING_DISABLED', `the archive directory ${archive.dir} cannot be read: ${errorMessage(error)}`)
    return { evidence: 'refused' }
  }
  const since = newestBackupStart(archive.dir)
  if (since) {
    const from = parseSegmentName(since, archive.segmentSize)!.segno
    segments = segments.filter((s) => parseSegmentName(s, archive.segmentSize)!.segno >= from)
  }
  const capped = segments.length > maxSegments
  if (capped) segments = segments.slice(-maxSegments)
  let scan: ScanResult
  try {
    scan = await scanRestorePoints(archive.waldump, archive.dir, segments, archive.segmentSize, { env })
  } catch (error) {
    checks.fail('PROGRAM_MISSING', `pg_waldump could not scan ${archive.dir}: ${errorMessage(error)}`)
    return { evidence: 'refused' }
  }
  const clash = scan.points.find((p) => p.name === name)
  if (clash) {
    checks.fail('RESTORE_POINT_EXISTS', `restore point "${name}" already exists in the WAL archive (${clash.segment}); recovery would stop at the first one; choose another name`)
    return { evidence: 'refused' }
  }
  const range = segments.length ? `${scan.first} … ${scan.last}` : 'no archived segment yet'
  return { evidence: `pg_waldump found no "${name}" in ${segments.length} archived segment(s) (${range})${since ? ` since the newest base backup` : ''}${capped ? `, the newest ${maxSegments} only` : ''}` }
}
