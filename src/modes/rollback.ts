import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { changesOfPlan, loadReportChanges, mergeChanges } from '../core/changes.js'
import { redact } from '../core/connection.js'
import { loadPlan } from '../core/plan-input.js'
import { CodedError } from '../core/errors.js'
import { manifestPathOf, manifestsUnder, readManifest, restorePointProblem } from '../core/recovery/manifest.js'
import { rollBack, type RollbackOutcome, type RollbackRequest } from '../core/rollback/index.js'
import type { Inputs } from '../inputs.js'
import { executeSettings } from './execute.js'
import { defaultSnapshotRoot } from './snapshot.js'
import { targetDatabases } from './targets.js'
import type { ModeContext, ModeResult } from './types.js'

export interface RollbackReport extends RollbackOutcome {
  schemaVersion: 1
  mode: 'rollback'
}

/**
 * The manifest to roll back to: `snapshot` (the manifest or its directory), or else the snapshot
 * under snapshot-dir whose restore point is `restore-point`.
 */
export function resolveManifest(inputs: Inputs, env: NodeJS.ProcessEnv): string {
  const name = inputs.restorePoint.trim()
  if (name) {
    const problem = restorePointProblem(name)
    if (problem) throw new CodedError('INVALID_INPUT', `input "restore-point": ${problem}`)
  }
  if (inputs.snapshot.trim()) {
    const path = manifestPathOf(inputs.snapshot)
    if (name && existsSync(path)) {
      const recorded = readManifest(path).manifest.restorePoint?.name
      if (recorded !== name) throw new CodedError('INVALID_INPUT', `inputs "snapshot" and "restore-point" disagree: the snapshot's restore point is ${recorded ?? '(none)'}, not ${name}; give one of them`)
    }
    return path
  }
  if (name) {
    const root = inputs.snapshotDir.trim() ? resolve(inputs.snapshotDir.trim()) : defaultSnapshotRoot(env)
    const found = manifestsUnder(root).find((m) => m.manifest.restorePoint?.name === name || m.manifest.id === name)
    if (!found) throw new CodedError('INVALID_INPUT', `input "restore-point": no snapshot under ${root} records restore point ${name}; give the manifest in "snapshot", or the snapshot-dir it was written to`)
    return found.path
  }
  throw new CodedError('INVALID_INPUT', 'input "snapshot": required for rollback: the manifest.json of the snapshot step (steps.<id>.outputs.snapshot), or give restore-point with snapshot-dir')
}

export function rollbackRequest(inputs: Inputs, env: NodeJS.ProcessEnv): RollbackRequest {
  if (inputs.rollbackStrategy === 'pitr' && !inputs.pgdata.trim()) {
    throw new CodedError('INVALID_INPUT', 'input "pgdata": rollback-strategy pitr needs the data directory of the server (for example /var/lib/postgresql/15/main)')
  }
  return {
    strategy: inputs.rollbackStrategy,
    manifestPath: resolveManifest(inputs, env),
    pgdata: inputs.pgdata.trim() ? resolve(inputs.pgdata.trim()) : undefined,
    pgBinDir: inputs.pgBinDir.trim() || undefined,
    stopCommand: inputs.stopCommand.trim() || undefined,
    startCommand: inputs.startCommand.trim() || undefined,
    restoreCommand: inputs.restoreCommand.trim() || undefined,
    confirmDataLoss: inputs.confirmDataLoss,
    keepPrevious: inputs.keepPrevious,
    terminateConnections: inputs.terminateConnections,
    waitTimeoutMs: inputs.waitTimeout,
    execute: executeSettings(inputs),
    ...changesOfInputs(inputs, env),
    env
  }
}

/** What the `plan` and `report` inputs say the upgrade changed; nothing when neither is given. */
function changesOfInputs(inputs: Inputs, env: NodeJS.ProcessEnv): Pick<RollbackRequest, 'changes' | 'planFingerprint'> {
  if (!inputs.plan && !inputs.report) return {}
  const plan = inputs.plan ? loadPlan(inputs.plan, env) : undefined
  return {
    changes: mergeChanges(plan ? changesOfPlan(plan) : [], inputs.report ? loadReportChanges(inputs.report, env) : []),
    ...(plan ? { planFingerprint: plan.fingerprint } : {})
  }
}

/** The mode's result of a rollback outcome (also for run, which rolls back itself). */
export function rollbackResult(outcome: RollbackOutcome, target: string): ModeResult {
  const report: RollbackReport = { schemaVersion: 1, mode: 'rollback', ...outcome }
  const first = outcome.findings[0]
  const untouched = outcome.status === 'rollback_failed' && !outcome.changed && !outcome.pitr?.previousDir ? ' Nothing was changed.' : ''
  return {
    mode: 'rollback',
    status: outcome.status,
    changed: outcome.changed,
    report,
    errors: outcome.findings,
    warnings: outcome.warnings,
    error: first ? `${first.code}: ${first.message.replace(/\.?$/, '.')}${outcome.findings.length > 1 ? ` (and ${outcome.findings.length - 1} more.)` : ''}${untouched}` : undefined,
    target,
    outputs: outcome.snapshot
      ? { snapshot: outcome.snapshot.path, ...(outcome.snapshot.restorePoint ? { 'restore-point': outcome.snapshot.restorePoint } : {}) }
      : {}
  }
}

/**
 * rollback: back to a snapshot with the least destructive strategy that can do it — downgrade
 * scripts, a per-database restore pinned to the recorded versions, or a whole-cluster
 * point-in-time recovery (only with confirm-data-loss).
 */
export async function rollback(context: ModeContext): Promise<ModeResult> {
  const { inputs, target, connect, log, env } = context
  const request = rollbackRequest(inputs, env)
  if (inputs.databases.length > 0) request.databases = await targetDatabases(context)
  const outcome = await rollBack(request, { connect, target, log })
  return rollbackResult(outcome, redact(target))
}
