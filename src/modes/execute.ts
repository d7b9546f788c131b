import { CatalogCache, inspectServer, type ServerFacts } from '../core/catalog.js'
import { redact, withSession } from '../core/connection.js'
import { formatDuration } from '../core/duration.js'
import { CodedError } from '../core/errors.js'
import { interruptedBy, interruption } from '../core/interrupt.js'
import { executeDatabase, reportFindings, type DatabaseReport, type ExecuteSettings } from '../core/executor.js'
import type { Logger } from '../core/logger.js'
import type { DatabasePlan, Plan, PlanRequest } from '../core/plan.js'
import { loadPlan } from '../core/plan-input.js'
import { verifyDatabase } from '../core/verifier.js'
import type { Inputs } from '../inputs.js'
import { eachDatabase, planTargets } from './targets.js'
import type { ModeContext, ModeResult, Status } from './types.js'
import { expectationsFor, readProbes } from './verify.js'

export interface ExecuteReport {
  schemaVersion: 1
  mode: 'execute'
  status: Status
  startedAt: string
  durationMs: number
  planFingerprint: string
  /** Databases updated and verified before the others were started. */
  canary: string[]
  counts: { updated: number; current: number; failed: number; notStarted: number }
  databases: DatabaseReport[]
}

export function executeSettings(inputs: Inputs): ExecuteSettings {
  return {
    lockTimeoutMs: inputs.lockTimeout,
    statementTimeoutMs: inputs.statementTimeout,
    maxRetries: inputs.maxRetries,
    longTransactionMs: inputs.longTransactionThreshold
  }
}

/** The plan to apply: the `plan` input, or a fresh plan with every dry-run check. */
export async function planToApply(context: ModeContext): Promise<{ plan: Plan; server?: ServerFacts; cache?: CatalogCache }> {
  const { inputs } = context
  if (inputs.plan && inputs.extensions.length > 0) {
    throw new CodedError('INVALID_INPUT', 'inputs "plan" and "extensions": give one or the other; a plan already names its extensions')
  }
  if (inputs.plan) {
    const plan = loadPlan(inputs.plan, context.env)
    if (plan.status === 'dry_run_blocked') throw new CodedError('INVALID_INPUT', `input "plan": ${blockedMessage(plan)}; execute applies only a plan the dry-run approved`)
    return { plan }
  }
  return planTargets(context, { lockConflicts: 'warn' })
}

/** What each database must reach: the planned versions, with the plan's options. */
export function requestFor(database: DatabasePlan, request: PlanRequest): PlanRequest {
  return { ...request, extensions: database.extensions.filter((e) => e.to !== null).map((e) => ({ name: e.name, version: e.to as string })) }
}

const notStarted = (name: string): DatabaseReport => {
  const signal = interruptedBy()
  return { name, outcome: 'not_started', durationMs: 0, extensions: [], ...(signal ? { code: 'INTERRUPTED', message: `not started: interrupted by ${signal}` } : {}) }
}

/**
 * execute: apply an approved plan. Each database is re-inspected under its advisory lock and
 * refused if it moved off the plan (PLAN_STALE); each update runs in its own transaction on the
 * session holding the lock, or on a fresh session where it is the first statement when the
 * first-statement rule applies, with lock_timeout retries; a re-run continues where a run stopped.
 * Fleets: `canary` databases are updated and verified first; then the rest, `concurrency` at a
 * time; after a failure `on-failure: stop` starts nothing new, `continue` goes on (`max-failures`).
 */
export async function execute(context: ModeContext): Promise<ModeResult> {
  // The canary's probes are refused before anything connects, not after the canary was updated.
  if (context.inputs.canary > 0) readProbes(context.inputs.verifySql, context.env)
  const { plan, server, cache } = await planToApply(context)
  if (plan.status === 'dry_run_blocked') return blockedPlanResult(context, plan)
  const report = await applyPlan(context, plan, server, cache)
  return executeResult(context, plan, report)
}

export const blockedMessage = (plan: Plan) =>
  `the plan is blocked (${plan.blockers.length} blocker(s)); nothing was changed${plan.blockers[0] ? `. ${plan.blockers[0].code}: ${plan.blockers[0].message}` : ''}`

function blockedPlanResult(context: ModeContext, plan: Plan): ModeResult {
  return {
    mode: 'execute',
    status: 'failed',
    changed: false,
    plan,
    errors: plan.blockers,
    warnings: plan.warnings,
    error: blockedMessage(plan),
    target: redact(context.target)
  }
}

