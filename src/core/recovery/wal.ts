import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type pg from 'pg'
import { formatDuration } from '../duration.js'
import { CodedError } from '../errors.js'
import { throwIfInterrupted } from '../interrupt.js'
import type { Logger } from '../logger.js'
import { runProgram, type ProgramOptions } from '../programs.js'

/** WAL positions, segment file names, the archive directory, and what is in it. */

const FILE = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/

export function parseLsn(text: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim())
  if (!match) throw new Error(`"${text}" is not an LSN`)
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`)
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`
}

export interface Segment {
  timeline: number
  segno: bigint
}

const hex8 = (value: bigint | number) => value.toString(16).toUpperCase().padStart(8, '0')

export function segmentName(segment: Segment, segmentSize: number): string {
  const perId = 0x100000000n / BigInt(segmentSize)
  return `${hex8(segment.timeline)}${hex8(segment.segno / perId)}${hex8(segment.segno % perId)}`
}

/** Parses a segment file name (also the prefix of `.partial` and `.backup` names); undefined otherwise. */
export function parseSegmentName(name: string, segmentSize: number): Segment | undefined {
  const match = FILE.exec(name.slice(0, 24))
  if (!match) return undefined
  const perId = 0x100000000n / BigInt(segmentSize)
  return { timeline: parseInt(match[1], 16), segno: BigInt(`0x${match[2]}`) * perId + BigInt(`0x${match[3]}`) }
}

/** The segment holding the byte at `lsn` (for a start position; pg_walfile_name uses the previous byte). */
export function segmentOf(lsn: bigint, timeline: number, segmentSize: number): string {
  return segmentName({ timeline, segno: lsn / BigInt(segmentSize) }, segmentSize)
}

/** Every segment name from `first` to `last` inclusive, on first's timeline. */
export function segmentRange(first: string, last: string, segmentSize: number): string[] {
  const a = parseSegmentName(first, segmentSize)
  const b = parseSegmentName(last, segmentSize)
  if (!a || !b) throw new Error(`not segment names: ${first}, ${last}`)
  const names: string[] = []
  for (let segno = a.segno; segno <= b.segno; segno++) names.push(segmentName({ timeline: a.timeline, segno }, segmentSize))
  return names
}

/** Timeline read the way pgBackRest does: pg_control_checkpoint() lags behind a promotion. */
export const CURRENT_TIMELINE_SQL = `('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int`

/**
 * The archive directory when archive_command copies each segment into a local directory under
 * its own name (`cp %p /archive/%f`, `test ! -f /a/%f && cp %p /a/%f`, rsync, install …).
 * A command that renames or compresses (`/a/%f.gz`) or ships elsewhere gives null.
 */
export function archiveDirectoryOf(archiveCommand: string): string | null {
  const pattern = /"(\/[^"]*?)\/%f"|'(\/[^']*?)\/%f'|(\/[^\s"';&|<>]*?)\/%f(?=$|[\s;&|)])/g
  let found: string | null = null
  for (const match of archiveCommand.matchAll(pattern)) found = match[1] ?? match[2] ?? match[3] ?? null
  return found
}

/** Segment files (complete ones, not .partial/.backup/.history) in an archive directory, sorted. */
export function archivedSegments(archiveDir: string): string[] {
  return readdirSync(archiveDir)
    .filter((name) => FILE.test(name))
    .sort()
}

/** The start segment of the newest base backup whose history file (`….backup`) is in the archive. */
export function newestBackupStart(archiveDir: string): string | undefined {
  const histories = readdirSync(archiveDir)
    .filter((name) => /^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$/.test(name))
    .sort()
  return histories.at(-1)?.slice(0, 24)
}

export interface RestorePointRecord {
  name: string
  /** Start of the RESTORE_POINT record. */
  lsn: bigint
  /** End of the record: what pg_create_restore_point returns and where replay stops. */
  endLsn: bigint
  segment: string
}

const RESTORE_POINT_LINE = /len \(rec\/tot\):\s*\d+\/\s*(\d+), tx:\s*\d+, lsn: ([0-9A-F]+\/[0-9A-F]+), prev [0-9A-F]+\/[0-9A-F]+, desc: RESTORE_POINT (.*)$/

function contiguousRuns(names: string[], segmentSize: number): string[][] {
  const runs: string[][] = []
  let previous: Segment | undefined
  for (const name of names) {
    const segment = parseSegmentName(name, segmentSize)!
    const continues = previous && previous.timeline === segment.timeline && segment.segno === previous.segno + 1n
    if (continues) runs[runs.length - 1].push(name)
    else runs.push([name])
    previous = segment
  }
  return runs
}

export interface ScanResult {
  points: RestorePointRecord[]
  /** Segments read, first and last, for the manifest and the report. */
  scanned: number
  first?: string
  last?: string
  /** Runs pg_waldump could not read to their end (a torn tail), with its message. */
  incomplete: string[]
}

/**
 * Lists the restore points in archived segments with pg_waldump (`-r XLOG`), one call per
 * contiguous run of segments of one timeline. PostgreSQL keeps no catalog of restore points: the
 * WAL is the only place they are.
 */
