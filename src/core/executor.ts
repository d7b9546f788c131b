import type pg from 'pg'
import type { DatabaseFacts, ServerFacts, SessionInfo } from './catalog.js'
import { CatalogCache, inspectDatabase, readVersions } from './catalog.js'
import type { Code } from './codes.js'
import { backendPid, closeQuietly, type Connector } from './connection.js'
import { formatDuration } from './duration.js'
import { CodedError } from './errors.js'
import type { Logger } from './logger.js'
import { describePgError } from './pg-error.js'
import { assertAgreesWithReplan, checkProgress, fingerprintDatabase, isChange, replanRequest, type DatabasePlan, type Finding, type PlannedExtension, type PlanRequest } from './plan.js'
import { planDatabase } from './planner.js'
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
  /** The version in the catalog when the run ended (re-read, not assumed). */
  finalVersion: string | null
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

/** Session settings for the upgrading session, sent as startup options so ALTER stays statement #1. */
export function updateSessionSettings(settings: ExecuteSettings): Record<string, string | number> {
  return {
    lock_timeout: `${settings.lockTimeoutMs}ms`,
    statement_timeout: `${settings.statementTimeoutMs}ms`,
    // A parallel worker can load the old library mid-update (timescaledb#3286).
    max_parallel_workers_per_gather: 0,
    max_parallel_maintenance_workers: 0
  }
}

export function updateStatement(client: pg.Client, entry: PlannedExtension, version: string): string {
  const name = client.escapeIdentifier(entry.name)
  return entry.action === 'install'
    ? `CREATE EXTENSION ${name} VERSION ${client.escapeLiteral(version)}`
    : `ALTER EXTENSION ${name} UPDATE TO ${client.escapeLiteral(version)}`
}