export function executeResult(context: ModeContext, plan: Plan, report: ExecuteReport): ModeResult {
  const errors = report.databases.flatMap(reportFindings)
  const { failed, notStarted } = report.counts
  return {
    mode: 'execute',
    status: report.status,
    changed: executeChanged(report),
    plan,
    report,
    errors,
    warnings: [],
    error: errors.length > 0 ? `${failed} database(s) failed, ${notStarted} not started; first: ${errors[0].code}: ${errors[0].message}` : undefined,
    target: redact(context.target)
  }
}

export const executeChanged = (report: ExecuteReport) => report.databases.some((r) => r.extensions.some((e) => e.outcome === 'updated' || e.outcome === 'installed'))

/** Applies an approved plan to its databases: canaries first, then the rest through the pool. */
export async function applyPlan(context: ModeContext, plan: Plan, planned?: ServerFacts, cache = new CatalogCache()): Promise<ExecuteReport> {
  const { inputs, connect, log } = context
  const startedAt = new Date()
  const server = planned ?? (await withSession(connect, { database: plan.databases[0]?.name, purpose: 'inspect' }, inspectServer))
  const settings = executeSettings(inputs)
  // The first-statement rule applies to what the plan's dry-run listed and to what this step lists.
  const firstStatement = [...new Set([...(plan.request.firstStatementExtensions ?? []), ...inputs.firstStatementExtensions])]
  const request: PlanRequest = { ...plan.request, ...(firstStatement.length > 0 ? { firstStatementExtensions: firstStatement } : {}) }
  const names = plan.databases.map((d) => d.name)
  const byName = new Map(plan.databases.map((d) => [d.name, d]))
  const probes = inputs.canary > 0 ? readProbes(inputs.verifySql, context.env) : []
  let failures = 0
  let finished = 0

  const runOne = async (name: string, dbLog: Logger, verifyAfter: boolean): Promise<DatabaseReport> => {
    const database = byName.get(name)!
    const report = await executeDatabase(connect, { name, planned: database, request: requestFor(database, request) }, server, settings, dbLog, cache)
    if (verifyAfter && report.outcome !== 'failed' && !interruption.aborted) {
      const proof = await verifyDatabase(connect, name, { expectations: expectationsFor([], plan, name), probes, statementTimeoutMs: inputs.statementTimeout })
      const broken = proof.checks.filter((c) => !c.ok).map((c) => `${c.check}${c.extension ? ` ${c.extension}` : ''}: ${c.message}`)
      report.canary = { verified: broken.length === 0, failures: broken }
      if (broken.length > 0) Object.assign(report, { outcome: 'failed', code: 'VERIFY_FAILED', message: `canary failed verify: ${broken.join('; ')}` })
    }
    if (report.outcome === 'failed') failures++
    finished++
    if (names.length > 1) log.info(`[${finished}/${names.length}] ${name}: ${report.outcome} (${formatDuration(report.durationMs)})${report.code ? ` ${report.code}` : ''}`)
    return report
  }

  // The pool itself starts nothing once the process is interrupted (runPool); those in flight stop at a known state.
  const mayStart = () => (inputs.onFailure === 'continue' ? inputs.maxFailures === undefined || failures < inputs.maxFailures : failures === 0)
  const title = (name: string) => `database ${name}`
  const canary = names.slice(0, inputs.canary)
  const canaryReports = await eachDatabase(context, canary, title, (name, dbLog) => runOne(name, dbLog, true), () => failures === 0)
  const canaryPassed = failures === 0
  if (canary.length > 0) log.info(canaryPassed ? `canary passed (${canary.join(', ')}); rolling out to the rest` : 'canary failed: the rest is not started')
  const rest = names.slice(canary.length)
  const restReports = canaryPassed ? await eachDatabase(context, rest, title, (name, dbLog) => runOne(name, dbLog, false), mayStart) : []
  const reports = [...canaryReports, ...rest.map((_, i) => restReports[i])].map((r, i) => r ?? notStarted(names[i]))

  const counts = {
    updated: reports.filter((r) => r.outcome === 'updated').length,
    current: reports.filter((r) => r.outcome === 'current').length,
    failed: reports.filter((r) => r.outcome === 'failed').length,
    notStarted: reports.filter((r) => r.outcome === 'not_started').length
  }
  return {
    schemaVersion: 1,
    mode: 'execute',
    status: counts.failed > 0 || counts.notStarted > 0 ? 'failed' : counts.updated > 0 ? 'success' : 'nothing_to_do',
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
    planFingerprint: plan.fingerprint,
    canary,
    counts,
    databases: reports
  }
}
