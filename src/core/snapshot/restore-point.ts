import { withSession } from '../connection.js'
import { CodedError } from '../errors.js'
import type { SnapshotManifest } from '../recovery/manifest.js'
import { CURRENT_TIMELINE_SQL, formatLsn, missingSegments, parseLsn, scanRestorePoints, segmentRange, waitForArchive } from '../recovery/wal.js'
import type { SnapshotContext } from './types.js'

export type RecordedRestorePoint = NonNullable<SnapshotManifest['restorePoint']>

interface Created {
  lsn: string
  wal_file: string
  timeline: number
  at: Date
  after: boolean
}

/**
 * The restore point: created strictly after `afterLsn` (the base backup's end), followed by
 * pg_switch_wal() so its segment is complete, then a bounded wait until that segment is archived.
 * When the archive is local, pg_waldump then proves that exactly one restore point of this name
 * lies between `scanFrom` and it, so recovery will stop at this one.
 */
export async function createRestorePoint(
  ctx: SnapshotContext,
  name: string,
  options: { afterLsn?: string; scanFrom?: string; uniqueness: string }
): Promise<RecordedRestorePoint> {
  const { phases, facts, archiveDir } = ctx
  const segmentSize = facts.walSegmentSize
  const created = await phases.run(`create restore point ${name}`, async (note) =>
    withSession(ctx.connect, { purpose: 'snapshot-restore-point' }, async (client) => {
      const row = (
        await client.query<Created>(
          `SELECT lsn::text AS lsn, pg_walfile_name(lsn) AS wal_file, ${CURRENT_TIMELINE_SQL} AS timeline, clock_timestamp() AS at,
                  CASE WHEN $2::text IS NULL THEN true ELSE lsn > $2::text::pg_lsn END AS after
           FROM pg_create_restore_point($1) AS lsn`,
          [name, options.afterLsn ?? null]
        )
      ).rows[0]
      ctx.leftBehind.push(`restore point "${name}" at ${row.lsn} in ${row.wal_file} (a WAL record: harmless, but its name must not be reused)`)
      await client.query('SELECT pg_switch_wal()')
      if (!row.after) {
        throw new CodedError('SNAPSHOT_FAILED', `restore point ${name} at ${row.lsn} is not after the base backup's end ${options.afterLsn}; recovery could not reach it`)
      }
      note(`${row.lsn} in ${row.wal_file} on timeline ${row.timeline}; WAL switched`)
      return row
    })
  )
  const archived = await phases.run(`wait until ${created.wal_file} is archived`, async (note) =>
    withSession(ctx.connect, { purpose: 'snapshot-archive-wait' }, async (client) => {
      const result = await waitForArchive(client, created.wal_file, archiveDir, segmentSize, ctx.request.waitTimeoutMs, ctx.log)
      note(`archived${archiveDir ? ` into ${archiveDir}` : ''} after ${Math.round(result.waitedMs)} ms`)
      return result
    })
  )
  let uniqueness = options.uniqueness
  if (archiveDir && ctx.programs.pgWaldump) {
    uniqueness = await phases.run('prove the restore point with pg_waldump', async (note) => {
      const first = options.scanFrom ?? created.wal_file
      const missing = missingSegments(archiveDir, first, created.wal_file, segmentSize)
      if (missing.length > 0) throw new CodedError('WAL_MISSING', `the archive ${archiveDir} lacks ${missing.join(', ')}, which recovery to ${name} needs`)
      const segments = segmentRange(first, created.wal_file, segmentSize)
      const scan = await scanRestorePoints(ctx.programs.pgWaldump!, archiveDir, segments, segmentSize, { env: ctx.request.env, strict: true })
      const named = scan.points.filter((p) => p.name === name)
      const lsn = parseLsn(created.lsn)
      if (named.length !== 1 || named[0].endLsn !== lsn) {
        const where = named.map((p) => formatLsn(p.endLsn)).join(', ')
        throw new CodedError('RESTORE_POINT_EXISTS', `the archived WAL from ${first} to ${created.wal_file} holds ${named.length} restore point(s) named "${name}" (${where || 'none'}), expected exactly one at ${created.lsn}; recovery would not stop at this snapshot`)
      }
      const evidence = `${options.uniqueness}; after creation pg_waldump found exactly one "${name}" (at ${created.lsn}) in ${segments.length} archived segment(s) ${first} … ${created.wal_file}`
      note(`exactly one "${name}" in ${segments.length} segment(s) from ${first}`)
      return evidence
    })
  }
  return {
    name,
    lsn: created.lsn,
    walFile: created.wal_file,
    timeline: Number(created.timeline),
    createdAt: new Date(created.at).toISOString(),
    archivedAt: new Date(archived.archivedAt).toISOString(),
    uniqueness
  }
}
