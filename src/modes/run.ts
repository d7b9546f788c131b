import { changesOfPlan, changesOfReport, mergeChanges } from '../core/changes.js'
import { redact } from '../core/connection.js'
import { catalogVersion } from '../core/executor.js'
import { interruptedBy, throwIfInterrupted } from '../core/interrupt.js'
import { CodedError } from '../core/errors.js'
import type { Finding, Plan } from '../core/plan.js'
import { rollBackToPrior } from '../core/rollback/downgrade.js'
import { rollBack } from '../core/rollback/index.js'
import { takeSnapshot } from '../core/snapshot/index.js'
import { applyPlan, blockedMessage, executeChanged, executeResult, executeSettings, type ExecuteReport } from './execute.js'
import { rollbackRequest, rollbackResult, type RollbackReport } from './rollback.js'
import { snapshotRequest, snapshotResult, type SnapshotReport } from './snapshot.js'
import { planTargets } from './targets.js'
import type { ModeContext, ModeResult, Status } from './types.js'
import { readProbes, verifyResult, verifyTargets, type VerifyReport } from './verify.js'

export type StageName = 'dry-run' | 'snapshot' | 'execute' | 'verify' | 'rollback'

export interface Stage {
  name: StageName
  /** The stage's own status, or `skipped` / `not_reached`. */
  status: Status | 'skipped' | 'not_reached'
  durationMs: number
  detail: string
}

export interface RunReport {
  schemaVersion: 1
  mode: 'run'
  status: Status
  stages: Stage[]
  /** What state the databases are in, and what to do, when the run did not end well. */
  guidance?: string[]
  snapshot?: SnapshotReport
  execute?: ExecuteReport
  verify?: VerifyReport
  rollback?: RollbackReport
}

const ORDER: StageName[] = ['dry-run', 'snapshot', 'execute', 'verify', 'rollback']

/**
 * run: the whole envelope in one step — dry-run, snapshot (snapshot-strategy, `none` allowed),
 * execute, verify — and, when execute or verify fails, an automatic rollback to the snapshot
 * with rollback-strategy (auto never picks PITR without confirm-data-loss). A run that had to
 * roll back still fails the step: the upgrade did not happen.
 */
