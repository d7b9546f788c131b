import type pg from 'pg'
import type { DatabaseFacts, ServerFacts, SessionInfo } from './catalog.js'
import { CatalogCache, inspectDatabase, readVersions } from './catalog.js'
import type { Code } from './codes.js'
import { APPLICATION_NAME, backendPid, closeQuietly, withSession, type Connector } from './connection.js'
import { formatDuration } from './duration.js'
import { CodedError } from './errors.js'
import { interruptedBy, interruption } from './interrupt.js'
import type { Logger } from './logger.js'
import { describePgError } from './pg-error.js'
import { assertAgreesWithReplan, checkProgress, fingerprintDatabase, isChange, replanRequest, type DatabasePlan, type Finding, type PlannedExtension, type PlanRequest } from './plan.js'
import { planDatabase } from './planner.js'
import { quirkOf } from './quirks.js'
import { classify } from './sqlstate.js'
import { PRODUCT } from './product.js'

export type ExtensionOutcome = 'updated' | 'installed' | 'already_current' | 'failed' | 'skipped'

export interface ExtensionReport {
  name: string
  from: string | null
  to: string | null
  /** The versions the catalog went through in this run, the starting one included. */
  walked: string[]
  attempts: number
  durationMs: number
  outcome: ExtensionOutcome
  /** The version in the catalog when the run ended (re-read, not assumed); null when not installed or unknown. */
  finalVersion: string | null
  /** Why finalVersion is unknown: the catalog could not be re-read. */
  finalVersionUnknown?: string
  code?: Code
  sqlstate?: string
  message?: string
  /** The hop whose script failed, when it can be told. */
  failedHop?: { from: string; to: string }
  /** Sessions seen blocking the update while it waited for locks. */
  blockers: SessionInfo[]
}

export type DatabaseOutcome = 'updated' | 'current' | 'failed' | 'not_started'

export interface DatabaseReport {
  name: string
  outcome: DatabaseOutcome
  durationMs: number
  extensions: ExtensionReport[]
  code?: Code
  message?: string
  /** For canary databases: the verification that gated the rest of the rollout. */
  canary?: { verified: boolean; failures: string[] }
}

export interface ExecuteSettings {
  lockTimeoutMs: number
  statementTimeoutMs: number
  maxRetries: number
  longTransactionMs: number
  /** Backoff between lock retries: base × 2^(attempt-1), jittered ±50 %, capped. */
  backoffBaseMs?: number
  backoffMaxMs?: number
  sleep?: (ms: number) => Promise<void>
}

/** How the database is targeted: the planned state (from a plan) and what to reach. */
export interface DatabaseTarget {
  name: string
  /** The dry-run's plan of this database; execute refuses when the database moved off it. */
  planned?: DatabasePlan
  request: PlanRequest
}

const PRODUCT_LOCK_KEY = fnv31(PRODUCT.name)

