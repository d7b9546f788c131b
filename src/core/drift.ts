import type pg from 'pg'
import type { AvailableExtension } from './catalog.js'
import { readLibraries } from './catalog.js'
import { compareLibrary, quirkOf } from './quirks.js'
import { compareVersions } from './versions.js'

/**
 * The drift classes of PRODUCT.md §5. Each database is compared with the target and with what
 * the server ships, never with the other databases: a fleet uniformly behind is still behind.
 */
export type DriftClass = 'ok' | 'catalog_behind' | 'catalog_ahead' | 'restart_required' | 'unavailable' | 'fleet_skew' | 'parity'

export interface DriftEntry {
  database: string
  extension: string
  /** pg_extension.extversion */
  catalog: string
  /** pg_available_extensions.default_version: what the installed package ships. */
  control: string | null
  /** An explicit target from `extensions` (name@version), else the control-file default. */
  target: string | null
  /** The loaded library's version where the extension can tell; null is unknown, never guessed. */
  library: string | null
  class: DriftClass
  message: string
}

export interface FleetSkew {
  extension: string
  class: 'fleet_skew'
  /** catalog version → the databases at it */
  versions: Record<string, string[]>
  message: string
}

export interface ParityDifference {
  database: string
  class: 'parity'
  subject: string
  target: string | null
  reference: string | null
  message: string
}

export interface DriftInput {
  database: string
  extension: string
  catalog: string
  available: AvailableExtension | undefined
  explicitTarget: string | undefined
  library: string | null
}

/** Classifies one installed extension of one database. Pure. */
export function classifyDrift({ database, extension, catalog, available, explicitTarget, library }: DriftInput): DriftEntry {
  const control = available?.defaultVersion ?? null
  const target = explicitTarget ?? control
  const entry = (cls: DriftClass, message: string): DriftEntry => ({ database, extension, catalog, control, target, library, class: cls, message })
  if (!available) return entry('unavailable', `${extension} ${catalog} is installed but the server no longer ships it (no control file)`)
  const shipped = available.versions.map((v) => v.version)
  if (!shipped.includes(catalog)) {
    if (control && compareVersions(catalog, control) > 0) {
      return entry('catalog_ahead', `the catalog says ${catalog}, newer than anything the server ships (default ${control}): the binaries were rolled back under it`)
    }
    return entry('unavailable', `the catalog version ${catalog} is no longer shipped (available: ${shipped.join(', ')})`)
  }
  if (library && compareLibrary(extension, library, catalog) < 0) {
    return entry('catalog_ahead', `the loaded library is ${library}, older than the catalog ${catalog}: a rolled-back binary under a newer catalog`)
  }
  if (library && control && compareLibrary(extension, library, control) < 0) {
    const why = quirkOf(extension).preload ? 'restart the server so it loads the installed library' : 'the installed library and control file are out of step'
    return entry('restart_required', `the loaded library is ${library}, older than the control file's ${control}: ${why}, before any ALTER EXTENSION`)
  }
  if (target && catalog !== target) {
    return compareVersions(catalog, target) < 0
      ? entry('catalog_behind', `the catalog says ${catalog} but the target is ${target}: needs ALTER EXTENSION ${extension} UPDATE`)
      : entry('catalog_ahead', `the catalog says ${catalog}, ahead of the target ${target}`)
  }
  return entry('ok', `${catalog}${library ? ` (library ${library})` : ''} matches the target`)
}

/**
 * Databases that should agree about an extension (the same target) but do not, reported next to
 * (not instead of) each database's own class. Different targets on purpose (a manifest pinning
 * one database to an older version) are not skew.
 */
export function fleetSkew(entries: DriftEntry[]): FleetSkew[] {
  const groups = new Map<string, { extension: string; target: string | null; versions: Map<string, string[]> }>()
  for (const e of entries) {
    const key = `${e.extension}\u0000${e.target ?? ''}`
    const group = groups.get(key) ?? { extension: e.extension, target: e.target, versions: new Map<string, string[]>() }
    group.versions.set(e.catalog, [...(group.versions.get(e.catalog) ?? []), e.database])
    groups.set(key, group)
  }
  return [...groups.values()]
    .filter((group) => group.versions.size > 1)
    .map(({ extension, target, versions }) => {
      const counts = [...versions.entries()].sort((a, b) => compareVersions(a[0], b[0])).map(([v, dbs]) => `${v} in ${dbs.length}`)
      return {
        extension,
        class: 'fleet_skew' as const,
        versions: Object.fromEntries(versions),
        message: `databases targeting ${extension} ${target ?? '(unknown)'} disagree: ${counts.join(', ')}`
      }
    })
}

