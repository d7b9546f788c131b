import type { DatabaseFacts, ServerFacts } from './catalog.js'
import type { Code } from './codes.js'
import { formatDuration } from './duration.js'
import type { ExtensionRequest } from './extension-list.js'
import {
  fingerprintDatabase,
  fingerprintPlan,
  sealPlan,
  isChange,
  type DatabasePlan,
  type Finding,
  type Plan,
  type PlannedExtension,
  type PlanRequest
} from './plan.js'
import { compareLibrary, quirkOf } from './quirks.js'
import { compareVersions } from './versions.js'

/** Codes that are reported as warnings; every other finding blocks the plan. */
const WARNING_CODES = new Set<Code>(['DOWNGRADE_HOP', 'LONG_TRANSACTION', 'DEPENDENT_OBJECTS', 'CATALOG_AHEAD'])

export interface DatabasePlanResult {
  plan: DatabasePlan
  findings: Array<Finding & { warning: boolean }>
  members: Record<string, string[]>
}

export interface PlannerOptions {
  /**
   * Locks held on extension-owned tables block a dry-run gate; when planning for execution they
   * are warnings, because execute waits for them with lock_timeout and retries.
   */
  lockConflicts: 'block' | 'warn'
}

/** Plans one database from its inspected facts. Pure: no I/O, same facts → same plan. */
export function planDatabase(
  server: ServerFacts,
  database: DatabaseFacts,
  request: PlanRequest,
  options: PlannerOptions = { lockConflicts: 'block' }
): DatabasePlanResult {
  const findings: DatabasePlanResult['findings'] = []
  const report = (code: Code, message: string, extension?: string, extra: Partial<Finding> = {}, warning = WARNING_CODES.has(code)) =>
    findings.push({ code, database: database.name, extension, message, ...extra, warning })

  const requested = request.extensions.length > 0 ? request.extensions : behindDefault()

  /** No explicit list: every installed extension behind its control-file default; the rest explained. */
  function behindDefault(): ExtensionRequest[] {
    const wanted: ExtensionRequest[] = []
    for (const name of database.inScope) {
      const installed = database.installed[name].version
      const shipped = server.available[name]?.defaultVersion
      if (!shipped) {
        report('EXTENSION_NOT_AVAILABLE', `${name} ${installed} is installed but the server no longer ships it`, name, {}, true)
      } else if (compareVersions(installed, shipped) > 0) {
        report('CATALOG_AHEAD', `${name} ${installed} is newer than the server's default ${shipped}; left alone (name ${name}@${shipped} with allow-downgrade to go back)`, name)
      } else {
        wanted.push({ name })
      }
    }
    return wanted
  }

  const entries = new Map<string, PlannedExtension>()
  const blocked = new Set<string>()
  const block = (name: string, code: Code, message: string, extra: Partial<Finding> = {}) => {
    report(code, message, name, extra, false)
    blocked.add(name)
  }

  const planOne = (want: ExtensionRequest, requiredBy?: string): void => {
    const { name } = want
    const available = server.available[name]
    const installed = database.installed[name]
    const entry: PlannedExtension = {
      name,
      from: installed?.version ?? null,
      to: want.version ?? available?.defaultVersion ?? null,
      path: [],
      action: 'none',
      defaultTarget: want.version === undefined,
      order: 0,
      schema: installed?.schema ?? null,
      requires: [],
      ...(requiredBy ? { requiredBy } : {})
    }
    entries.set(name, entry)

    if (!available) {
      block(name, 'EXTENSION_NOT_AVAILABLE', `${name} is not available on the server (no ${name}.control is installed)`)
      return
    }
    const target = available.versions.find((v) => v.version === entry.to)
    if (!target || entry.to === null) {
      const list = available.versions.map((v) => v.version).join(', ')
      const asked = entry.to === null ? 'has no default version' : `version ${entry.to} is not available`
      block(name, 'VERSION_NOT_AVAILABLE', `${name}: ${asked}; available versions: ${list}`)
      return
    }
    entry.requires = target.requires

    if (!installed) {
      if (!request.installMissing) {
        block(name, 'NOT_INSTALLED', `${name} is not installed in ${database.name}; set install-missing: true to create it`)
        return
      }
      entry.action = 'install'
      entry.path = [target.version]
      entry.schema = target.schema
    } else if (installed.version !== target.version) {
      const hops = database.paths[name]?.[target.version]
      const downgrade = compareVersions(target.version, installed.version) < 0
      if (downgrade && !request.allowDowngrade) {
        const exists = hops ? 'a downgrade path exists' : 'no downgrade path exists either'
        block(
          name,
          'DOWNGRADE_NOT_ALLOWED',
          `${name}: target ${target.version} is older than the installed ${installed.version} (${exists}); set allow-downgrade: true to go back`
        )
        return
      }
      if (!hops) {
        const reachable = Object.keys(database.paths[name] ?? {}).sort(compareVersions)
        const list = reachable.length > 0 ? reachable.join(', ') : 'none'
        block(name, 'NO_UPDATE_PATH', `${name}: no update path from ${installed.version} to ${target.version}; reachable from ${installed.version}: ${list}`)
        return
      }
      entry.action = 'update'
      entry.path = hops
      if (downgrade) entry.direction = 'downgrade'
      const lower = hops.slice(1).find((hop, i) => compareVersions(hop, hops[i]) < 0)
      if (!downgrade && lower !== undefined) {
        report('DOWNGRADE_HOP', `${name}: the path ${hops.join(' → ')} passes through the lower version ${lower}`, name)
      }
    } else {
      entry.path = [target.version]
      return
    }

    checkPrivileges(entry)
    checkLibrary(entry)
    const staged = quirkOf(name).staged ?? (request.stagedExtensions.includes(name) ? { reason: 'listed in staged-extensions' } : undefined)
    if (staged && entry.action === 'update' && entry.path.length > 2) entry.staged = staged
    if (entry.action === 'update') checkSessions(entry)
  }

  const checkPrivileges = (entry: PlannedExtension) => {
    const installed = database.installed[entry.name]
    if (server.superuser) return
    if (installed && !installed.ownedByMe) {
      block(entry.name, 'INSUFFICIENT_PRIVILEGE', `${entry.name} is owned by ${installed.owner}; connect as ${installed.owner} or a superuser (current role: ${server.role})`)
    }
    // Each script runs under the control data of the version it reaches (extension.c).
    const reached = entry.action === 'install' ? entry.path : entry.path.slice(1)
    const versions = server.available[entry.name]?.versions ?? []
    for (const version of reached) {
      const control = versions.find((v) => v.version === version)
      if (!control?.superuser) continue
      if (!control.trusted) {
        block(entry.name, 'INSUFFICIENT_PRIVILEGE', `${entry.name} ${version} is untrusted: only a superuser may ${entry.action} to it (current role: ${server.role})`)
        return
      }
      if (!database.canCreate) {
        block(entry.name, 'INSUFFICIENT_PRIVILEGE', `${entry.name} ${version} is trusted but needs CREATE on database ${database.name}, which ${server.role} lacks`)
        return
      }
    }
  }

  const checkLibrary = (entry: PlannedExtension) => {
    const quirk = quirkOf(entry.name)
    if (quirk.preload) {
      const { library, blocking, reason } = quirk.preload
      if (server.preloadLibraries === null) {
        report('PRELOAD_MISSING', `cannot read shared_preload_libraries (needs pg_read_all_settings): make sure it lists ${library}, because ${reason}`, entry.name, {}, true)
      } else if (!server.preloadLibraries.includes(library)) {
        report('PRELOAD_MISSING', `${library} is not in shared_preload_libraries: ${reason}`, entry.name, {}, !blocking)
        if (blocking) blocked.add(entry.name)
      }
    }
    const library = database.libraries[entry.name]
    if (library !== undefined) entry.library = library
    if (quirk.preload && library === null) {
      report('RESTART_REQUIRED', `cannot read the version of the loaded ${entry.name} library (its probe failed); make sure the server was restarted after the package update`, entry.name, {}, true)
    }
    if (quirk.preload && library && entry.to && compareLibrary(entry.name, library, entry.to) < 0) {
      block(entry.name, 'RESTART_REQUIRED', `${entry.name}: the loaded library is ${library}, older than the target ${entry.to}; restart the server so it loads the installed library, then update`)
    }
  }

  const checkSessions = (entry: PlannedExtension) => {
    const holders = database.locks.filter((lock) => lock.extension === entry.name)
    if (holders.length > 0) {
      const list = holders.map((h) => `pid ${h.pid} (${h.user ?? '?'}, ${h.application || 'no application_name'}) holds ${h.mode} on ${h.relation}`).join('; ')
      if (options.lockConflicts === 'block') block(entry.name, 'LOCK_CONFLICT', `${entry.name}: ${list}`, { sessions: holders })
      else report('LOCK_CONFLICT', `${entry.name}: ${list}; execute will wait for it (lock-timeout, max-retries)`, entry.name, { sessions: holders }, true)
    }
    const dependents = database.dependents[entry.name]
    if (dependents && dependents.count > 0) {
      entry.dependents = dependents
      const more = dependents.count > dependents.sample.length ? `, and ${dependents.count - dependents.sample.length} more` : ''
      report('DEPENDENT_OBJECTS', `${dependents.count} user object(s) depend on members of ${entry.name}: ${dependents.sample.join('; ')}${more}`, entry.name)
    }
  }

  for (const want of requested) planOne(want)
  resolveRequirements()

  function resolveRequirements() {
    for (let changed = true; changed; ) {
      changed = false
      for (const entry of [...entries.values()]) {
        if (!isChange(entry) || blocked.has(entry.name)) continue
        for (const required of entry.requires) {
          if (database.installed[required] || entries.has(required)) {
            const requiredEntry = entries.get(required)
            if (!database.installed[required] && requiredEntry && blocked.has(required)) {
              block(entry.name, 'REQUIRES_MISSING', `${entry.name} ${entry.to} requires ${required}, which cannot be installed (see its blocker)`)
            }
            continue
          }
          if (request.installMissing) {
            planOne({ name: required }, entry.name)
            changed = true
          } else {
            block(entry.name, 'REQUIRES_MISSING', `${entry.name} ${entry.to} requires ${required}, which is not installed in ${database.name}; install it first or set install-missing: true`)
          }
        }
      }
    }
  }

  if (server.inRecovery || database.readOnly) {
    const changing = [...entries.values()].filter((e) => isChange(e) || blocked.has(e.name))
    if (changing.length > 0) {
      const why = server.inRecovery ? 'the server is a replica (in recovery)' : 'default_transaction_read_only is on'
      report('READ_ONLY_SERVER', `${database.name}: ${why}; extensions can only be changed on the primary`, undefined, {}, false)
      for (const entry of changing) blocked.add(entry.name)
    }
  }

  const anyChange = [...entries.values()].some((e) => isChange(e) || blocked.has(e.name))
  if (anyChange) {
    for (const session of database.longTransactions) {
      report('LONG_TRANSACTION', `${database.name}: pid ${session.pid} (${session.user ?? '?'}, ${session.application || 'no application_name'}) has had a transaction open for ${formatDuration(session.ageMs ?? 0)}: ${session.query ?? ''}`.trim(), undefined, { sessions: [session] })
    }
  }

  const ordered = orderByRequirements([...entries.values()])
  const members: Record<string, string[]> = {}
  ordered.forEach((entry, index) => {
    entry.order = index + 1
    if (blocked.has(entry.name)) entry.action = 'blocked'
    if (entry.action === 'update' && entry.from && database.members[entry.name]) {
      members[`${entry.name}@${entry.from}`] = database.members[entry.name]
    }
  })
  const names = new Set(ordered.map((e) => e.name))
  const fingerprint = fingerprintDatabase(database, server, [...names])
  const unplanned = Object.values(database.installed)
    .filter((e) => !names.has(e.name))
    .map((e) => `${e.name}@${e.version}`)
    .sort()
  return { plan: { name: database.name, fingerprint, extensions: ordered, unplanned }, findings, members }
}

