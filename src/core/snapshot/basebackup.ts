import { join } from 'node:path'
import { libpqEnvironment } from '../connection.js'
import { CodedError } from '../errors.js'
import { formatBytes } from '../recovery/format.js'
import { ProgramError, runProgram } from '../programs.js'
import { readBackupWalRange, segmentOf, parseLsn } from '../recovery/wal.js'
import type { SnapshotManifest } from '../recovery/manifest.js'
import type { SnapshotContext } from './types.js'

export type RecordedBaseBackup = NonNullable<SnapshotManifest['baseBackup']>

const PROGRESS = /(\d+)\/(\d+) kB \((\d+)%\)/g

/**
 * pg_basebackup in plain format with WAL streamed (-X stream), a fast checkpoint and a
 * backup_manifest with CRC32C checksums. Plain, not tar: PostgreSQL 15's pg_verifybackup verifies
 * plain backups only, and every backup taken here is verified (docs/recovery.md has the costs).
 */
export async function takeBaseBackup(ctx: SnapshotContext): Promise<RecordedBaseBackup> {
  const base = join(ctx.dir, 'base')
  const label = `pg-extension-upgrade ${ctx.id}`
  const recorded = await ctx.phases.run('base backup (pg_basebackup)', async (note) => {
    let lastLine = 0
    const result = await runProgram(
      ctx.programs.pgBasebackup!,
      ['-D', base, '-F', 'p', '-X', 'stream', '-c', 'fast', '-l', label, '--manifest-checksums=CRC32C', '--progress', '--no-password'],
      {
        env: ctx.request.env,
        extraEnv: libpqEnvironment(ctx.target),
        secrets: ctx.target.secrets,
        onOutput: (_stream, text) => {
          const matches = [...text.matchAll(PROGRESS)]
          const last = matches.at(-1)
          if (!last || Date.now() - lastLine < 5000) return
          lastLine = Date.now()
          ctx.log.info(`pg_basebackup: ${formatBytes(Number(last[1]) * 1024)} of ${formatBytes(Number(last[2]) * 1024)} (${last[3]}%)`)
        }
      }
    ).catch((error: unknown) => {
      throw new CodedError('SNAPSHOT_FAILED', error instanceof ProgramError ? error.message : String(error))
    })
    const range = readBackupWalRange(join(base, 'backup_manifest'))
    note(`${formatBytes(range.bytes)} in ${Math.round(result.durationMs)} ms; WAL ${range.startLsn} … ${range.endLsn} on timeline ${range.timeline}`)
    return range
  })
  return {
    external: false,
    path: 'base',
    label,
    startLsn: recorded.startLsn,
    endLsn: recorded.endLsn,
    startWalFile: segmentOf(parseLsn(recorded.startLsn), recorded.timeline, ctx.facts.walSegmentSize),
    timeline: recorded.timeline,
    bytes: recorded.bytes,
    format: 'plain',
    verifiedWith: 'pg_verifybackup (file sizes, CRC32C checksums, WAL from start to end LSN)'
  }
}

/**
 * pg_verifybackup over the plain backup: the backup_manifest's own checksum, every file present
 * with its size, the WAL the backup needs, and (unless `checksums` is false) every file's CRC32C.
 */
export async function verifyBaseBackup(pgVerifybackup: string, base: string, env: NodeJS.ProcessEnv, checksums = true): Promise<number> {
  try {
    const result = await runProgram(pgVerifybackup, ['--quiet', ...(checksums ? [] : ['--skip-checksums']), base], { env })
    return result.durationMs
  } catch (error) {
    throw new CodedError('SNAPSHOT_CORRUPT', `pg_verifybackup rejects the base backup in ${base}: ${error instanceof Error ? error.message : String(error)}`)
  }
}
