import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { changesOfPlan } from '../core/changes.js'
import { redact } from '../core/connection.js'
import { CodedError } from '../core/errors.js'
import { loadPlan } from '../core/plan-input.js'
import type { SnapshotManifest, SnapshotStrategy } from '../core/recovery/manifest.js'
import { restorePointProblem } from '../core/recovery/manifest.js'
import type { PhaseRecord } from '../core/recovery/phases.js'
import { takeSnapshot, type SnapshotOutcome, type SnapshotRequest } from '../core/snapshot/index.js'
import type { Finding } from '../core/plan.js'
import type { Inputs } from '../inputs.js'
import { targetDatabases } from './targets.js'
import type { ModeContext, ModeResult, Status } from './types.js'

export interface SnapshotReport {
  schemaVersion: 1
  mode: 'snapshot'
  status: Status
  strategy?: SnapshotStrategy
  /** Why this strategy: what auto looked at. */
  reason?: string
  snapshot?: string
  durationMs: number
  phases: PhaseRecord[]
  /** False when a precondition failed: nothing was written and no restore point created. */
  changed: boolean
  /** What a failed snapshot left behind (a restore point is a WAL record and stays). */
  leftBehind: string[]
  manifest?: SnapshotManifest
}

/** Where snapshots go when snapshot-dir is empty: under RUNNER_TEMP (or the system temp directory). */
export function defaultSnapshotRoot(env: NodeJS.ProcessEnv): string {
  return join(env.RUNNER_TEMP || tmpdir(), 'pg-extension-upgrade', 'snapshots')
}

/** The snapshot request of the inputs; bad input is INVALID_INPUT naming the input. */
export function snapshotRequest(inputs: Inputs, databases: string[], env: NodeJS.ProcessEnv): SnapshotRequest {
  if (inputs.snapshotStrategy === 'none') {
    throw new CodedError('INVALID_INPUT', 'input "snapshot-strategy": none is only for mode run (skip the snapshot step instead); use auto, basebackup, restore-point or dump')
  }
  const name = inputs.restorePoint.trim()
  if (name) {
    const problem = restorePointProblem(name)
    if (problem) throw new CodedError('INVALID_INPUT', `input "restore-point": ${problem}`)
  }
  const given = inputs.snapshotDir.trim()
  return {
    strategy: inputs.snapshotStrategy,
    root: given ? resolve(given) : defaultSnapshotRoot(env),
    rootIsTemporary: !given,
    restorePoint: name || undefined,
    databases,
    pgBinDir: inputs.pgBinDir.trim() || undefined,
    waitTimeoutMs: inputs.waitTimeout,
    env
  }
}

/** The mode's result of a snapshot outcome (also for run, which takes snapshots itself). */
export function snapshotResult(outcome: SnapshotOutcome, target: string): ModeResult {
  if (outcome.ok) {
    const { manifest } = outcome
    const report: SnapshotReport = {
      schemaVersion: 1,
      mode: 'snapshot',
      status: 'snapshot_created',
      strategy: outcome.strategy,
      reason: outcome.reason,
      snapshot: outcome.manifestPath,
      durationMs: outcome.durationMs,
      phases: outcome.phases,
      changed: true,
      leftBehind: [],
      manifest
    }
    return {
      mode: 'snapshot',
      status: 'snapshot_created',
      changed: false,
      report,
      errors: [],
      warnings: outcome.warnings,
      target,
      outputs: {
        snapshot: outcome.manifestPath,
        'snapshot-strategy': outcome.strategy,
        ...(manifest.restorePoint ? { 'restore-point': manifest.restorePoint.name, 'restore-lsn': manifest.restorePoint.lsn } : {})
      }
    }
  }
  const report: SnapshotReport = {
    schemaVersion: 1,
    mode: 'snapshot',
    status: 'failed',
    strategy: outcome.strategy,
    reason: outcome.reason,
    durationMs: outcome.durationMs,
    phases: outcome.phases,
    changed: outcome.changed,
    leftBehind: outcome.leftBehind
  }
  const first: Finding = outcome.findings[0]
  const nothing = outcome.changed ? '' : ' Nothing was changed.'
  return {
    mode: 'snapshot',
    status: 'failed',
    changed: false,
    report,
    errors: outcome.findings,
    warnings: outcome.warnings,
    error: `${first.code}: ${first.message}${outcome.findings.length > 1 ? ` (and ${outcome.findings.length - 1} more)` : ''}.${nothing}`.replace('..', '.'),
    target,
    outputs: outcome.strategy ? { 'snapshot-strategy': outcome.strategy } : undefined
  }
}

/**
 * snapshot: a recoverable baseline before the upgrade — a verified base backup and a restore
 * point archived after it (basebackup), a restore point for an external backup tool
 * (restore-point), or a pg_dump per database (dump); auto picks basebackup when WAL archiving
 * works and the role may replicate, else dump.
 */
export async function snapshot(context: ModeContext): Promise<ModeResult> {
  const { inputs, target, connect, log, env } = context
  // Inputs are judged before anything connects; the databases are resolved afterwards.
  const request = snapshotRequest(inputs, [], env)
  if (inputs.plan) {
    const covered = plannedDatabases(inputs, env)
    if (covered.databases.length === 0) return planChangesNothing(covered.fingerprint, redact(target))
    request.databases = covered.databases
    request.plan = covered
  } else {
    request.databases = await targetDatabases(context)
  }
  const outcome = await takeSnapshot(request, { connect, target, log })
  return snapshotResult(outcome, redact(target))
}

/** With `plan`, a snapshot covers exactly the databases the plan changes, and records the plan. */
export function plannedDatabases(inputs: Inputs, env: NodeJS.ProcessEnv): { fingerprint: string; databases: string[] } {
  if (inputs.databases.length > 0 || inputs.excludeDatabases.length > 0) {
    throw new CodedError('INVALID_INPUT', 'inputs "plan" and "databases": give one or the other; with a plan the snapshot covers exactly the databases the plan changes')
  }
  const plan = loadPlan(inputs.plan, env)
  if (plan.status === 'dry_run_blocked') {
    throw new CodedError('INVALID_INPUT', 'input "plan": the plan is blocked, so execute will change nothing; fix its blockers and plan again before taking a snapshot')
  }
  return { fingerprint: plan.fingerprint, databases: changesOfPlan(plan).map((c) => c.database) }
}

function planChangesNothing(fingerprint: string, target: string): ModeResult {
  return {
    mode: 'snapshot',
    status: 'nothing_to_do',
    changed: false,
    errors: [],
    warnings: [],
    error: undefined,
    target,
    report: { schemaVersion: 1, mode: 'snapshot', status: 'nothing_to_do', reason: `the plan (${fingerprint}) changes no database, so there is nothing to snapshot`, durationMs: 0, phases: [], changed: false, leftBehind: [] }
  }
}