/** Topological order by `requires`, alphabetical among equals; a cycle keeps the remaining names in order. */
export function orderByRequirements(entries: PlannedExtension[]): PlannedExtension[] {
  const byName = new Map(entries.map((e) => [e.name, e]))
  const result: PlannedExtension[] = []
  const remaining = new Set([...byName.keys()].sort())
  while (remaining.size > 0) {
    const ready = [...remaining].find((name) => byName.get(name)!.requires.every((r) => !remaining.has(r))) ?? [...remaining][0]
    remaining.delete(ready)
    result.push(byName.get(ready)!)
  }
  return result
}

export interface PlanInput {
  server: ServerFacts
  databases: DatabaseFacts[]
  request: PlanRequest
  options?: PlannerOptions
  now?: Date
}

export function buildPlan({ server, databases, request, options, now = new Date() }: PlanInput): Plan {
  return assemblePlan(server, databases.map((database) => planDatabase(server, database, request, options)), request, now)
}

/** Puts per-database plans together: findings split into blockers and warnings, member sets deduplicated. */
export function assemblePlan(server: ServerFacts, results: DatabasePlanResult[], request: PlanRequest, now = new Date()): Plan {
  const findings = results.flatMap((r) => r.findings)
  const strip = ({ warning: _warning, ...finding }: Finding & { warning: boolean }): Finding => finding
  const blockers = findings.filter((f) => !f.warning).map(strip)
  const warnings = findings.filter((f) => f.warning).map(strip)
  const plans = results.map((r) => r.plan)
  const changes = plans.some((p) => p.extensions.some(isChange))
  const members: Record<string, string[]> = {}
  for (const result of results) for (const [key, list] of Object.entries(result.members)) members[key] ??= list
  return sealPlan({
    schemaVersion: 1,
    status: blockers.length > 0 ? 'dry_run_blocked' : changes ? 'dry_run_approved' : 'nothing_to_do',
    createdAt: now.toISOString(),
    server: { version: server.version, versionNum: server.versionNum, isReplica: server.inRecovery },
    request,
    databases: plans,
    blockers,
    warnings,
    members,
    fingerprint: fingerprintPlan(plans)
  })
}