export async function run(context: ModeContext): Promise<ModeResult> {
  const { inputs, target, connect, log, env } = context
  if (inputs.rollbackStrategy === 'pitr' && !inputs.pgdata.trim()) {
    throw new CodedError('INVALID_INPUT', 'input "pgdata": rollback-strategy pitr needs the data directory of the server')
  }
  // Probes are refused before anything connects, not after the upgrade they were to verify.
  readProbes(inputs.verifySql, env)
  const stages: Stage[] = []
  const report: RunReport = { schemaVersion: 1, mode: 'run', status: 'failed', stages }
  const errors: Finding[] = []
  const warnings: Finding[] = []
  let changed = false
  let plan: Plan | undefined
  const outputs: ModeResult['outputs'] = {}

  const stage = async <T>(name: StageName, work: () => Promise<{ value: T; status: Stage['status']; detail: string }>): Promise<T> => {
    const started = Date.now()
    const { value, status, detail } = await log.group(`${name}`, work)
    stages.push({ name, status, durationMs: Date.now() - started, detail })
    return value
  }
  const finish = (status: Status, error?: string, guidance?: string[]): ModeResult => {
    for (const name of ORDER) if (!stages.some((s) => s.name === name)) stages.push({ name, status: 'not_reached', durationMs: 0, detail: '' })
    stages.sort((a, b) => ORDER.indexOf(a.name) - ORDER.indexOf(b.name))
    report.status = status
    if (guidance) report.guidance = guidance
    // A run that rolled back restored the baseline, but the upgrade did not happen: the step fails.
    const fails = status === 'rolled_back' ? true : undefined
    return { mode: 'run', status, changed, plan, report, errors, warnings, error, target: redact(target), outputs, fails }
  }

  plan = await stage('dry-run', async () => {
    const { plan } = await planTargets(context, { lockConflicts: 'warn' })
    const changes = plan.databases.flatMap((d) => d.extensions).filter((e) => e.action === 'update' || e.action === 'install').length
    return { value: plan, status: plan.status, detail: `${changes} change(s) in ${plan.databases.length} database(s)` }
  })
  // A plan cut short by an interruption covers only some databases: nothing may act on it.
  throwIfInterrupted('planning')
  warnings.push(...plan.warnings)
  if (plan.status === 'dry_run_blocked') {
    errors.push(...plan.blockers)
    return finish('dry_run_blocked', blockedMessage(plan))
  }
  if (plan.status === 'nothing_to_do') return finish('nothing_to_do')
  const approved = plan

  let manifestPath: string | undefined
  const planned = changesOfPlan(approved)
  if (inputs.snapshotStrategy === 'none') {
    stages.push({ name: 'snapshot', status: 'skipped', durationMs: 0, detail: 'snapshot-strategy none: the way back is downgrade scripts, where every changed extension has one' })
  } else {
    const taken = await stage('snapshot', async () => {
      const request = snapshotRequest(inputs, planned.map((c) => c.database), env)
      request.plan = { fingerprint: approved.fingerprint, databases: request.databases }
      const outcome = await takeSnapshot(request, { connect, target, log })
      const result = snapshotResult(outcome, redact(target))
      return { value: result, status: result.status, detail: outcome.ok ? `${outcome.strategy}: ${outcome.reason}` : (result.error ?? 'failed') }
    })
    report.snapshot = taken.report as SnapshotReport
    warnings.push(...taken.warnings)
    Object.assign(outputs, taken.outputs)
    if (taken.status !== 'snapshot_created') {
      errors.push(...taken.errors)
      return finish('failed', `the snapshot failed, so nothing was upgraded. ${taken.error ?? ''}`.trim())
    }
    manifestPath = taken.outputs?.snapshot
  }

  const executed = await stage('execute', async () => {
    const value = await applyPlan(context, approved)
    return { value, status: value.status, detail: `${value.counts.updated} updated, ${value.counts.current} already current, ${value.counts.failed} failed, ${value.counts.notStarted} not started` }
  })
  report.execute = executed
  changed = executeChanged(executed)
  const executeFailure = executed.status === 'failed' ? executeResult(context, approved, executed) : undefined
  const signal = interruptedBy()
  if (signal) {
    // The runner kills the process seconds after its signal: no verify and no rollback can finish in time.
    for (const name of ['verify', 'rollback'] as const) stages.push({ name, status: 'not_reached', durationMs: 0, detail: `interrupted by ${signal}` })
    if (executeFailure) errors.push(...executeFailure.errors)
    return finish('failed', `interrupted by ${signal} after execute; nothing was verified or rolled back`, stateGuidance(executed, undefined))
  }

  let verifyFailure: ModeResult | undefined
  if (executeFailure) {
    stages.push({ name: 'verify', status: 'skipped', durationMs: 0, detail: 'execute failed' })
  } else {
    const verified = await stage('verify', async () => {
      const value = await verifyTargets(context, approved)
      return { value, status: value.status, detail: `${value.counts.passed} passed, ${value.counts.failed} failed, ${value.counts.skipped} skipped` }
    })
    report.verify = verified
    if (verified.status !== 'verified') verifyFailure = verifyResult(context, verified)
  }

  const failure = executeFailure ?? verifyFailure
  if (!failure) {
    stages.push({ name: 'rollback', status: 'skipped', durationMs: 0, detail: 'not needed' })
    return finish(changed ? 'success' : 'nothing_to_do')
  }
  errors.push(...failure.errors)
  const what = executeFailure ? 'execute failed' : 'verify failed'

  const changes = mergeChanges(planned, changesOfReport(executed))
  const snapshotPath = manifestPath
  const rolledBack = await stage('rollback', async () => {
    const outcome = snapshotPath
      ? await rollBack(
          { ...rollbackRequest({ ...inputs, snapshot: snapshotPath, restorePoint: '', plan: '', report: '' }, env), changes, planFingerprint: approved.fingerprint },
          { connect, target, log }
        )
      : await rollBackToPrior(changes, executeSettings(inputs), { connect, target, log })
    const result = rollbackResult(outcome, redact(target))
    return { value: result, status: result.status, detail: outcome.strategy ? `${outcome.strategy}: ${outcome.reason}` : outcome.reason }
  })
  report.rollback = rolledBack.report as RollbackReport
  warnings.push(...rolledBack.warnings)
  if (rolledBack.status === 'rolled_back' || rolledBack.status === 'nothing_to_do') {
    changed = changed || rolledBack.changed
    const how = snapshotPath ? 'restored to the snapshot' : 'brought back to their planned versions by downgrade scripts'
    return finish('rolled_back', `${what}; the databases were ${how}, so the upgrade did not happen. ${failure.error ?? ''}`.trim())
  }
  errors.push(...rolledBack.errors)
  changed = changed || rolledBack.changed
  const noWayBack = !snapshotPath && !rolledBack.changed
  return finish(
    'failed',
    noWayBack ? `${what}, and there is no way back: no snapshot, and ${rolledBack.error ?? 'no downgrade path'}` : `${what}, and the rollback failed too: ${rolledBack.error ?? 'see the report'}`,
    stateGuidance(executed, report.rollback)
  )
}

/** Where the databases stand after a failed run, and what to do about it. */
function stateGuidance(executed: ExecuteReport, rollback: RollbackReport | undefined): string[] {
  const lines = executed.databases
    .filter((d) => d.extensions.some((e) => e.outcome === 'updated' || e.outcome === 'installed' || e.outcome === 'failed'))
    .map((d) => `${d.name}: ${d.extensions.map((e) => `${e.name} at ${catalogVersion(e)}${e.outcome === 'failed' ? ` (its update failed: ${e.code})` : ''}`).join(', ')}`)
  const next = rollback?.recovery?.length
    ? rollback.recovery
    : ['Inspect the databases with mode verify, then either fix forward (execute again once the cause is fixed) or roll back with mode rollback and the snapshot output, choosing a strategy it allows.']
  return [...(lines.length > 0 ? ['The databases are now at:', ...lines] : ['No database was changed.']), ...next]
}
