import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import type { PriorVersions } from '../changes.js'
import { InterruptedError } from '../interrupt.js'
import { withSession } from '../connection.js'
import { formatDuration } from '../duration.js'
import { CodedError, errorMessage } from '../errors.js'
import type { Finding } from '../plan.js'
import { readVersions } from '../catalog.js'
import { readClusterFacts } from '../recovery/inventory.js'
import { readManifest, ROLLBACK_MARKER, verifyFiles, type SnapshotManifest } from '../recovery/manifest.js'
import { findingsOf, PhaseClock } from '../recovery/phases.js'
import { compareVersions } from '../versions.js'
import { downgradeObstacles, rollBackByDowngrade } from './downgrade.js'
import { dumpObstacles, rollBackByDump } from './dump-restore.js'
import { pitrDiscards, pitrObstacles, rollBackByPitr, walSinceRestorePoint, type PreparedPitr } from './pitr.js'
import {
  hasDrift,
  type DatabaseDrift,
  type DiscardReport,
  type PitrDetails,
  type RollbackContext,
  type RollbackDatabaseResult,
  type RollbackDeps,
  type RollbackOutcome,
  type RollbackRequest,
  type RollbackStrategy
} from './types.js'

export type { RollbackRequest, RollbackDeps, RollbackOutcome, RollbackStrategy, DatabaseDrift } from './types.js'

/** Where each database of the snapshot stands now: versions changed, extensions dropped or added. */
export async function compareWithSnapshot(ctx: Pick<RollbackContext, 'connect' | 'facts'>, manifest: SnapshotManifest, names: string[]): Promise<DatabaseDrift[]> {
  const existing = new Set(ctx.facts.databases.map((d) => d.name))
  const drift: DatabaseDrift[] = []
  for (const name of names) {
    const recorded = manifest.databases.find((d) => d.name === name)!
    if (!existing.has(name)) {
      drift.push({ name, exists: false, changed: [], missing: recorded.extensions.map((e) => e.name), added: [] })
      continue
    }
    const now = await withSession(ctx.connect, { database: name, purpose: 'rollback-inspect' }, readVersions)
    const then = Object.fromEntries(recorded.extensions.map((e) => [e.name, e.version]))
    drift.push({
      name,
      exists: true,
      changed: Object.entries(then)
        .filter(([ext, version]) => now[ext] !== undefined && now[ext] !== version)
        .map(([ext, version]) => ({ name: ext, now: now[ext], recorded: version })),
      missing: Object.keys(then).filter((ext) => now[ext] === undefined),
      added: Object.entries(now)
        .filter(([ext]) => then[ext] === undefined)
        .map(([ext, version]) => ({ name: ext, version }))
    })
  }
  return drift
}

/**
 * The databases the upgrade changed (from the plan or the execute report) that the snapshot does
 * not record: each one whose extensions are no longer at their `from` versions is a
 * ROLLBACK_INCOMPLETE finding, since nothing in this snapshot can bring it back.
 */
export async function uncoveredChanges(ctx: Pick<RollbackContext, 'connect' | 'facts'>, manifest: SnapshotManifest, changes: PriorVersions[]): Promise<Finding[]> {
  const covered = new Set(manifest.databases.map((d) => d.name))
  const existing = new Set(ctx.facts.databases.map((d) => d.name))
  const findings: Finding[] = []
  const coveredList = manifest.databases.length > 0 ? manifest.databases.map((d) => d.name).slice(0, 10).join(', ') + (covered.size > 10 ? `, … (${covered.size} in all)` : '') : 'no database'
  for (const change of changes.filter((c) => !covered.has(c.database))) {
    const message = (what: string) => `${change.database} ${what}, and the snapshot ${manifest.id} does not cover it (it records ${coveredList}): this rollback cannot restore it`
    if (!existing.has(change.database)) {
      findings.push({ code: 'ROLLBACK_INCOMPLETE', database: change.database, message: message('was to be changed by the upgrade and no longer exists') })
      continue
    }
    const now = await withSession(ctx.connect, { database: change.database, purpose: 'rollback-inspect' }, readVersions)
    const moved = Object.entries(change.extensions).filter(([name, from]) => (now[name] ?? null) !== from)
    if (moved.length === 0) continue
    const what = moved.map(([name, from]) => `${name} ${from ?? '(not installed)'} → ${now[name] ?? '(not installed)'}`).join(', ')
    findings.push({ code: 'ROLLBACK_INCOMPLETE', database: change.database, message: message(`was changed by the upgrade (${what})`) })
  }
  return findings
}

