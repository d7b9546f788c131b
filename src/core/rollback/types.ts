import type { PriorVersions } from '../changes.js'
import type { ConnectionTarget, Connector } from '../connection.js'
import type { ExecuteSettings } from '../executor.js'
import type { Logger } from '../logger.js'
import type { Finding } from '../plan.js'
import type { ClusterFacts } from '../recovery/inventory.js'
import type { SnapshotManifest } from '../recovery/manifest.js'
import type { PhaseClock, PhaseRecord } from '../recovery/phases.js'

export const ROLLBACK_STRATEGIES = ['downgrade', 'dump', 'pitr'] as const
export type RollbackStrategy = (typeof ROLLBACK_STRATEGIES)[number]

export interface RollbackRequest {
  strategy: 'auto' | RollbackStrategy
  /** The snapshot's manifest.json. */
  manifestPath: string
  /** Limit a downgrade or dump rollback to these databases (default: every database of the snapshot). */
  databases?: string[]
  /**
   * What the upgrade changed, from the `plan` and `report` inputs: every such database must be
   * covered by the snapshot, or the rollback fails with ROLLBACK_INCOMPLETE. Undefined: not known.
   */
  changes?: PriorVersions[]
  /** The fingerprint of the `plan` input, compared with the plan the snapshot was taken for. */
  planFingerprint?: string
  pgdata?: string
  pgBinDir?: string
  stopCommand?: string
  startCommand?: string
  restoreCommand?: string
  confirmDataLoss: boolean
  keepPrevious: boolean
  terminateConnections: boolean
  waitTimeoutMs: number
  /** Timeouts and retries for the downgrade's ALTER EXTENSION statements. */
  execute: ExecuteSettings
  env: NodeJS.ProcessEnv
}

export interface RollbackDeps {
  connect: Connector
  target: ConnectionTarget
  log: Logger
}

/** Where one database's extensions stand against the snapshot. */
export interface DatabaseDrift {
  name: string
  exists: boolean
  /** Recorded extensions now at another version. */
  changed: Array<{ name: string; now: string; recorded: string }>
  /** Recorded but no longer installed. */
  missing: string[]
  /** Installed since the snapshot. */
  added: Array<{ name: string; version: string }>
}

export const hasDrift = (d: DatabaseDrift) => !d.exists || d.changed.length + d.missing.length + d.added.length > 0

/** The versions a database had before the rollback, from its drift against the recorded ones. */
export function versionsBefore(drift: DatabaseDrift | undefined, recorded: Record<string, string>): Record<string, string> {
  if (!drift || !drift.exists) return {}
  const before: Record<string, string> = { ...recorded }
  for (const name of drift.missing) delete before[name]
  for (const change of drift.changed) before[change.name] = change.now
  for (const added of drift.added) before[added.name] = added.version
  return before
}

export type DatabaseOutcome = 'rolled_back' | 'already_matched' | 'failed' | 'not_started' | 'put_back'

export interface RollbackDatabaseResult {
  name: string
  outcome: DatabaseOutcome
  /** name → version before the rollback (null: not installed), and after it. */
  before: Record<string, string>
  after?: Record<string, string>
  recorded: Record<string, string>
  /** For dump: rows per table checked against the manifest. */
  rowsChecked?: { tables: number; rows: number; mismatches: string[] }
  /** The replaced database kept under this name (dump, keep-previous). */
  keptAs?: string
  detail?: string
  durationMs: number
}

/** What a rollback discards, said before it starts. */
export interface DiscardReport {
  scope: 'cluster' | 'databases' | 'none'
  summary: string
  /** pitr: WAL written since the restore point, and how long ago it was. */
  walBytes?: number | null
  sinceMs?: number
  commitsSince?: number | null
  /** Every database of the cluster: all of them are rewound. */
  databases?: string[]
  /** Databases created since the snapshot (they disappear) and dropped since (they come back). */
  createdSince?: string[]
  droppedSince?: string[]
  replicas?: string[]
  slots?: string[]
}

export interface PitrDetails {
  pgdata: string
  /** The data directory as it was before the rollback, renamed aside. */
  previousDir?: string
  /** A failed restore, renamed aside when the original was put back. */
  failedDir?: string
  putBack?: boolean
  logFile?: string
  logExcerpt?: string
  newTimeline?: number
  recoveryTimeline: number
  stoppedForMs?: number
}

export interface RollbackOutcome {
  status: 'rolled_back' | 'rollback_failed' | 'nothing_to_do'
  strategy?: RollbackStrategy
  /** Why this strategy (auto explains what it ruled out). */
  reason: string
  /** The snapshot rolled back to; absent when `run` rolled back by downgrade without one. */
  snapshot?: { id: string; strategy: SnapshotManifest['strategy']; path: string; createdAt: string; restorePoint?: string }
  phases: PhaseRecord[]
  findings: Finding[]
  warnings: Finding[]
  databases: RollbackDatabaseResult[]
  discarded?: DiscardReport
  pitr?: PitrDetails
  /** On failure: how to put things back by hand (exact commands), or what was put back. */
  recovery?: string[]
  changed: boolean
  durationMs: number
}

/** Shared by the strategies. */
export interface RollbackContext extends RollbackDeps {
  request: RollbackRequest
  manifest: SnapshotManifest
  manifestDir: string
  facts: ClusterFacts
  phases: PhaseClock
  drift: DatabaseDrift[]
  warnings: Finding[]
}