export interface InstalledRow {
  name: string
  version: string
  schema: string
  relocatable: boolean
}

/** What drift needs from a database: its extensions and the probed libraries; read-only, one round trip plus probes. */
export async function readDatabaseExtensions(client: pg.Client): Promise<{ installed: InstalledRow[]; libraries: Record<string, string | null> }> {
  const results = (await client.query(
    `BEGIN TRANSACTION READ ONLY;
     SELECT e.extname AS name, e.extversion AS version, n.nspname AS schema, e.extrelocatable AS relocatable
     FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY e.extname;
     COMMIT;`
  )) as unknown as pg.QueryResult<InstalledRow>[]
  const installed = results[1].rows
  const { libraries } = await readLibraries(client, installed.map((e) => e.name))
  return { installed, libraries }
}

export interface ParitySide {
  extensions: InstalledRow[]
  preload: string[] | null
  settings: Record<string, string>
}

export const PARITY_SETTINGS = ['max_connections', 'shared_buffers', 'work_mem'] as const

export async function readParitySettings(client: pg.Client): Promise<Pick<ParitySide, 'preload' | 'settings'>> {
  const result = await client.query<{ name: string; setting: string | null; unit: string | null }>(
    `SELECT name, setting, unit FROM pg_settings WHERE name = ANY ($1::text[])`,
    [[...PARITY_SETTINGS, 'shared_preload_libraries']]
  )
  const settings: Record<string, string> = {}
  let preload: string[] | null = null
  for (const row of result.rows) {
    if (row.name === 'shared_preload_libraries') preload = row.setting === null ? null : row.setting.split(',').map((s) => s.trim()).filter(Boolean).sort()
    else settings[row.name] = `${row.setting ?? '?'}${row.unit ? ` × ${row.unit}` : ''}`
  }
  return { preload, settings }
}

/** Staging must mirror production: extensions (version, schema, relocatable), preload libraries and key settings. */
export function compareParity(database: string, target: ParitySide, reference: ParitySide): ParityDifference[] {
  const differences: ParityDifference[] = []
  const diff = (subject: string, t: string | null, r: string | null) => {
    if (t !== r) differences.push({ database, class: 'parity', subject, target: t, reference: r, message: `${subject}: ${t ?? 'absent'} here, ${r ?? 'absent'} on the reference` })
  }
  const names = new Set([...target.extensions, ...reference.extensions].map((e) => e.name))
  for (const name of [...names].sort()) {
    const t = target.extensions.find((e) => e.name === name)
    const r = reference.extensions.find((e) => e.name === name)
    diff(`extension ${name}`, t?.version ?? null, r?.version ?? null)
    if (t && r) {
      diff(`extension ${name} schema`, t.schema, r.schema)
      diff(`extension ${name} relocatable`, String(t.relocatable), String(r.relocatable))
    }
  }
  if (target.preload !== null && reference.preload !== null) diff('shared_preload_libraries', target.preload.join(',') || '(none)', reference.preload.join(',') || '(none)')
  for (const setting of PARITY_SETTINGS) diff(setting, target.settings[setting] ?? null, reference.settings[setting] ?? null)
  return differences
}

/**
 * What monitoring alerts on. unhealthy: something is broken now (a database could not be read, the
 * catalog is ahead of the library or of anything the server ships, an extension whose control file
 * is gone). degraded: work to do (an ALTER EXTENSION UPDATE, a restart to load the installed
 * library, a catalog ahead of a pinned target, fleet skew, parity differences). healthy: neither.
 */
export type Health = 'healthy' | 'degraded' | 'unhealthy'

export const HEALTH_STATES: readonly Health[] = ['healthy', 'degraded', 'unhealthy']

export function entryHealth(e: DriftEntry): Health {
  if (e.class === 'ok') return 'healthy'
  if (e.class === 'unavailable') return 'unhealthy'
  if (e.class === 'catalog_ahead') {
    const libraryBehind = e.library !== null && compareLibrary(e.extension, e.library, e.catalog) < 0
    const beyondShipped = e.control === null || compareVersions(e.catalog, e.control) > 0
    return libraryBehind || beyondShipped ? 'unhealthy' : 'degraded'
  }
  return 'degraded'
}

export function driftHealth(entries: DriftEntry[], otherFindings: number, unreadable: number): Health {
  const states = entries.map(entryHealth)
  if (unreadable > 0 || states.includes('unhealthy')) return 'unhealthy'
  return otherFindings > 0 || states.includes('degraded') ? 'degraded' : 'healthy'
}