interface RollbackMarker {
  pid: number
  host: string
  startedAt: string
  strategy: RollbackStrategy
  databases: string[]
}

/** A rollback from this snapshot that is running, or was interrupted halfway: refuse to start another. */
function refuseIfMarked(dir: string): void {
  const path = join(dir, ROLLBACK_MARKER)
  if (!existsSync(path)) return
  let marker: Partial<RollbackMarker> = {}
  try {
    marker = JSON.parse(readFileSync(path, 'utf8')) as RollbackMarker
  } catch {
    // an unreadable marker still means a rollback did not finish
  }
  const what = `a ${marker.strategy ?? ''} rollback of ${marker.databases?.join(', ') || 'this snapshot'} started ${marker.startedAt ?? '(time unknown)'} by process ${marker.pid ?? '?'} on ${marker.host ?? '?'}`
  throw new CodedError(
    'ROLLBACK_INTERRUPTED',
    `${what} did not finish (${path} is still there): the databases it names may be half restored. Check them (mode verify, or rollback-strategy dump keeps the replaced database aside), then remove ${path} and roll back again`
  )
}

/**
 * Marks the snapshot while a rollback from it runs, so that one interrupted halfway is not
 * silently repeated. A snapshot on read-only storage cannot be marked: said, not fatal.
 */
function markRollback(dir: string, strategy: RollbackStrategy, databases: string[], warnings: Finding[]): string | undefined {
  const path = join(dir, ROLLBACK_MARKER)
  const marker: RollbackMarker = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), strategy, databases }
  try {
    writeFileSync(path, `${JSON.stringify(marker)}\n`, { flag: 'wx' })
    return path
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new CodedError('CONCURRENT_RUN', `another rollback from this snapshot started meanwhile (${path} appeared); nothing was changed by this one`)
    }
    warnings.push({ code: 'ROLLBACK_INTERRUPTED', message: `could not write ${path} (${errorMessage(error)}): if this rollback is interrupted, a later one will not know` })
    return undefined
  }
}

/**
 * A rollback only goes back. A recorded version newer than the installed one is not what an
 * upgrade left behind (someone downgraded since, or the manifest lies): refused, naming each.
 */
export function forwardMoves(drift: DatabaseDrift[]): Finding[] {
  return drift.flatMap((d) =>
    d.changed
      .filter((c) => compareVersions(c.recorded, c.now) > 0)
      .map((c) => ({
        code: 'NO_ROLLBACK_PATH' as const,
        database: d.name,
        extension: c.name,
        message: `${d.name}: the snapshot records ${c.name} ${c.recorded}, newer than the installed ${c.now}; a rollback never moves an extension forward (to go to ${c.recorded}, run execute with ${c.name}@${c.recorded})`
      }))
  )
}

function describeDrift(drift: DatabaseDrift[]): string {
  return drift
    .filter(hasDrift)
    .map((d) => {
      if (!d.exists) return `${d.name}: dropped`
      const parts = [
        ...d.changed.map((c) => `${c.name} ${c.now} (recorded ${c.recorded})`),
        ...d.missing.map((m) => `${m} dropped`),
        ...d.added.map((a) => `${a.name} ${a.version} added`)
      ]
      return `${d.name}: ${parts.join(', ')}`
    })
    .join('; ')
}

const hasDumps = (manifest: SnapshotManifest, drift: DatabaseDrift[]) =>
  drift.filter(hasDrift).every((d) => manifest.databases.find((m) => m.name === d.name)?.dump !== undefined)

const pitrPossible = (manifest: SnapshotManifest) => Boolean(manifest.restorePoint && manifest.baseBackup && !manifest.baseBackup.external && manifest.baseBackup.path)

interface Choice {
  strategy?: RollbackStrategy
  reason: string
  obstacles: Finding[]
  prepared?: PreparedPitr
}

/**
 * auto: the least destructive strategy that can restore the recorded versions — downgrade when
 * every changed extension has a script back; else dump when the snapshot has dumps of every
 * database to restore; pitr only with confirm-data-loss. A strategy that applies but whose
 * preconditions fail (sessions connected, a program missing) is reported, never skipped for a
 * more destructive one.
 */
