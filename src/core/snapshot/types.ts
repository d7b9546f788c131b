import type { ConnectionTarget, Connector } from '../connection.js'
import type { Logger } from '../logger.js'
import type { Finding } from '../plan.js'
import type { ClusterFacts } from '../recovery/inventory.js'
import type { SnapshotManifest, SnapshotStrategy } from '../recovery/manifest.js'
import type { PhaseClock, PhaseRecord } from '../recovery/phases.js'

export interface SnapshotRequest {
  strategy: 'auto' | SnapshotStrategy
  /** snapshot-dir: the snapshot goes into `<root>/<id>/`. */
  root: string
  /** True when snapshot-dir was not given and root is under RUNNER_TEMP (emptied after the job). */
  rootIsTemporary?: boolean
  /** restore-point: the name (also the snapshot id); generated when empty. */
  restorePoint?: string
  /** Databases whose extensions (and, for dump, contents) the snapshot records. */
  databases: string[]
  /** The plan the snapshot is taken for (its databases are `databases`), recorded in the manifest. */
  plan?: { fingerprint: string; databases: string[] }
  pgBinDir?: string
  waitTimeoutMs: number
  env: NodeJS.ProcessEnv
}

export interface SnapshotDeps {
  connect: Connector
  target: ConnectionTarget
  log: Logger
}

export interface SnapshotPrograms {
  pgBasebackup?: string
  pgVerifybackup?: string
  pgWaldump?: string
  pgDump?: string
  pgRestore?: string
}

/** Everything a strategy needs once the preflight passed. */
export interface SnapshotContext extends SnapshotDeps {
  request: SnapshotRequest
  phases: PhaseClock
  facts: ClusterFacts
  id: string
  /** `<root>/<id>`: where the manifest and files go. */
  dir: string
  archiveDir: string | null
  programs: SnapshotPrograms
  /** Things left behind if a later step fails (a restore point, files), for the report. */
  leftBehind: string[]
  warnings: Finding[]
}

export interface SnapshotSuccess {
  ok: true
  strategy: SnapshotStrategy
  /** Why this strategy (auto says what it looked at). */
  reason: string
  manifest: SnapshotManifest
  manifestPath: string
  dir: string
  phases: PhaseRecord[]
  warnings: Finding[]
  durationMs: number
}

export interface SnapshotFailure {
  ok: false
  strategy?: SnapshotStrategy
  reason?: string
  findings: Finding[]
  phases: PhaseRecord[]
  warnings: Finding[]
  /** False when the failure came from a precondition: nothing was changed or written. */
  changed: boolean
  leftBehind: string[]
  durationMs: number
}

export type SnapshotOutcome = SnapshotSuccess | SnapshotFailure
