import { inspectServer } from '../core/catalog.js'
import { redact, withSession } from '../core/connection.js'
import { CodedError } from '../core/errors.js'
import { executeDatabase, reportFindings, type DatabaseReport, type ExecuteSettings } from '../core/executor.js'
import type { DatabasePlan, Plan, PlanRequest } from '../core/plan.js'
import { loadPlan } from '../core/plan-input.js'
import { makePlan } from '../core/planning.js'
import type { Inputs } from '../inputs.js'
import type { ModeContext, ModeResult, Status } from './types.js'

export interface ExecuteReport {
  schemaVersion: 1
  mode: 'execute'
  status: Status
  startedAt: string
  durationMs: number
  planFingerprint: string
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

/** The plan to apply: the `plan` input, or a fresh plan of `extensions` with every dry-run check. */
export async function planToApply(context: ModeContext): Promise<{ plan: Plan; given: boolean }> {
  const { inputs, target, connect, log } = context
  if (inputs.plan && inputs.extensions.length > 0) {
    throw new CodedError('INVALID_INPUT', 'inputs "plan" and "extensions": give one or the other; a plan already names its extensions')
  }
  if (inputs.plan) return { plan: loadPlan(inputs.plan), given: true }
  const { plan } = await makePlan(
    connect,
    {
      databases: [target.database],
      request: { extensions: inputs.extensions, allowDowngrade: inputs.allowDowngrade, installMissing: inputs.installMissing, stagedExtensions: inputs.stagedExtensions },
      longTransactionMs: inputs.longTransactionThreshold,
      planner: { lockConflicts: 'warn' }
    },
    log
  )
  return { plan, given: false }
}

/** What each database must reach: the planned versions, with the plan's options. */
export function requestFor(database: DatabasePlan, request: PlanRequest): PlanRequest {
  return { ...request, extensions: database.extensions.filter((e) => e.to !== null).map((e) => ({ name: e.name, version: e.to as string })) }
}

/**
 * execute: apply an approved plan. Each database is re-inspected under its advisory lock and
 * refused if it moved off the plan (PLAN_STALE); each update runs on a fresh session where it
 * is the first statement, with lock_timeout retries; a re-run continues where a run stopped.
 */
export async function execute(context: ModeContext): Promise<ModeResult> {
  const { target, connect, log } = context
  const startedAt = new Date()
  const { plan } = await planToApply(context)
  if (plan.status === 'dry_run_blocked') {
    return {
      mode: 'execute',
      status: 'failed',
      changed: false,
      plan,
      errors: plan.blockers,
      warnings: plan.warnings,
      error: `the plan is blocked (${plan.blockers.length} blocker(s)); nothing was changed. ${plan.blockers[0].code}: ${plan.blockers[0].message}`,
      target: redact(target)
    }
  }
  const settings = executeSettings(context.inputs)
  const server = await withSession(connect, { database: plan.databases[0]?.name, purpose: 'inspect' }, inspectServer)
  const reports: DatabaseReport[] = []
  for (const database of plan.databases) {
    const report = await log.group(`database ${database.name}`, () =>
      executeDatabase(connect, { name: database.name, planned: database, request: requestFor(database, plan.request) }, server, settings, log)
    )
    reports.push(report)
  }
  const counts = {
    updated: reports.filter((r) => r.outcome === 'updated').length,
    current: reports.filter((r) => r.outcome === 'current').length,
    failed: reports.filter((r) => r.outcome === 'failed').length,
    notStarted: reports.filter((r) => r.outcome === 'not_started').length
  }
  const status: Status = counts.failed > 0 ? 'failed' : counts.updated > 0 ? 'success' : 'nothing_to_do'
  const report: ExecuteReport = {
    schemaVersion: 1,
    mode: 'execute',
    status,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
    planFingerprint: plan.fingerprint,
    counts,
    databases: reports
  }
  const errors = reports.flatMap(reportFindings)
  return {
    mode: 'execute',
    status,
    changed: reports.some((r) => r.extensions.some((e) => e.outcome === 'updated' || e.outcome === 'installed')),
    plan,
    report,
    errors,
    warnings: [],
    error: errors.length > 0 ? `${errors[0].code}: ${errors[0].message}` : undefined,
    target: redact(target)
  }
}