/**
 * Applies one database's plan under the safety envelope:
 * 1. a coordinator session takes the database's advisory lock (a second run waits, then gives up
 *    with CONCURRENT_RUN) and stays open to watch lock waits and re-read versions;
 * 2. in the same round trip the database is re-inspected under the lock; a plan it no longer
 *    matches is PLAN_STALE;
 * 3. each extension, in order, is updated on a fresh session where the ALTER is the first
 *    statement; lock timeouts are retried with backoff; a failure stops its dependents.
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
  let coordinator: pg.Client | undefined
  try {
    coordinator = await connect({ database: target.name, purpose: 'coordinator', settings: { lock_timeout: `${lockWaitMs}ms` } })
    const inspection = await inspectDatabase(
      coordinator,
      {
        targets: target.request.extensions.map((e) => e.name),
        longTransactionMs: settings.longTransactionMs,
        depth: 'apply',
        cache,
        advisoryLock: advisoryKeys(target.name)
      },
      false
    ).catch((error: unknown) => (classify(error).sqlstate === '55P03' ? concurrentRun(coordinator!, target.name, lockWaitMs) : Promise.reject(error)))
    const facts = inspection.database
    if (target.planned) assertStillPlanned(facts, server, target.planned)
    const fresh = planDatabase(server, facts, target.request, { lockConflicts: 'warn' })
    const refusals = fresh.findings.filter((f) => !f.warning)
    if (refusals.length > 0) {
      throw new CodedError(refusals[0].code, refusals.map((f) => f.message).join('; '))
    }
    if (target.planned) assertAgreesWithReplan(target.planned, planDatabase(server, facts, replanRequest(target.planned, target.request), { lockConflicts: 'warn' }).plan)
    const extensions = await applyAll(connect, coordinator, target.name, fresh.plan.extensions, settings, log)
    const failed = extensions.find((e) => e.outcome === 'failed')
    const changed = extensions.some((e) => e.outcome === 'updated' || e.outcome === 'installed')
    if (failed) return report('failed', extensions, failed.code, `${failed.name}: ${failed.message}`)
    return report(changed ? 'updated' : 'current', extensions)
  } catch (error) {
    const coded = error instanceof CodedError ? error : new CodedError(classify(error).code, describePgError(error))
    return report('failed', [], coded.code, coded.message)
  } finally {
    // Ending the session releases its advisory lock.
    await closeQuietly(coordinator)
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

async function applyAll(
  connect: Connector,
  coordinator: pg.Client,
  database: string,
  entries: PlannedExtension[],
  settings: ExecuteSettings,
  log: Logger
): Promise<ExtensionReport[]> {
  const reports: ExtensionReport[] = []
  const failed = new Set<string>()
  for (const entry of entries) {
    if (!isChange(entry)) {
      reports.push(blank(entry, 'already_current'))
      continue
    }
    const missing = entry.requires.filter((r) => failed.has(r))
    if (missing.length > 0) {
      failed.add(entry.name)
      reports.push({ ...blank(entry, 'skipped'), message: `not attempted: it requires ${missing.join(', ')}, which failed` })
      continue
    }
    const result = await applyOne(connect, coordinator, database, entry, settings, log)
    if (result.outcome === 'failed') failed.add(entry.name)
    reports.push(result)
  }
  const versions = await readVersions(coordinator).catch(() => undefined)
  for (const r of reports) r.finalVersion = versions ? (versions[r.name] ?? null) : r.finalVersion
  return reports
}

function blank(entry: PlannedExtension, outcome: ExtensionOutcome): ExtensionReport {
  return { name: entry.name, from: entry.from, to: entry.to, walked: entry.from ? [entry.from] : [], attempts: 0, durationMs: 0, outcome, finalVersion: entry.from, blockers: [] }
}

/** One extension: the whole path in one statement, or hop by hop when staged. */
async function applyOne(
  connect: Connector,
  coordinator: pg.Client,
  database: string,
  entry: PlannedExtension,
  settings: ExecuteSettings,
  log: Logger
): Promise<ExtensionReport> {
  const started = Date.now()
  const steps = entry.staged ? entry.path.slice(1) : [entry.to as string]
  const report: ExtensionReport = { ...blank(entry, 'failed'), outcome: 'failed' }
  const arrow = `${entry.from ?? '(new)'} → ${entry.to}`
  log.info(`${entry.name} ${arrow}${entry.staged ? ` in ${steps.length} staged hops` : ''} (path ${entry.path.join(' → ')})`)
  let current = entry.from
  for (const step of steps) {
    const hop = { from: current ?? '(new)', to: step }
    const attempt = await runWithRetries(connect, coordinator, database, entry, step, settings, log, report)
    if (attempt.ok) {
      // One ALTER walks every hop of the path inside its transaction.
      const start = current === null ? 0 : entry.path.indexOf(current) + 1
      report.walked.push(...entry.path.slice(start, entry.path.indexOf(step) + 1))
      current = step
      continue
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

async function runWithRetries(
  connect: Connector,
  coordinator: pg.Client,
  database: string,
  entry: PlannedExtension,
  version: string,
  settings: ExecuteSettings,
  log: Logger,
  report: ExtensionReport
): Promise<AttemptResult> {
  const sleep = settings.sleep ?? defaultSleep
  for (let attempt = 1; ; attempt++) {
    report.attempts++
    let session: pg.Client
    try {
      session = await connect({ database, purpose: 'update', settings: updateSessionSettings(settings) })
    } catch (error) {
      return { ok: false, code: 'CONNECTION_FAILED', message: describePgError(error) }
    }
    const started = Date.now()
    const watch = watchLockWaits(coordinator, backendPid(session), settings.lockTimeoutMs, report.blockers)
    const heartbeat = setInterval(() => log.info(`${entry.name}: still updating to ${version}, ${formatDuration(Date.now() - started)} elapsed`), 30_000)
    try {
      await session.query(updateStatement(session, entry, version))
      return { ok: true }
    } catch (error) {
      const verdict = classify(error)
      const where = (error as { where?: string }).where
      if (verdict.disposition === 'reconnect') {
        // The statement may have committed before the session died: look before deciding.
        const now = await readVersions(coordinator).catch(() => undefined)
        if (now?.[entry.name] === version) return { ok: true }
        const state = now ? `the catalog still says ${now[entry.name] ?? 'not installed'}` : 'the version could not be re-read'
        return { ok: false, code: verdict.code, sqlstate: verdict.sqlstate, message: `${describePgError(error)}; ${state}` }
      }
      if (verdict.disposition === 'retry' && attempt <= settings.maxRetries) {
        const delay = backoff(attempt, settings)
        log.info(`${entry.name}: ${verdict.meaning} (attempt ${attempt} of ${settings.maxRetries + 1}); retrying in ${formatDuration(delay)}`)
        await sleep(delay)
        continue
      }
      const exhausted = verdict.disposition === 'retry' ? ` after ${attempt} attempt(s)` : ''
      const blockers = report.blockers.length > 0 ? `; blocked by ${report.blockers.map((b) => `pid ${b.pid} (${b.user ?? '?'}, ${b.application || 'no application_name'}: ${b.query ?? ''})`).join(', ')}` : ''
      return { ok: false, code: verdict.code, sqlstate: verdict.sqlstate, message: `${describePgError(error)}${exhausted}${blockers}`, where }
    } finally {
      clearInterval(heartbeat)
      await watch.stop()
      await closeQuietly(session)
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
 * While the update waits, asks the coordinator who blocks it (pg_blocking_pids), so the report
 * can name the sessions even after lock_timeout fired. Costs nothing when the update is quick.
 */
function watchLockWaits(coordinator: pg.Client, pid: number, lockTimeoutMs: number, seen: SessionInfo[]): { stop: () => Promise<void> } {
  let pending: Promise<unknown> = Promise.resolve()
  const sample = () => {
    pending = coordinator
      .query<SessionInfo>(
        `SELECT pid, usename AS user, application_name AS application, state,
                (extract(epoch FROM now() - coalesce(xact_start, query_start)) * 1000)::bigint AS "ageMs", left(query, 500) AS query
         FROM pg_stat_activity WHERE pid = ANY (pg_blocking_pids($1))`,
        [pid]
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
