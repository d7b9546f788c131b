import { performance } from 'node:perf_hooks'
import { inspectServer } from '../catalog.js'
import { withSession } from '../connection.js'
import { executeDatabase } from '../executor.js'
import type { Finding } from '../plan.js'
import { readVersions } from '../catalog.js'
import { hasDrift, versionsBefore, type RollbackContext, type RollbackDatabaseResult } from './types.js'

const recordedVersions = (ctx: RollbackContext, database: string) =>
  Object.fromEntries((ctx.manifest.databases.find((d) => d.name === database)?.extensions ?? []).map((e) => [e.name, e.version]))

/**
 * Whether downgrade scripts can bring every drifted database back: each changed extension needs
 * its recorded version shipped and an update path back to it; a dropped or added extension, or a
 * dropped database, cannot be handled by ALTER EXTENSION. Returns one finding per obstacle.
 */
export async function downgradeObstacles(ctx: RollbackContext): Promise<Finding[]> {
  const obstacles: Finding[] = []
  for (const drift of ctx.drift.filter(hasDrift)) {
    const database = drift.name
    if (!drift.exists) {
      obstacles.push({ code: 'NO_ROLLBACK_PATH', database, message: `${database} no longer exists; a downgrade cannot recreate it` })
      continue
    }
    for (const name of drift.missing) obstacles.push({ code: 'NO_ROLLBACK_PATH', database, extension: name, message: `${name} was dropped since the snapshot; a downgrade cannot recreate it` })
    for (const added of drift.added) {
      obstacles.push({ code: 'NO_ROLLBACK_PATH', database, extension: added.name, message: `${added.name} ${added.version} was installed since the snapshot; a downgrade does not drop extensions` })
    }
    if (drift.changed.length === 0) continue
    const rows = await withSession(ctx.connect, { database, purpose: 'rollback-inspect' }, async (client) =>
      (
        await client.query<{ name: string; now: string; recorded: string; path: string | null; available: boolean }>(
          `SELECT e.name, e.now, e.recorded,
                  (SELECT p.path FROM pg_extension_update_paths(e.name) p WHERE p.source = e.now AND p.target = e.recorded) AS path,
                  EXISTS (SELECT 1 FROM pg_available_extension_versions v WHERE v.name = e.name AND v.version = e.recorded) AS available
           FROM json_to_recordset($1::json) AS e(name text, now text, recorded text)`,
          [JSON.stringify(drift.changed)]
        )
      ).rows
    )
    for (const row of rows) {
      if (!row.available) {
        obstacles.push({ code: 'VERSION_NOT_AVAILABLE', database, extension: row.name, message: `${row.name} ${row.recorded} is no longer shipped on the server (its script files are gone)` })
      } else if (row.path === null) {
        obstacles.push({ code: 'NO_UPDATE_PATH', database, extension: row.name, message: `${row.name}: no downgrade script leads from ${row.now} back to ${row.recorded}` })
      }
    }
  }
  return obstacles
}

/**
 * downgrade: ALTER EXTENSION … UPDATE TO '<recorded>' per database, under execute's whole
 * discipline (advisory lock, a fresh session per statement, lock_timeout retries), then the
 * versions are read back.
 */
export async function rollBackByDowngrade(ctx: RollbackContext): Promise<RollbackDatabaseResult[]> {
  const drifted = ctx.drift.filter(hasDrift)
  const server = await withSession(ctx.connect, { database: drifted[0]?.name, purpose: 'rollback-inspect' }, inspectServer)
  const results: RollbackDatabaseResult[] = []
  for (const drift of drifted) {
    const started = performance.now()
    const recorded = recordedVersions(ctx, drift.name)
    const before = versionsBefore(drift, recorded)
    const report = await ctx.phases.run(`downgrade ${drift.name}`, async (note) => {
      const done = await ctx.log.group(`database ${drift.name}`, () =>
        executeDatabase(
          ctx.connect,
          {
            name: drift.name,
            request: { extensions: drift.changed.map((c) => ({ name: c.name, version: c.recorded })), allowDowngrade: true, installMissing: false, stagedExtensions: [] }
          },
          server,
          ctx.request.execute,
          ctx.log
        )
      )
      note(done.extensions.map((e) => `${e.name} ${e.walked.join(' → ')}: ${e.outcome}`).join('; ') || done.outcome)
      return done
    })
    const after = await withSession(ctx.connect, { database: drift.name, purpose: 'rollback-verify' }, readVersions)
    const wrong = Object.entries(recorded).filter(([name, version]) => after[name] !== version)
    const failed = report.outcome === 'failed' || wrong.length > 0
    results.push({
      name: drift.name,
      outcome: failed ? 'failed' : 'rolled_back',
      before,
      after,
      recorded,
      durationMs: performance.now() - started,
      detail: failed
        ? `${report.code ?? 'ROLLBACK_FAILED'}: ${report.message ?? ''}${wrong.length ? ` (now ${wrong.map(([n]) => `${n} ${after[n] ?? 'missing'}`).join(', ')}; recorded ${wrong.map(([n, v]) => `${n} ${v}`).join(', ')})` : ''}`
        : `${report.extensions.filter((e) => e.outcome === 'updated').length} extension(s) downgraded`
    })
  }
  return results
}
