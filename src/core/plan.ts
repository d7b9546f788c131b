import { createHash } from 'node:crypto'
import type { DatabaseFacts, Dependents, ServerFacts, SessionInfo } from './catalog.js'
import type { Code } from './codes.js'
import { contentDigest } from './digest.js'
import { CodedError } from './errors.js'
import type { ExtensionRequest } from './extension-list.js'

export type Action = 'update' | 'install' | 'none' | 'blocked'
export type PlanStatus = 'dry_run_approved' | 'dry_run_blocked' | 'nothing_to_do'

export interface Finding {
  code: Code
  database?: string
  extension?: string
  message: string
  /** Sessions involved (lock holders, long transactions, blockers seen while waiting). */
  sessions?: SessionInfo[]
  /** Where in the repository the finding comes from (a manifest line), for annotations. */
  source?: { file: string; line: number }
}

export interface PlannedExtension {
  name: string
  /** Installed version; null when the extension is to be installed. */
  from: string | null
  to: string | null
  /** Every version PostgreSQL walks, `from` and `to` included. */
  path: string[]
  action: Action
  /** The target is the control-file default rather than an exact version asked for. */
  defaultTarget: boolean
  /** Execution order inside the database: required extensions first. */
  order: number
  schema: string | null
  /** Set only when the path goes to an older version (allow-downgrade). */
  direction?: 'upgrade' | 'downgrade'
  /** Present when hops run one per transaction, with the reason. */
  staged?: { reason: string }
  /** Extensions the target version requires (its control file). */
  requires: string[]
  /** For an install pulled in by another extension's requirements. */
  requiredBy?: string
  dependents?: Dependents
  /** Version of the loaded library, where the extension can tell. */
  library?: string | null
}

export interface DatabasePlan {
  name: string
  /** Hash of the inspected state of this database (see `fingerprintDatabase`). */
  fingerprint: string
  extensions: PlannedExtension[]
  /** The other installed extensions (`name@version`), so that PLAN_STALE can say what changed. */
  unplanned: string[]
}

export interface PlanRequest {
  /** The `extensions` input; empty with a manifest, whose requests vary per database. */
  extensions: ExtensionRequest[]
  /** The manifest file the requests came from. */
  manifest?: string
  allowDowngrade: boolean
  installMissing: boolean
  stagedExtensions: string[]
  /** Updated on a fresh session where the ALTER is the first statement (beside the quirks table). */
  firstStatementExtensions?: string[]
}

export interface Plan {
  schemaVersion: 1
  status: PlanStatus
  createdAt: string
  server: { version: string; versionNum: number; isReplica: boolean }
  request: PlanRequest
  databases: DatabasePlan[]
  blockers: Finding[]
  warnings: Finding[]
  /** Member objects before the change, per `name@version`, for verify's added/removed report. */
  members: Record<string, string[]>
  fingerprint: string
  /** Set on the compact form written to a step output when the full plan is too large. */
  truncated?: { planFile: string; reason: string }
  /** On the compact form: what the full plan holds. */
  counts?: { databases: number; changes: number; blockers: number; warnings: number }
  /** sha256 over every other field (src/core/digest.ts); execute refuses a full plan that fails it. */
  digest?: string
}

/** The plan with its digest: the last step of building one, so that any later edit shows. */
export function sealPlan(plan: Plan): Plan {
  return { ...plan, digest: contentDigest(plan) }
}

export const isChange = (extension: PlannedExtension) => extension.action === 'update' || extension.action === 'install'

const sha256 = (value: unknown) => `sha256:${createHash('sha256').update(JSON.stringify(value)).digest('hex')}`

/**
 * What must not change between plan and execute: every installed extension outside the plan
 * (name, version, schema), and what the server ships for the planned ones (default and versions).
 * The planned extensions' own versions are left out on purpose: `checkProgress` accepts them
 * anywhere on their planned path, which is what lets a stopped run resume.
 */