/** A stable 31-bit hash (FNV-1a), so advisory lock keys need no server round trip. */
export function fnv31(text: string): number {
  let hash = 0x811c9dc5
  for (const byte of Buffer.from(text)) {
    hash ^= byte
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash & 0x7fffffff
}

export function advisoryKeys(database: string): [number, number] {
  return [PRODUCT_LOCK_KEY, fnv31(database)]
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The purpose, and so the application_name suffix, of the sessions that run ALTER EXTENSION. */
export const UPDATE_PURPOSE = 'update'

/** The server aborts a statement whose client is gone within this (PostgreSQL 14+). */
const CLIENT_CHECK_INTERVAL = '1s'

/** client_connection_check_interval exists from PostgreSQL 14 on; older servers refuse it at startup. */
function clientCheck(server: Pick<ServerFacts, 'versionNum'>): Record<string, string> {
  return server.versionNum >= 140000 ? { client_connection_check_interval: CLIENT_CHECK_INTERVAL } : {}
}

/** Session settings for the upgrading session, sent as startup options so ALTER stays statement #1. */
export function updateSessionSettings(settings: ExecuteSettings, server: Pick<ServerFacts, 'versionNum'>): Record<string, string | number> {
  return {
    lock_timeout: `${settings.lockTimeoutMs}ms`,
    statement_timeout: `${settings.statementTimeoutMs}ms`,
    // A parallel worker can load the old library mid-update (timescaledb#3286).
    max_parallel_workers_per_gather: 0,
    max_parallel_maintenance_workers: 0,
    // A run killed mid-update (a cancelled CI job) must not leave its ALTER running unlocked.
    ...clientCheck(server)
  }
}

/**
 * The first-statement rule (quirks' firstStatement, or the `first-statement-extensions` input):
 * such an update runs on a fresh session of its own; any other runs on the coordinator.
 */
export function needsFreshSession(name: string, request: Pick<PlanRequest, 'firstStatementExtensions'>): boolean {
  return quirkOf(name).firstStatement !== undefined || (request.firstStatementExtensions ?? []).includes(name)
}

/**
 * The update as the coordinator sends it: its own transaction, the same settings as a fresh
 * session's startup options set by SET LOCAL, and the application_name of an update while it runs
 * (a later run waits for it by that name), in one simple-protocol round trip.
 */
export function coordinatorUpdate(client: pg.Client, entry: PlannedExtension, version: string, settings: ExecuteSettings): string {
  const local: Record<string, string | number> = {
    application_name: `${APPLICATION_NAME}/${UPDATE_PURPOSE}`,
    // The coordinator's own client_connection_check_interval is in its startup options already.
    ...updateSessionSettings(settings, { versionNum: 0 })
  }
  const sets = Object.entries(local).map(([name, value]) => `SET LOCAL ${name} = ${client.escapeLiteral(String(value))}`)
  return ['BEGIN', ...sets, updateStatement(client, entry, version), 'COMMIT'].join('; ')
}

export function updateStatement(client: pg.Client, entry: PlannedExtension, version: string): string {
  const name = client.escapeIdentifier(entry.name)
  return entry.action === 'install'
    ? `CREATE EXTENSION ${name} VERSION ${client.escapeLiteral(version)}`
    : `ALTER EXTENSION ${name} UPDATE TO ${client.escapeLiteral(version)}`
}

type StopCode = Extract<Code, 'CONNECTION_LOST' | 'INTERRUPTED'>

/**
 * Why this database's updates must stop now: the coordinator lost its session, and with it the
 * advisory lock, or the process was interrupted. Tripping it cancels the statement in flight
 * (server-side, so that the ALTER rolls back) and no further update is started.
 */
class UpdateGuard {
  private stopReason?: { code: StopCode; message: string }
  /** Whether the stop cut work short (an update cancelled or not started). */
  affected = false
  private inFlight?: { pid: number; session: pg.Client; ended: Promise<unknown> }
  private cancelling?: Promise<void>
  private stopped!: () => void
  readonly whenStopped = new Promise<void>((resolve) => (this.stopped = resolve))
  private readonly onCoordinatorLost = () =>
    this.trip('CONNECTION_LOST', `the coordinator session holding the upgrade lock on ${this.database} was lost`)
  private coordinator?: pg.Client

  constructor(
    private readonly connect: Connector,
    private readonly database: string
  ) {
    const signal = interruptedBy()
    if (signal) this.trip('INTERRUPTED', `interrupted by ${signal}`)
    else guarded.add(this)
  }

  /** Watches the coordinator from the moment it holds the lock: its end is the lock's end. */
  watch(coordinator: pg.Client): void {
    this.coordinator = coordinator
    coordinator.on('end', this.onCoordinatorLost)
  }

  /** Why updates must stop, once they must (a method, so that it is read afresh after each await). */
  reason(): { code: StopCode; message: string } | undefined {
    return this.stopReason
  }

  trip(code: StopCode, message: string): void {
    if (this.stopReason) return
    this.stopReason = { code, message }
    this.stopped()
    if (this.inFlight) this.cancelling = this.cancelInFlight(this.inFlight)
  }

  /** Runs a statement that the guard cancels when it trips; refuses to start once it has. */
  async run<T>(session: pg.Client, statement: () => Promise<T>): Promise<T> {
    if (this.stopReason) throw new CodedError(this.stopReason.code, this.stopReason.message)
    const running = statement()
    this.inFlight = { pid: backendPid(session), session, ended: running.catch(() => undefined) }
    try {
      return await running
    } finally {
      this.inFlight = undefined
      await this.cancelling
    }
  }

  /** A sleep that ends early when the guard trips. */
  async sleep(ms: number, sleep: (ms: number) => Promise<void>): Promise<void> {
    await Promise.race([sleep(ms), this.whenStopped])
  }

  /**
   * A cancel that reaches a backend before it has read the statement is ignored, so it is repeated
   * until the statement has ended. It comes from a session of its own (the coordinator may be the
   * one that is gone); when none can be had, the session is closed, and the server aborts the
   * statement at its next client_connection_check_interval.
   */
  private async cancelInFlight(statement: { pid: number; session: pg.Client; ended: Promise<unknown> }): Promise<void> {
    let done = false
    void statement.ended.then(() => (done = true))
    let canceller: pg.Client | undefined
    try {
      canceller = await this.connect({ database: this.database, purpose: 'cancel' })
      while (!done) {
        await canceller.query('SELECT pg_cancel_backend($1)', [statement.pid])
        await Promise.race([defaultSleep(200), statement.ended])
      }
    } catch {
      if (!done) void closeQuietly(statement.session)
    } finally {
      await closeQuietly(canceller)
    }
  }

  dispose(): void {
    guarded.delete(this)
    this.coordinator?.off('end', this.onCoordinatorLost)
  }
}

/** The guards of the databases being updated: one listener for all, however many run side by side. */
const guarded = new Set<UpdateGuard>()
interruption.addEventListener(
  'abort',
  () => {
    for (const guard of guarded) guard.trip('INTERRUPTED', `interrupted by ${interruptedBy() ?? 'a signal'}`)
  },
  { once: true }
)

/**
 * Applies one database's plan under the safety envelope:
 * 1. a coordinator session takes the database's advisory lock (a second run waits, then gives up
 *    with CONCURRENT_RUN) and stays open to watch lock waits and re-read versions;
 * 2. under the lock, it waits for any update an earlier run left running on the database (a run
 *    that was killed or lost its lock), bounded by the lock wait, then re-inspects the database;
 *    a plan it no longer matches is PLAN_STALE;
 * 3. each extension, in order, is updated in a transaction of its own on the coordinator, or, when
 *    the first-statement rule applies to it (needsFreshSession), on a fresh session where the
 *    ALTER is the first statement; lock timeouts are retried with backoff; a failure stops its
 *    dependents;
 * 4. if the coordinator's session ends (and with it the lock), or the process is interrupted, the
 *    update in flight is cancelled and nothing further is started (CONNECTION_LOST, INTERRUPTED);
 * 5. the versions reported are re-read from the catalog, or reported unknown.
 */
export async function executeDatabase(
  connect: Connector,
  target: DatabaseTarget,
  server: ServerFacts,
  settings: ExecuteSettings,
  log: Logger,
  cache: CatalogCache = new CatalogCache()
): Promise<DatabaseReport> {
  const started = Date.now()
  const report = (outcome: DatabaseOutcome, extensions: ExtensionReport[], code?: Code, message?: string): DatabaseReport => ({
    name: target.name,
    outcome,
    durationMs: Date.now() - started,
    extensions,
    ...(code ? { code, message } : {})
  })
  const lockWaitMs = settings.lockTimeoutMs * Math.max(1, settings.maxRetries)
  const guard = new UpdateGuard(connect, target.name)
  let coordinator: pg.Client | undefined
  try {
    const early = guard.reason()
    if (early) throw new CodedError(early.code, `${early.message}; nothing was started on ${target.name}`)
    coordinator = await connect({
      database: target.name,
      purpose: 'coordinator',
      settings: { lock_timeout: `${lockWaitMs}ms`, ...clientCheck(server) }
    })
    const session = coordinator
    const inspect = (advisoryLock?: [number, number]) =>
      inspectDatabase(
        session,
        { targets: target.request.extensions.map((e) => e.name), longTransactionMs: settings.longTransactionMs, depth: 'apply', cache, advisoryLock },
        false
      )
    let inspection = await guard
      .run(session, () => inspect(advisoryKeys(target.name)))
      .catch((error: unknown) => (!guard.reason() && classify(error).sqlstate === '55P03' ? concurrentRun(session, target.name, lockWaitMs) : Promise.reject(error)))
    guard.watch(session)
    if (await awaitEarlierUpdates(session, target.name, lockWaitMs, guard, log)) inspection = await inspect()
    const facts = inspection.database
    if (target.planned) assertStillPlanned(facts, server, target.planned)
    const fresh = planDatabase(server, facts, target.request, { lockConflicts: 'warn' })
    const refusals = fresh.findings.filter((f) => !f.warning)
    if (refusals.length > 0) {
      throw new CodedError(refusals[0].code, refusals.map((f) => f.message).join('; '))
    }
    if (target.planned) assertAgreesWithReplan(target.planned, planDatabase(server, facts, replanRequest(target.planned, target.request), { lockConflicts: 'warn' }).plan)
    const run: Run = { connect, coordinator: session, database: target.name, server, settings, log, guard, request: target.request }
    const extensions = await applyAll(run, fresh.plan.extensions)
    const stop = guard.reason()
    if (stop && guard.affected) {
      const cut = stop.code === 'CONNECTION_LOST' ? 'its update in flight was cancelled and nothing further was started' : 'no further update was started'
      return report('failed', extensions, stop.code, `${stop.message}; ${cut}`)
    }
    const failed = extensions.find((e) => e.outcome === 'failed')
    const changed = extensions.some((e) => e.outcome === 'updated' || e.outcome === 'installed')
    if (failed) return report('failed', extensions, failed.code, `${failed.name}: ${failed.message}`)
    return report(changed ? 'updated' : 'current', extensions)
  } catch (error) {
    const stop = guard.reason()
    const coded =
      error instanceof CodedError ? error : stop ? new CodedError(stop.code, `${stop.message}: ${describePgError(error)}`) : new CodedError(classify(error).code, describePgError(error))
    return report('failed', [], coded.code, coded.message)
  } finally {
    guard.dispose()
    // Ending the session releases its advisory lock.
    await closeQuietly(coordinator)
  }
}

/**
 * The lock says no other run is active, but a run that was killed, or lost its coordinator, may
 * have left an ALTER running that the server has not aborted yet: wait for it (bounded by the lock
 * wait) rather than collide with it. Returns whether there was one.
 */
async function awaitEarlierUpdates(coordinator: pg.Client, database: string, waitMs: number, guard: UpdateGuard, log: Logger): Promise<boolean> {
  const deadline = Date.now() + waitMs
  let waited = false
  for (;;) {
    const live = await coordinator.query<SessionInfo>(
      `SELECT pid, usename AS user, application_name AS application, state,
              (extract(epoch FROM now() - coalesce(xact_start, query_start)) * 1000)::bigint AS "ageMs", left(query, 500) AS query
       FROM pg_stat_activity
       WHERE datname = current_database() AND application_name = $1 AND state <> 'idle' AND pid <> pg_backend_pid()`,
      [`${APPLICATION_NAME}/${UPDATE_PURPOSE}`]
    )
    if (live.rows.length === 0) return waited
    const who = live.rows.map((s) => `pid ${s.pid} (${s.user ?? '?'}, running ${formatDuration(Number(s.ageMs))}: ${s.query ?? ''})`).join(', ')
    if (Date.now() >= deadline) {
      throw new CodedError('CONCURRENT_RUN', `an update by an earlier run is still running on ${database}: ${who}; waited ${formatDuration(waitMs)}`)
    }
    if (!waited) log.info(`waiting up to ${formatDuration(waitMs)} for an update an earlier run left running on ${database}: ${who}`)
    waited = true
    await guard.sleep(Math.min(200, Math.max(0, deadline - Date.now())), defaultSleep)
    const stop = guard.reason()
    if (stop) throw new CodedError(stop.code, `${stop.message} while waiting for ${who}`)
  }
}

/** Another run holds the database's advisory lock: say who, from the coordinator. */
async function concurrentRun(coordinator: pg.Client, database: string, waitMs: number): Promise<never> {
  const [key1, key2] = advisoryKeys(database)
  const holders = await coordinator
    .query<{ pid: number; application_name: string | null; usename: string | null }>(
      `SELECT a.pid, a.application_name, a.usename FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid AND l.objsubid = 2
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [key1, key2]
    )
    .then((r) => r.rows)
    .catch(() => [])
  const by = holders.map((h) => `pid ${h.pid} (${h.usename ?? '?'}, ${h.application_name || 'no application_name'})`).join(', ')
  throw new CodedError('CONCURRENT_RUN', `another run holds the upgrade lock on ${database}${by ? `: ${by}` : ''}; waited ${formatDuration(waitMs)}`)
}

function assertStillPlanned(facts: DatabaseFacts, server: ServerFacts, planned: DatabasePlan): void {
  const problems = checkProgress(facts, planned)
  const names = planned.extensions.map((e) => e.name)
  if (fingerprintDatabase(facts, server, names) !== planned.fingerprint) {
    const inPlan = new Set(names)
    const now = Object.values(facts.installed)
      .filter((e) => !inPlan.has(e.name))
      .map((e) => `${e.name}@${e.version}`)
    const before = new Set(planned.unplanned)
    const after = new Set(now)
    const added = now.filter((e) => !before.has(e))
    const gone = planned.unplanned.filter((e) => !after.has(e))
    if (added.length > 0) problems.push(`now installed: ${added.join(', ')}`)
    if (gone.length > 0) problems.push(`no longer installed as planned: ${gone.join(', ')}`)
    if (problems.length === 0) problems.push('the versions the server ships for the planned extensions changed')
  }
  if (problems.length > 0) {
    throw new CodedError('PLAN_STALE', `${facts.name} changed since the plan was made (${problems.join('; ')}); run dry-run again`)
  }
}

/** Everything one database's updates share. */
interface Run {
  connect: Connector
  coordinator: pg.Client
  database: string
  server: ServerFacts
  settings: ExecuteSettings
  log: Logger
  guard: UpdateGuard
  request: PlanRequest
}

async function applyAll(run: Run, entries: PlannedExtension[]): Promise<ExtensionReport[]> {
  const reports: ExtensionReport[] = []
  const failed = new Set<string>()
  for (const entry of entries) {
    if (!isChange(entry)) {
      reports.push(blank(entry, 'already_current'))
      continue
    }
    const stop = run.guard.reason()
    if (stop) {
      run.guard.affected = true
      reports.push({ ...blank(entry, 'skipped'), message: `not attempted: ${stop.message}` })
      continue
    }
    const missing = entry.requires.filter((r) => failed.has(r))
    if (missing.length > 0) {
      failed.add(entry.name)
      reports.push({ ...blank(entry, 'skipped'), message: `not attempted: it requires ${missing.join(', ')}, which failed` })
      continue
    }
    const result = await applyOne(run, entry)
    if (result.outcome === 'failed') failed.add(entry.name)
    reports.push(result)
  }
  const versions = await rereadVersions(run)
  for (const r of reports) {
    if (typeof versions === 'string') {
      r.finalVersion = null
      r.finalVersionUnknown = versions
    } else {
      r.finalVersion = versions[r.name] ?? null
    }
  }
  return reports
}

/**
 * The catalog's versions now: from the coordinator, or from a fresh session when the coordinator
 * is gone; the reason when neither can be had (the report then says unknown, never assumes).
 */
async function rereadVersions(run: Run): Promise<Record<string, string> | string> {
  try {
    return await readVersions(run.coordinator)
  } catch {
    try {
      return await withSession(run.connect, { database: run.database, purpose: 'reread' }, readVersions)
    } catch (error) {
      return `the catalog could not be re-read: ${describePgError(error)}`
    }
  }
}

function blank(entry: PlannedExtension, outcome: ExtensionOutcome): ExtensionReport {
  return { name: entry.name, from: entry.from, to: entry.to, walked: entry.from ? [entry.from] : [], attempts: 0, durationMs: 0, outcome, finalVersion: entry.from, blockers: [] }
}

/** One extension: the whole path in one statement, or hop by hop when staged. */
async function applyOne(run: Run, entry: PlannedExtension): Promise<ExtensionReport> {
  const { log } = run
  const started = Date.now()
  const steps = entry.staged ? entry.path.slice(1) : [entry.to as string]
  const report: ExtensionReport = { ...blank(entry, 'failed'), outcome: 'failed' }
  const arrow = `${entry.from ?? '(new)'} → ${entry.to}`
  log.info(`${entry.name} ${arrow}${entry.staged ? ` in ${steps.length} staged hops` : ''} (path ${entry.path.join(' → ')})`)
  let current = entry.from
  for (const step of steps) {
    const hop = { from: current ?? '(new)', to: step }
    const attempt = await runWithRetries(run, entry, step, report)
    if (attempt.ok) {
      // One ALTER walks every hop of the path inside its transaction.
      const start = current === null ? 0 : entry.path.indexOf(current) + 1
      report.walked.push(...entry.path.slice(start, entry.path.indexOf(step) + 1))
      current = step
      continue
    }
    if (report.attempts === 0) {
      // Stopped before its first statement (the lock was lost, or the run interrupted).
      report.outcome = 'skipped'
      report.message = attempt.message
      return report
    }
    report.code = attempt.code
    report.sqlstate = attempt.sqlstate
    report.message = attempt.message
    report.failedHop = entry.staged ? hop : scriptHop(attempt.where, entry)
    report.durationMs = Date.now() - started
    log.warn(`${entry.name}: ${attempt.code}: ${attempt.message}`)
    return report
  }
  report.outcome = entry.action === 'install' ? 'installed' : 'updated'
  report.durationMs = Date.now() - started
  log.info(`${entry.name} ${arrow}: ${report.outcome} in ${formatDuration(report.durationMs)}${report.attempts > 1 ? ` after ${report.attempts} attempts` : ''}`)
  return report
}

/** PostgreSQL 16+ names the script in the error context; older servers cannot tell the hop. */
function scriptHop(where: string | undefined, entry: PlannedExtension): ExtensionReport['failedHop'] {
  const match = where ? new RegExp(`extension script file "${escapeRegExp(entry.name)}--(.+?)--(.+?)\\.sql"`).exec(where) : null
  return match ? { from: match[1], to: match[2] } : undefined
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

type AttemptResult = { ok: true } | { ok: false; code: Code; sqlstate?: string; message: string; where?: string }

/**
 * The coordinator still holds the advisory lock: checked before each update is started, so that an
 * update never starts unlocked (one that is running when the lock goes is cancelled by the guard).
 */
async function assertLocked(run: Run): Promise<void> {
  const [key1, key2] = advisoryKeys(run.database)
  const held = await run.coordinator
    .query(
      `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
         AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 2`,
      [key1, key2]
    )
    .then((r) => r.rows.length > 0)
    .catch(() => false)
  if (!held) run.guard.trip('CONNECTION_LOST', `the coordinator session holding the upgrade lock on ${run.database} was lost`)
}

/** The session an attempt runs on: a fresh one (first-statement rule) or the coordinator. */
interface UpdateSession {
  client: pg.Client
  statement: string
  /** A session from which to watch the update's lock waits, opened at most once, when needed. */
  observer: () => Promise<pg.Client>
  close: () => Promise<void>
}

async function openUpdateSession(run: Run, entry: PlannedExtension, version: string): Promise<UpdateSession> {
  const { connect, coordinator, database, settings, server } = run
  if (needsFreshSession(entry.name, run.request)) {
    const client = await connect({ database, purpose: UPDATE_PURPOSE, settings: updateSessionSettings(settings, server) })
    return { client, statement: updateStatement(client, entry, version), observer: async () => coordinator, close: () => closeQuietly(client) }
  }
  // The coordinator is busy with the update: a lock wait is watched from a session of its own,
  // opened only if the update is still running at the first sample.
  let watcher: Promise<pg.Client> | undefined
  return {
    client: coordinator,
    statement: coordinatorUpdate(coordinator, entry, version, settings),
    observer: () => (watcher ??= connect({ database, purpose: 'watch' })),
    close: async () => {
      if (watcher) await closeQuietly(await watcher.catch(() => undefined))
    }
  }
}

async function runWithRetries(run: Run, entry: PlannedExtension, version: string, report: ExtensionReport): Promise<AttemptResult> {
  const { coordinator, database, settings, log, guard } = run
  const sleep = settings.sleep ?? defaultSleep
  const onCoordinator = !needsFreshSession(entry.name, run.request)
  for (let attempt = 1; ; attempt++) {
    // On the coordinator the update cannot run without the lock: its session is the lock's holder.
    if (!onCoordinator) await assertLocked(run)
    const early = guard.reason()
    if (early) {
      guard.affected = true
      return { ok: false, code: early.code, message: `not attempted: ${early.message}` }
    }
    report.attempts++
    let session: UpdateSession
    try {
      session = await openUpdateSession(run, entry, version)
    } catch (error) {
      return { ok: false, code: 'CONNECTION_FAILED', message: describePgError(error) }
    }
    const started = Date.now()
    const watch = watchLockWaits(session.observer, backendPid(session.client), settings.lockTimeoutMs, report.blockers)
    const heartbeat = setInterval(() => log.info(`${entry.name}: still updating to ${version}, ${formatDuration(Date.now() - started)} elapsed`), 30_000)
    try {
      await guard.run(session.client, () => session.client.query(session.statement))
      return { ok: true }
    } catch (error) {
      const verdict = classify(error)
      const where = (error as { where?: string }).where
      // A failed statement leaves the coordinator's transaction aborted; the session-level lock stays.
      if (onCoordinator && verdict.disposition !== 'reconnect') await coordinator.query('ROLLBACK').catch(() => undefined)
      if (onCoordinator && verdict.disposition === 'reconnect') {
        // The coordinator died under its update: the lock went with it, so nothing further starts.
        const now = await rereadVersions(run)
        guard.trip('CONNECTION_LOST', `the coordinator session holding the upgrade lock on ${database} was lost`)
        if (typeof now !== 'string' && now[entry.name] === version) return { ok: true }
        const state = typeof now === 'string' ? now : `the catalog still says ${now[entry.name] ?? 'not installed'}`
        return { ok: false, code: verdict.code, sqlstate: verdict.sqlstate, message: `${describePgError(error)}; ${state}` }
      }
      const stop = guard.reason()
      if (stop && (verdict.sqlstate === '57014' || verdict.disposition === 'reconnect' || error instanceof CodedError)) {
        // Cancelled by the guard; it may still have committed just before the cancel arrived.
        guard.affected = true
        const now = await rereadVersions(run)
        if (typeof now !== 'string' && now[entry.name] === version) return { ok: true }
        const state = typeof now === 'string' ? now : `the catalog says ${now[entry.name] ?? 'not installed'}`
        return { ok: false, code: stop.code, sqlstate: verdict.sqlstate, message: `cancelled: ${stop.message}; ${state}` }
      }
      if (verdict.disposition === 'reconnect') {
        // The statement may have committed before the session died: look before deciding.
        const now = await rereadVersions(run)
        if (typeof now !== 'string' && now[entry.name] === version) return { ok: true }
        const state = typeof now === 'string' ? now : `the catalog still says ${now[entry.name] ?? 'not installed'}`
        return { ok: false, code: verdict.code, sqlstate: verdict.sqlstate, message: `${describePgError(error)}; ${state}` }
      }
      if (verdict.disposition === 'retry' && attempt <= settings.maxRetries) {
        const delay = backoff(attempt, settings)
        log.info(`${entry.name}: ${verdict.meaning} (attempt ${attempt} of ${settings.maxRetries + 1}); retrying in ${formatDuration(delay)}`)
        await guard.sleep(delay, sleep)
        continue
      }
      const exhausted = verdict.disposition === 'retry' ? ` after ${attempt} attempt(s)` : ''
      const blockers = report.blockers.length > 0 ? `; blocked by ${report.blockers.map((b) => `pid ${b.pid} (${b.user ?? '?'}, ${b.application || 'no application_name'}: ${b.query ?? ''})`).join(', ')}` : ''
      return { ok: false, code: verdict.code, sqlstate: verdict.sqlstate, message: `${describePgError(error)}${exhausted}${blockers}`, where }
    } finally {
      clearInterval(heartbeat)
      await watch.stop()
      await session.close()
    }
  }
}

export function backoff(attempt: number, settings: Pick<ExecuteSettings, 'backoffBaseMs' | 'backoffMaxMs'>, random = Math.random): number {
  const base = settings.backoffBaseMs ?? 500
  const cap = settings.backoffMaxMs ?? 30_000
  const exponential = Math.min(cap, base * 2 ** (attempt - 1))
  return Math.round(exponential * (0.5 + random()))
}

/**
 * While the update waits, asks who blocks it (pg_blocking_pids), from the coordinator or, when the
 * update runs on the coordinator, from a watching session; so the report can name the sessions
 * even after lock_timeout fired. Costs nothing when the update is quick.
 */
function watchLockWaits(observer: () => Promise<pg.Client>, pid: number, lockTimeoutMs: number, seen: SessionInfo[]): { stop: () => Promise<void> } {
  let pending: Promise<unknown> = Promise.resolve()
  const sample = () => {
    pending = observer()
      .then((client) =>
        client.query<SessionInfo>(
        `SELECT pid, usename AS user, application_name AS application, state,
                (extract(epoch FROM now() - coalesce(xact_start, query_start)) * 1000)::bigint AS "ageMs", left(query, 500) AS query
         FROM pg_stat_activity WHERE pid = ANY (pg_blocking_pids($1))`,
          [pid]
        )
      )
      .then((result) => {
        for (const row of result.rows) {
          const session = { ...row, ageMs: Number(row.ageMs) }
          const known = seen.findIndex((s) => s.pid === row.pid)
          if (known >= 0) seen[known] = session
          else seen.push(session)
        }
      })
      .catch(() => undefined)
  }
  const timer = setInterval(sample, Math.min(200, Math.max(20, lockTimeoutMs / 4)))
  return {
    stop: async () => {
      clearInterval(timer)
      await pending
    }
  }
}

/** The catalog version as the report may state it: never "not installed" when it could not be read. */
export const catalogVersion = (e: Pick<ExtensionReport, 'finalVersion' | 'finalVersionUnknown'>): string =>
  e.finalVersionUnknown ? 'unknown (not re-read)' : (e.finalVersion ?? 'not installed')

/** Turns a database report into findings for annotations. */
export function reportFindings(report: DatabaseReport): Finding[] {
  const findings: Finding[] = report.extensions
    .filter((e) => e.outcome === 'failed')
    .map((e) => ({ code: e.code ?? 'UPGRADE_SCRIPT_FAILED', database: report.name, extension: e.name, message: e.message ?? 'failed', ...(e.blockers.length > 0 ? { sessions: e.blockers } : {}) }))
  if (report.outcome === 'failed' && findings.length === 0) {
    findings.push({ code: report.code ?? 'UPGRADE_SCRIPT_FAILED', database: report.name, message: report.message ?? 'failed' })
  }
  return findings
}
