import { performance } from 'node:perf_hooks'
import type { ServerFacts } from '../catalog.js'
import { inspectServer, readVersions } from '../catalog.js'
import type { PriorVersions } from '../changes.js'
import { withSession, type Connector } from '../connection.js'
import { executeDatabase, type ExecuteSettings } from '../executor.js'
import type { Logger } from '../logger.js'
import type { Finding } from '../plan.js'
import { PhaseClock } from '../recovery/phases.js'
import { hasDrift, versionsBefore, type RollbackContext, type RollbackDatabaseResult, type RollbackDeps, type RollbackOutcome } from './types.js'

/** An extension to bring back to the version it had. */
interface Backward {
  name: string
  now: string
  recorded: string
}

const recordedVersions = (ctx: RollbackContext, database: string) =>
  Object.fromEntries((ctx.manifest.databases.find((d) => d.name === database)?.extensions ?? []).map((e) => [e.name, e.version]))

/** Whether each extension's recorded version is still shipped and a chain of scripts leads back to it. */
async function pathProblems(connect: Connector, database: string, changed: Backward[]): Promise<Finding[]> {
  if (changed.length === 0) return []
  const rows = await withSession(connect, { database, purpose: 'rollback-inspect' }, async (client) =>
    (
      await client.query<{ name: string; now: string; recorded: string; path: string | null; available: boolean }>(
        `SELECT e.name, e.now, e.recorded,
                (SELECT p.path FROM pg_extension_update_paths(e.name) p WHERE p.source = e.now AND p.target = e.recorded) AS path,
                EXISTS (SELECT 1 FROM pg_available_extension_versions v WHERE v.name = e.name AND v.version = e.recorded) AS available
         FROM json_to_recordset($1::json) AS e(name text, now text, recorded text)`,
        [JSON.stringify(changed)]
      )
    ).rows
  )
  return rows.flatMap((row): Finding[] => {
    if (!row.available) return [{ code: 'VERSION_NOT_AVAILABLE', database, extension: row.name, message: `${row.name} ${row.recorded} is no longer shipped on the server (its script files are gone)` }]
    if (row.path === null) return [{ code: 'NO_UPDATE_PATH', database, extension: row.name, message: `${row.name}: no downgrade script leads from ${row.now} back to ${row.recorded}` }]
    return []
  })
}

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
    obstacles.push(...(await pathProblems(ctx.connect, database, drift.changed)))
  }
  return obstacles
}

interface DowngradeJob {
  database: string
  changed: Backward[]
  /** Every version the database should have afterwards. */
  recorded: Record<string, string>
  before: Record<string, string>
}

/**
 * One database: ALTER EXTENSION … UPDATE TO '<recorded>' under execute's whole discipline
 * (advisory lock, re-inspection under it, the first-statement rule, lock_timeout retries), then the
 * versions are read back.
 */
async function downgradeDatabase(connect: Connector, server: ServerFacts, job: DowngradeJob, settings: ExecuteSettings, log: Logger, phases: PhaseClock): Promise<RollbackDatabaseResult> {
  const started = performance.now()
  const report = await phases.run(`downgrade ${job.database}`, async (note) => {
    const done = await log.group(`database ${job.database}`, () =>
      executeDatabase(
        connect,
        {
          name: job.database,
          request: { extensions: job.changed.map((c) => ({ name: c.name, version: c.recorded })), allowDowngrade: true, installMissing: false, stagedExtensions: [] }
        },
        server,
        settings,
        log
      )
    )
    note(done.extensions.map((e) => `${e.name} ${e.walked.join(' → ')}: ${e.outcome}`).join('; ') || done.outcome)
    return done
  })
  const after = await withSession(connect, { database: job.database, purpose: 'rollback-verify' }, readVersions)
  const wrong = Object.entries(job.recorded).filter(([name, version]) => after[name] !== version)
  const failed = report.outcome === 'failed' || wrong.length > 0
  return {
    name: job.database,
    outcome: failed ? 'failed' : 'rolled_back',
    before: job.before,
    after,
    recorded: job.recorded,
    durationMs: performance.now() - started,
    detail: failed
      ? `${report.code ?? 'ROLLBACK_FAILED'}: ${report.message ?? ''}${wrong.length ? ` (now ${wrong.map(([n]) => `${n} ${after[n] ?? 'missing'}`).join(', ')}; recorded ${wrong.map(([n, v]) => `${n} ${v}`).join(', ')})` : ''}`
      : `${report.extensions.filter((e) => e.outcome === 'updated').length} extension(s) downgraded`
  }
}