export function fingerprintDatabase(database: DatabaseFacts, server: ServerFacts, planned: string[]): string {
  const inPlan = new Set(planned)
  const installed = Object.values(database.installed)
    .filter((extension) => !inPlan.has(extension.name))
    .map((extension) => [extension.name, extension.version, extension.schema])
    .sort((a, b) => a[0].localeCompare(b[0]))
  const shipped = [...inPlan].sort().map((name) => {
    const available = server.available[name]
    return [name, available?.defaultVersion ?? null, available?.versions.map((v) => v.version).sort() ?? null]
  })
  return sha256({ installed, shipped })
}

export function fingerprintPlan(databases: Array<Pick<DatabasePlan, 'name' | 'fingerprint'>>): string {
  return sha256([...databases].sort((a, b) => a.name.localeCompare(b.name)).map((d) => [d.name, d.fingerprint]))
}

/**
 * Where each planned extension stands now. Anything off its planned path means someone else
 * changed it, and the plan no longer describes the database.
 */
export function checkProgress(database: DatabaseFacts, planned: DatabasePlan): string[] {
  const problems: string[] = []
  for (const extension of planned.extensions) {
    const now = database.installed[extension.name]
    if (extension.action === 'install') {
      if (now && now.version !== extension.to) problems.push(`${extension.name} was installed at ${now.version} meanwhile`)
      continue
    }
    if (!now) {
      if (extension.from !== null) problems.push(`${extension.name} was dropped`)
      continue
    }
    const allowed = extension.action === 'update' ? extension.path : [extension.from]
    if (!allowed.includes(now.version)) {
      problems.push(`${extension.name} is at ${now.version}, which is not on the planned path ${extension.path.join(' → ')}`)
    }
    if (extension.schema !== null && now.schema !== extension.schema) {
      problems.push(`${extension.name} moved from schema ${extension.schema} to ${now.schema}`)
    }
  }
  return problems
}

/**
 * The request a database's entries were planned from, for re-planning it under the lock: each
 * entry with its exact version, or with none where the control-file default was the target (so
 * the default is resolved again). Installs pulled in by requirements are named too: on a resumed
 * run they are already there, and nothing would pull them in again.
 */
export function replanRequest(planned: DatabasePlan, request: PlanRequest): PlanRequest {
  const extensions = planned.extensions.map((e) => (e.defaultTarget || e.to === null ? { name: e.name } : { name: e.name, version: e.to }))
  return { ...request, extensions }
}

/**
 * Where a plan's entries disagree with re-planning the same request on the database as it is now
 * (under the lock): a different target, action or set of extensions. An update or install that
 * re-planning finds already done is a resumed run, not a disagreement.
 */
export function replanDisagreements(planned: DatabasePlan, replanned: DatabasePlan): string[] {
  const problems: string[] = []
  const fresh = new Map(replanned.extensions.map((e) => [e.name, e]))
  for (const entry of planned.extensions) {
    const now = fresh.get(entry.name)
    if (!now) {
      problems.push(`${entry.name} (${entry.action} to ${entry.to}) is not what the request plans to`)
      continue
    }
    if (now.to !== entry.to) problems.push(`${entry.name}: the plan says to ${entry.to}, re-planning the request gives ${now.to}`)
    else if (now.action !== entry.action && !(isChange(entry) && now.action === 'none')) problems.push(`${entry.name}: the plan says ${entry.action}, re-planning the request gives ${now.action}`)
  }
  const names = new Set(planned.extensions.map((e) => e.name))
  for (const entry of replanned.extensions) if (!names.has(entry.name)) problems.push(`re-planning the request also gives ${entry.name} (${entry.action} to ${entry.to}), which the plan lacks`)
  return problems
}

/** Execute's check under the lock: the plan's entries are what its own request plans to, else PLAN_STALE. */
export function assertAgreesWithReplan(planned: DatabasePlan, replanned: DatabasePlan): void {
  const problems = replanDisagreements(planned, replanned)
  if (problems.length > 0) throw new CodedError('PLAN_STALE', `the plan of ${planned.name} disagrees with re-planning its request now (${problems.join('; ')}); nothing was changed in ${planned.name}: run dry-run again`)
}
