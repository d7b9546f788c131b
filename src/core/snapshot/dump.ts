import { mkdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { closeQuietly, libpqEnvironment } from '../connection.js'
import { CodedError } from '../errors.js'
import { formatBytes } from '../recovery/format.js'
import { countRows, readDatabaseInventory } from '../recovery/inventory.js'
import { fileEntry, type ManifestDatabase, type SnapshotManifest } from '../recovery/manifest.js'
import { ProgramError, runProgram } from '../programs.js'
import type { SnapshotContext } from './types.js'

/** A file-system-safe name for a database's dump (the name itself is in the manifest). */
export function dumpFileName(database: string, index: number): string {
  const safe = database.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 60)
  return `${String(index + 1).padStart(3, '0')}-${safe}.dump`
}

/** The TOC entries pg_restore --list prints (comment lines start with ";"). */
export function tocEntries(list: string): string[] {
  return list.split('\n').filter((line) => line.trim() && !line.startsWith(';'))
}

/**
 * pg_dump -Fc of one database in the snapshot of a session that also records the extensions and
 * counts every table's rows: the session exports its snapshot (pg_export_snapshot) and pg_dump
 * runs with --snapshot, so the counts describe exactly the dumped data. The dump is then read
 * back with pg_restore --list.
 */
export async function dumpDatabase(
  ctx: SnapshotContext,
  database: string,
  index: number
): Promise<{ database: ManifestDatabase; file: SnapshotManifest['files'][number]; createdAt: string }> {
  const dumps = join(ctx.dir, 'dumps')
  mkdirSync(dumps, { recursive: true })
  const file = join(dumps, dumpFileName(database, index))
  return ctx.phases.run(`dump ${database} (pg_dump -Fc)`, async (note) => {
    const session = await ctx.connect({ database, purpose: 'snapshot-dump' })
    let open = false
    try {
      await session.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
      open = true
      const exported = (await session.query<{ id: string; at: Date }>('SELECT pg_export_snapshot() AS id, clock_timestamp() AS at')).rows[0]
      const inventory = await readDatabaseInventory(session, ctx.facts.versionNum)
      const dump = runProgram(ctx.programs.pgDump!, ['-Fc', `--snapshot=${exported.id}`, '--no-password', '-f', file], {
        env: ctx.request.env,
        extraEnv: libpqEnvironment(ctx.target, database),
        secrets: ctx.target.secrets
      })
      ctx.leftBehind.push(file)
      // Counting runs while pg_dump reads: both see the exported snapshot.
      const [counts, dumped] = await Promise.all([countRows(session), dump.catch((error: unknown) => error)])
      if (dumped instanceof Error) throw new CodedError('SNAPSHOT_FAILED', dumped instanceof ProgramError ? dumped.message : String(dumped))
      await session.query('COMMIT')
      open = false
      const listed = await runProgram(ctx.programs.pgRestore!, ['--list', file], { env: ctx.request.env }).catch((error: unknown) => {
        throw new CodedError('SNAPSHOT_CORRUPT', `pg_restore --list cannot read the dump of ${database}: ${error instanceof Error ? error.message : String(error)}`)
      })
      const entries = tocEntries(listed.stdout).length
      const entry = await fileEntry(ctx.dir, file)
      const rows = Object.values(counts).reduce((sum, n) => sum + n, 0)
      note(`${formatBytes(statSync(file).size)}, ${entries} TOC entries, ${Object.keys(counts).length} table(s), ${rows} row(s)`)
      return {
        database: {
          ...inventory,
          dump: {
            file: entry.path,
            bytes: entry.bytes,
            sha256: entry.sha256,
            exportedSnapshot: exported.id,
            tocEntries: entries,
            rowCounts: counts,
            durationMs: Math.round((dumped as { durationMs: number }).durationMs)
          }
        },
        file: entry,
        createdAt: new Date(exported.at).toISOString()
      }
    } finally {
      if (open) await session.query('ROLLBACK').catch(() => undefined)
      await closeQuietly(session)
    }
  })
}