async function choose(ctx: RollbackContext): Promise<Choice> {
  const { request, manifest } = ctx
  if (request.strategy === 'downgrade') return { strategy: 'downgrade', reason: 'rollback-strategy: downgrade', obstacles: await downgradeObstacles(ctx) }
  if (request.strategy === 'dump') return { strategy: 'dump', reason: 'rollback-strategy: dump', obstacles: await dumpObstacles(ctx) }
  if (request.strategy === 'pitr') {
    const { obstacles, prepared } = await pitrObstacles(ctx)
    return { strategy: 'pitr', reason: 'rollback-strategy: pitr', obstacles, prepared }
  }
  const ruledOut: string[] = []
  const downgrade = await downgradeObstacles(ctx)
  if (downgrade.length === 0) {
    return { strategy: 'downgrade', reason: 'auto chose downgrade: every changed extension has a downgrade script back to its recorded version, so no data is touched', obstacles: [] }
  }
  ruledOut.push(`downgrade is impossible (${downgrade.map((o) => o.message).join('; ')})`)
  if (hasDumps(manifest, ctx.drift)) {
    return {
      strategy: 'dump',
      reason: `auto chose dump: ${ruledOut.join('; ')}; the snapshot has a dump of every database to restore, and a per-database restore leaves the other databases alone`,
      obstacles: await dumpObstacles(ctx)
    }
  }
  ruledOut.push(`dump is impossible (the snapshot, strategy ${manifest.strategy}, has no dump of ${ctx.drift.filter(hasDrift).map((d) => d.name).join(', ')})`)
  if (pitrPossible(manifest) && !request.confirmDataLoss) {
    // Say first that only a whole-cluster rewind is left and what it would discard; whether its
    // other preconditions hold matters only once the user agrees to it.
    const discard = pitrDiscards(ctx, await walSinceRestorePoint(ctx))
    return {
      strategy: 'pitr',
      reason: `auto can only use pitr: ${ruledOut.join('; ')}`,
      obstacles: [{ code: 'CONFIRMATION_REQUIRED', message: `${ruledOut.join('; ')}; only a pitr rollback remains, which rewinds the whole cluster and needs confirm-data-loss: true. ${discard.summary}` }]
    }
  }
  if (pitrPossible(manifest)) {
    const { obstacles, prepared } = await pitrObstacles(ctx)
    return { strategy: 'pitr', reason: `auto chose pitr: ${ruledOut.join('; ')}; confirm-data-loss is true`, obstacles, prepared }
  }
  return {
    reason: `no strategy applies: ${ruledOut.join('; ')}; pitr is impossible (the snapshot has no base backup of this tool)`,
    obstacles: [{ code: 'NO_ROLLBACK_PATH', message: `nothing can restore the recorded versions: ${ruledOut.join('; ')}; and the snapshot has no base backup for a pitr rollback` }]
  }
}

function discardsOf(ctx: RollbackContext, strategy: RollbackStrategy, walBytes: number | null): DiscardReport {
  const drifted = ctx.drift.filter(hasDrift).map((d) => d.name)
  if (strategy === 'downgrade') {
    return { scope: 'none', summary: `No data: the downgrade scripts change only the extensions' own objects in ${drifted.join(', ')} (what the upgrade added to them is dropped by the scripts).` }
  }
  if (strategy === 'dump') {
    const since = Date.parse(ctx.facts.now) - Date.parse(ctx.manifest.createdAt)
    return {
      scope: 'databases',
      summary: `Every change made to ${drifted.join(', ')} since the dump (${ctx.manifest.createdAt}, ${formatDuration(Math.max(0, since))} ago) is replaced by the dump's contents${ctx.request.keepPrevious ? '; the replaced database is kept under another name' : ''}. Other databases are not touched.`,
      sinceMs: since,
      databases: drifted
    }
  }
  return pitrDiscards(ctx, walBytes)
}

/**
 * Rolls the databases of a snapshot back to it: reads and checks the manifest, compares each
 * database with it (nothing to do when they match), picks the strategy, checks every
 * precondition before anything moves, then runs it and verifies the result.
 */