/** downgrade: every drifted database of the snapshot back to its recorded versions. */
export async function rollBackByDowngrade(ctx: RollbackContext): Promise<RollbackDatabaseResult[]> {
  const drifted = ctx.drift.filter(hasDrift)
  const server = await withSession(ctx.connect, { database: drifted[0]?.name, purpose: 'rollback-inspect' }, inspectServer)
  const results: RollbackDatabaseResult[] = []
  for (const drift of drifted) {
    const recorded = recordedVersions(ctx, drift.name)
    const job = { database: drift.name, changed: drift.changed, recorded, before: versionsBefore(drift, recorded) }
    results.push(await downgradeDatabase(ctx.connect, server, job, ctx.request.execute, ctx.log, ctx.phases))
  }
  return results
}

/**
 * Without a snapshot (`run` with snapshot-strategy none): every extension the upgrade moved goes
 * back to the version the plan found, by downgrade scripts — only when every one of them has a
 * script back; otherwise nothing is touched and each obstacle is reported.
 */
export async function rollBackToPrior(changes: PriorVersions[], settings: ExecuteSettings, deps: RollbackDeps): Promise<RollbackOutcome> {
  const started = performance.now()
  const phases = new PhaseClock(deps.log)
  const obstacles: Finding[] = []
  const jobs: DowngradeJob[] = []
  const outcome = (partial: Pick<RollbackOutcome, 'status' | 'reason'> & Partial<RollbackOutcome>): RollbackOutcome => ({
    phases: phases.phases,
    findings: [],
    warnings: [],
    databases: [],
    changed: false,
    durationMs: performance.now() - started,
    ...partial
  })
  await phases.run('compare with the planned versions', async (note) => {
    for (const change of changes) {
      const now = await withSession(deps.connect, { database: change.database, purpose: 'rollback-inspect' }, readVersions)
      const changed: Backward[] = []
      for (const [name, from] of Object.entries(change.extensions)) {
        const current = now[name]
        if (current === from || (current === undefined && from === null)) continue
        if (from === null) obstacles.push({ code: 'NO_ROLLBACK_PATH', database: change.database, extension: name, message: `${name} ${current} was installed by the upgrade; a downgrade does not drop extensions` })
        else if (current === undefined) obstacles.push({ code: 'NO_ROLLBACK_PATH', database: change.database, extension: name, message: `${name} was dropped; a downgrade cannot recreate it` })
        else changed.push({ name, now: current, recorded: from })
      }
      obstacles.push(...(await pathProblems(deps.connect, change.database, changed)))
      if (changed.length > 0) {
        const recorded = Object.fromEntries(changed.map((c) => [c.name, c.recorded]))
        jobs.push({ database: change.database, changed, recorded, before: Object.fromEntries(changed.map((c) => [c.name, c.now])) })
      }
    }
    note(jobs.length === 0 ? 'every database is at its planned versions' : jobs.map((j) => `${j.database}: ${j.changed.map((c) => `${c.name} ${c.now} → ${c.recorded}`).join(', ')}`).join('; '))
  })
  if (obstacles.length > 0) {
    return outcome({ status: 'rollback_failed', reason: 'no snapshot, and downgrade scripts cannot bring every changed extension back: there is no way back', findings: obstacles })
  }
  if (jobs.length === 0) return outcome({ status: 'nothing_to_do', reason: 'every extension is already at the version the plan found; nothing was changed' })
  const server = await withSession(deps.connect, { database: jobs[0].database, purpose: 'rollback-inspect' }, inspectServer)
  const results: RollbackDatabaseResult[] = []
  for (const job of jobs) results.push(await downgradeDatabase(deps.connect, server, job, settings, deps.log, phases))
  const failed = results.filter((r) => r.outcome === 'failed')
  return outcome({
    status: failed.length > 0 ? 'rollback_failed' : 'rolled_back',
    strategy: 'downgrade',
    reason: 'no snapshot (snapshot-strategy none), but every changed extension has a downgrade script back to the version the plan found',
    discarded: { scope: 'none', summary: `No data: the downgrade scripts change only the extensions' own objects in ${jobs.map((j) => j.database).join(', ')}.` },
    findings: failed.map((r) => ({ code: 'ROLLBACK_FAILED', database: r.name, message: r.detail ?? 'failed' })),
    databases: results,
    changed: results.some((r) => r.outcome === 'rolled_back' || r.outcome === 'failed')
  })
}
