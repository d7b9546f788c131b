import type { ConnectionTarget, Connector } from '../core/connection.js'
import type { Logger } from '../core/logger.js'
import type { Manifest } from '../core/manifest.js'
import type { Finding, Plan } from '../core/plan.js'
import type { Inputs, Mode } from '../inputs.js'

export type Status =
  | 'dry_run_approved'
  | 'dry_run_blocked'
  | 'nothing_to_do'
  | 'snapshot_created'
  | 'success'
  | 'failed'
  | 'verified'
  | 'verify_failed'
  | 'rolled_back'
  | 'rollback_failed'
  | 'no_drift'
  | 'drift_detected'

/**
 * Statuses that end the step with a non-zero exit. `rolled_back` is not one: it is success for
 * rollback; run, whose upgrade did not happen when it rolled back, sets `fails` itself.
 */
export const FAILURE_STATUSES: ReadonlySet<Status> = new Set<Status>(['dry_run_blocked', 'failed', 'verify_failed', 'rollback_failed', 'drift_detected'])

/**
 * The status a mode reports when it cannot finish at all (bad input, unreachable server). A
 * dry-run that could not plan says `failed`, never a plan verdict.
 */
export const FAILURE_STATUS: Record<Mode, Status> = {
  'dry-run': 'failed',
  snapshot: 'failed',
  execute: 'failed',
  verify: 'verify_failed',
  rollback: 'rollback_failed',
  run: 'failed',
  drift: 'failed'
}

export interface ModeContext {
  inputs: Inputs
  target: ConnectionTarget
  connect: Connector
  log: Logger
  env: NodeJS.ProcessEnv
  /** The `manifest` input, parsed (exclusive with `extensions`). */
  manifest?: Manifest
}

export interface ModeResult {
  mode: Mode | undefined
  status: Status
  changed: boolean
  plan?: Plan
  /** Mode-specific report, written to `report` / `report-file`. */
  report?: unknown
  errors: Finding[]
  warnings: Finding[]
  /** Overrides whether the status fails the step (drift with fail-on-drift: false, run rolled back). */
  fails?: boolean
  /** One line for the `error` output and the failure message. */
  error?: string
  /** Redacted connection target, for the summary. */
  target?: string
  outputs?: Partial<Record<'restore-point' | 'restore-lsn' | 'snapshot' | 'snapshot-strategy' | 'drift' | 'health' | 'metrics-file', string>>
  /** The manifest the requests came from, so that findings can point at its lines. */
  manifest?: Manifest
}

export type ModeHandler = (context: ModeContext) => Promise<ModeResult>

/** Whether the step ends with a non-zero exit. */
export const fails = (result: ModeResult): boolean => result.fails ?? FAILURE_STATUSES.has(result.status)