export async function scanRestorePoints(
  waldump: string,
  archiveDir: string,
  segments: string[],
  segmentSize: number,
  options: ProgramOptions & { strict?: boolean } = {}
): Promise<ScanResult> {
  const result: ScanResult = { points: [], scanned: segments.length, first: segments[0], last: segments.at(-1), incomplete: [] }
  const bytes = BigInt(segmentSize)
  for (const run of contiguousRuns(segments, segmentSize)) {
    const args = ['-p', archiveDir, '-r', 'XLOG', run[0], run[run.length - 1]]
    const ran = await runProgram(waldump, args, { ...options, okCodes: [0, 1] })
    for (const line of ran.stdout.split('\n')) {
      const match = RESTORE_POINT_LINE.exec(line)
      if (!match) continue
      const lsn = parseLsn(match[2])
      const timeline = parseSegmentName(run[0], segmentSize)!.timeline
      // Records are MAXALIGNed: the next one (and what pg_create_restore_point returns) starts 8-aligned.
      const endLsn = (lsn + BigInt(match[1]) + 7n) & ~7n
      result.points.push({ name: match[3].trim(), lsn, endLsn, segment: segmentName({ timeline, segno: lsn / bytes }, segmentSize) })
    }
    if (ran.code !== 0) {
      const message = ran.stderr.trim().split('\n').pop() ?? ''
      if (options.strict) throw new CodedError('WAL_MISSING', `pg_waldump could not read the archived WAL ${run[0]} … ${run[run.length - 1]}: ${message}`)
      result.incomplete.push(`${run[0]} … ${run[run.length - 1]}: ${message}`)
    }
  }
  return result
}

/** Segments missing from a local archive between two segment names of one timeline. */
export function missingSegments(archiveDir: string, first: string, last: string, segmentSize: number): string[] {
  return segmentRange(first, last, segmentSize).filter((name) => !existsSync(join(archiveDir, name)))
}

interface ArchiverRow {
  last_archived_wal: string | null
  last_archived_time: Date | null
  failed_count: string
  last_failed_wal: string | null
  last_failed_time: Date | null
  now: Date
}

/** True when `archived` (a pg_stat_archiver name) is `wanted` or later on the same or a later timeline. */
export function archivedAtLeast(archived: string | null, wanted: string, segmentSize: number): boolean {
  if (!archived) return false
  const a = parseSegmentName(archived, segmentSize)
  const w = parseSegmentName(wanted, segmentSize)
  if (!a || !w || a.timeline < w.timeline) return false
  // A .backup history file names the segment it was written in, which is complete only later.
  if (archived.endsWith('.backup')) return a.segno > w.segno
  return a.segno >= w.segno
}

/**
 * Waits until `walFile` is archived: pg_stat_archiver reports it (or a later one) and, when the
 * archive is a local directory, the file is there. Prints progress; gives up after `timeoutMs`
 * with ARCHIVE_TIMEOUT and the archiver's last failure.
 */
export async function waitForArchive(
  client: pg.Client,
  walFile: string,
  archiveDir: string | null,
  segmentSize: number,
  timeoutMs: number,
  log: Logger
): Promise<{ archivedAt: Date; waitedMs: number }> {
  const started = Date.now()
  let lastReport = started
  let row: ArchiverRow | undefined
  for (let delay = 20; ; delay = Math.min(250, delay * 2)) {
    row = (await client.query<ArchiverRow>('SELECT last_archived_wal, last_archived_time, failed_count, last_failed_wal, last_failed_time, clock_timestamp() AS now FROM pg_stat_archiver')).rows[0]
    // The archiver counts a segment only once archive_command returned (a file that merely exists
    // may still be being copied); a local archive must also hold the file.
    const done = archivedAtLeast(row.last_archived_wal, walFile, segmentSize) && (archiveDir === null || existsSync(join(archiveDir, walFile)))
    if (done) return { archivedAt: row.now, waitedMs: Date.now() - started }
    const elapsed = Date.now() - started
    if (elapsed >= timeoutMs) break
    throwIfInterrupted(`waiting for ${walFile} to be archived`)
    if (Date.now() - lastReport >= 5000) {
      lastReport = Date.now()
      log.info(`waiting for ${walFile} to be archived: ${formatDuration(elapsed)} of ${formatDuration(timeoutMs)}; last archived ${row.last_archived_wal ?? 'none'}${Number(row.failed_count) > 0 ? `; ${row.failed_count} failure(s), last ${row.last_failed_wal}` : ''}`)
    }
    await new Promise((resolve) => setTimeout(resolve, delay))
  }
  const failure = row && row.last_failed_wal ? `; the archiver last failed on ${row.last_failed_wal} at ${row.last_failed_time?.toISOString()} (${row.failed_count} failure(s)): check archive_command and the server log` : ''
  throw new CodedError('ARCHIVE_TIMEOUT', `${walFile} was not archived within wait-timeout (${formatDuration(timeoutMs)}); last archived: ${row?.last_archived_wal ?? 'none'}${failure}`)
}

/** `backup_manifest`'s WAL range (plain format): the timeline and start/end LSN the backup needs. */
export function readBackupWalRange(manifestPath: string): { timeline: number; startLsn: string; endLsn: string; bytes: number } {
  const json = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
    Files: Array<{ Size: number }>
    'WAL-Ranges': Array<{ Timeline: number; 'Start-LSN': string; 'End-LSN': string }>
  }
  const ranges = json['WAL-Ranges']
  if (!ranges?.length) throw new Error(`${manifestPath} has no WAL-Ranges`)
  const last = ranges[ranges.length - 1]
  return {
    timeline: last.Timeline,
    startLsn: ranges[0]['Start-LSN'],
    endLsn: last['End-LSN'],
    bytes: json.Files.reduce((sum, file) => sum + file.Size, 0)
  }
}