export async function rollBack(request: RollbackRequest, deps: RollbackDeps): Promise<RollbackOutcome> {
  const started = performance.now()
  const phases = new PhaseClock(deps.log)
  const warnings: Finding[] = []
  const { manifest, path, dir } = readManifest(request.manifestPath)
  let uncovered: Finding[] = []
  const outcome = (partial: Partial<RollbackOutcome> & Pick<RollbackOutcome, 'status' | 'reason'>): RollbackOutcome => {
    const done: RollbackOutcome = {
      snapshot: { id: manifest.id, strategy: manifest.strategy, path, createdAt: manifest.createdAt, restorePoint: manifest.restorePoint?.name },
      phases: phases.phases,
      findings: [],
      warnings,
      databases: [],
      changed: false,
      durationMs: performance.now() - started,
      ...partial
    }
    // A changed database the snapshot cannot restore makes any rollback incomplete, never a success.
    return uncovered.length > 0 ? { ...done, status: 'rollback_failed', findings: [...done.findings, ...uncovered] } : done
  }
  let strategy: RollbackStrategy | undefined
  let reason = ''
  let discarded: DiscardReport | undefined
  let marker: string | undefined
  let interrupted = false
  try {
    if (request.strategy === 'dump' && !manifest.databases.some((d) => d.dump)) {
      throw new CodedError('INVALID_INPUT', `input "rollback-strategy": dump needs a snapshot taken with snapshot-strategy dump; ${manifest.id} is ${manifest.strategy}`)
    }
    if (request.strategy === 'pitr' && !manifest.restorePoint) {
      throw new CodedError('INVALID_INPUT', `input "rollback-strategy": pitr needs a snapshot with a restore point (snapshot-strategy basebackup); ${manifest.id} is ${manifest.strategy}`)
    }
    const facts = await phases.run('inspect the server', async (note) => {
      const read = await withSession(deps.connect, { purpose: 'rollback-inspect' }, readClusterFacts)
      note(`PostgreSQL ${read.version}, system ${read.systemIdentifier}, timeline ${read.timeline ?? '(standby)'}`)
      return read
    })
    if (facts.systemIdentifier !== manifest.server.systemIdentifier) {
      throw new CodedError('SNAPSHOT_MISMATCH', `the snapshot ${manifest.id} belongs to another cluster: it records system identifier ${manifest.server.systemIdentifier}, the server at database-url has ${facts.systemIdentifier}; nothing was changed`)
    }
    if (facts.inRecovery) throw new CodedError('READ_ONLY_SERVER', 'the server is a standby (in recovery); roll back on the primary')
    const names = request.databases?.length ? request.databases : manifest.databases.map((d) => d.name)
    const unknown = names.filter((name) => !manifest.databases.some((d) => d.name === name))
    if (unknown.length > 0) throw new CodedError('INVALID_INPUT', `input "databases": ${unknown.join(', ')} ${unknown.length === 1 ? 'is' : 'are'} not in the snapshot, which has ${manifest.databases.map((d) => d.name).join(', ')}`)
    refuseIfMarked(dir)
    const ctx: RollbackContext = { ...deps, request, manifest, manifestDir: dir, facts, phases, drift: [], warnings }
    uncovered = await phases.run('check that the snapshot covers every changed database', async (note) => {
      if (!request.changes) {
        warnings.push({ code: 'COVERAGE_UNCHECKED', message: 'rollback was given neither plan nor report, so it cannot check that the snapshot covers every database the upgrade changed; pass the dry-run plan or the execute report' })
        note('not checked: neither plan nor report was given')
        return []
      }
      if (request.planFingerprint && manifest.plan && manifest.plan.fingerprint !== request.planFingerprint) {
        warnings.push({ code: 'SNAPSHOT_MISMATCH', message: `the snapshot was taken for plan ${manifest.plan.fingerprint}, not for the plan given (${request.planFingerprint})` })
      }
      const wanted = request.databases ? request.changes.filter((c) => request.databases!.includes(c.database)) : request.changes
      const found = await uncoveredChanges(ctx, manifest, wanted)
      note(found.length === 0 ? `${wanted.length} changed database(s), all covered` : `${found.length} changed database(s) not covered: ${found.map((f) => f.database).join(', ')}`)
      return found
    })
    ctx.drift = await phases.run('compare with the snapshot', async (note) => {
      const drift = await compareWithSnapshot(ctx, manifest, names)
      note(drift.some(hasDrift) ? describeDrift(drift) : `${names.length} database(s) match the snapshot`)
      return drift
    })
    const forward = forwardMoves(ctx.drift)
    if (forward.length > 0) return outcome({ status: 'rollback_failed', reason: 'the snapshot records versions newer than the installed ones; nothing was changed', findings: forward })
    const unchanged = (name: string): RollbackDatabaseResult => {
      const recorded = Object.fromEntries(manifest.databases.find((d) => d.name === name)!.extensions.map((e) => [e.name, e.version]))
      return { name, outcome: 'already_matched', before: recorded, after: recorded, recorded, durationMs: 0 }
    }
    if (!ctx.drift.some(hasDrift)) {
      return outcome({ status: 'nothing_to_do', reason: `every extension of ${names.join(', ')} already has its recorded version; nothing was changed`, databases: names.map(unchanged) })
    }

    const choice = await phases.run('choose the strategy and check its preconditions', async (note) => {
      const chosen = await choose(ctx)
      note(chosen.strategy ?? 'none')
      return chosen
    })
    strategy = choice.strategy
    reason = choice.reason
    deps.log.info(reason)
    if (strategy) {
      discarded = discardsOf(ctx, strategy, strategy === 'pitr' ? await walSinceRestorePoint(ctx) : null)
      deps.log.info(`what this rollback discards: ${discarded.summary}`)
    }
    if (choice.obstacles.length > 0 || !strategy) {
      return outcome({ status: 'rollback_failed', strategy, reason, discarded, findings: choice.obstacles })
    }

    let results: RollbackDatabaseResult[] = []
    let pitr: PitrDetails | undefined
    let recovery: string[] = []
    marker = markRollback(dir, strategy, ctx.drift.filter(hasDrift).map((d) => d.name), warnings)
    if (strategy === 'downgrade') {
      results = await rollBackByDowngrade(ctx)
    } else if (strategy === 'dump') {
      const drifted = new Set(ctx.drift.filter(hasDrift).map((d) => d.name))
      const files = new Set(manifest.databases.filter((d) => drifted.has(d.name) && d.dump).map((d) => d.dump!.file))
      await phases.run('verify the dump checksums', async (note) => {
        await verifyFiles(dir, manifest, (file) => files.has(file))
        note(`${files.size} dump(s) match their sha256`)
      })
      results = await rollBackByDump(ctx, new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '').replace('T', '_').toLowerCase())
    } else {
      try {
        const done = await rollBackByPitr(ctx, choice.prepared!)
        results = done.databases
        pitr = done.pitr
        recovery = done.recovery
      } catch (error) {
        interrupted = error instanceof InterruptedError
        const details = error as { pitr?: PitrDetails; recovery?: string[] }
        return outcome({
          status: 'rollback_failed',
          strategy,
          reason,
          discarded,
          pitr: details.pitr,
          recovery: details.recovery,
          findings: findingsOf(error, 'ROLLBACK_FAILED'),
          changed: Boolean(details.pitr?.previousDir && !details.pitr.putBack),
          databases: manifest.databases.map((d) => ({ ...unchanged(d.name), outcome: details.pitr?.putBack ? 'put_back' : 'failed', after: undefined }))
        })
      }
    }
    for (const name of names) if (!results.some((r) => r.name === name)) results.push(unchanged(name))
    const failed = results.filter((r) => r.outcome === 'failed' || r.outcome === 'put_back' || r.outcome === 'not_started')
    const findings: Finding[] = failed
      .filter((r) => r.outcome !== 'not_started')
      .map((r) => ({ code: 'ROLLBACK_FAILED', database: r.name, message: r.detail ?? 'failed' }))
    if (failed.length > 0) {
      recovery.push(...failed.filter((r) => r.outcome === 'put_back').map((r) => `${r.name}: ${r.detail}`))
    }
    return outcome({
      status: failed.length > 0 ? 'rollback_failed' : 'rolled_back',
      strategy,
      reason,
      discarded,
      pitr,
      recovery: recovery.length ? recovery : undefined,
      findings,
      databases: results,
      // A database that failed without being put back may be half-changed.
      changed: results.some((r) => r.outcome === 'rolled_back' || r.outcome === 'failed')
    })
  } catch (error) {
    interrupted = error instanceof InterruptedError
    if (!(error instanceof CodedError)) deps.log.debug(errorMessage(error))
    return outcome({ status: 'rollback_failed', strategy, reason: reason || 'stopped before a strategy was chosen', discarded, findings: findingsOf(error, 'ROLLBACK_FAILED') })
  } finally {
    // An interrupted rollback leaves its marker: the next one must not start blind.
    if (marker && !interrupted) rmSync(marker, { force: true })
  }
}
