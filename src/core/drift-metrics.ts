import type { DriftClass, DriftEntry, FleetSkew, Health, ParityDifference } from './drift.js'
import { HEALTH_STATES } from './drift.js'

/** The classes a (database, extension) series carries one 0|1 sample for; parity is per database. */
export const SERIES_CLASSES: readonly DriftClass[] = ['ok', 'catalog_behind', 'catalog_ahead', 'restart_required', 'unavailable', 'fleet_skew']

export interface DriftMetricsInput {
  entries: DriftEntry[]
  fleet: FleetSkew[]
  parity: ParityDifference[]
  databases: Array<{ name: string; readable: boolean }>
  health: Health
  checkedAt: Date
}

/** A label value as the exposition formats escape it: backslash, double quote and line feed. */
export const escapeLabel = (value: string) => value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')

const labels = (pairs: Record<string, string>) =>
  `{${Object.entries(pairs)
    .map(([name, value]) => `${name}="${escapeLabel(value)}"`)
    .join(',')}}`

const PREFIX = 'pg_extension_upgrade'

/**
 * The drift report as an OpenMetrics text file that the Prometheus text parsers of node_exporter's
 * textfile collector and the Pushgateway read too: every family is a gauge (the `_info` series
 * follows the Prometheus info-metric convention, value 1, the versions as labels), `# EOF` ends it.
 */
export function driftMetrics({ entries, fleet, parity, databases, health, checkedAt }: DriftMetricsInput): string {
  const lines: string[] = []
  const family = (name: string, help: string, samples: string[]) => {
    lines.push(`# TYPE ${PREFIX}_${name} gauge`, `# HELP ${PREFIX}_${name} ${help}`, ...samples)
  }
  const skewed = new Set(fleet.map((f) => f.extension))
  family(
    'extension_info',
    'An installed extension: catalog (pg_extension), control-file default and loaded library versions (empty when unknown).',
    entries.map(
      (e) =>
        `${PREFIX}_extension_info${labels({ database: e.database, extension: e.extension, catalog_version: e.catalog, default_version: e.control ?? '', library_version: e.library ?? '' })} 1`
    )
  )
  family(
    'drift',
    'One sample per drift class for each database and extension: 1 for its class (and fleet_skew when databases disagree), else 0.',
    entries.flatMap((e) =>
      SERIES_CLASSES.map((cls) => {
        const on = cls === 'fleet_skew' ? skewed.has(e.extension) : e.class === cls
        return `${PREFIX}_drift${labels({ database: e.database, extension: e.extension, class: cls })} ${on ? 1 : 0}`
      })
    )
  )
  family(
    'parity_differences',
    'Differences from the reference server per database (extensions, preload libraries, key settings).',
    [...new Set(databases.map((d) => d.name))].map((name) => `${PREFIX}_parity_differences${labels({ database: name })} ${parity.filter((p) => p.database === name).length}`)
  )
  family(
    'database_readable',
    '1 when drift could read the database, 0 when it could not.',
    databases.map((d) => `${PREFIX}_database_readable${labels({ database: d.name })} ${d.readable ? 1 : 0}`)
  )
  family('databases_unreadable', 'How many targeted databases could not be read.', [`${PREFIX}_databases_unreadable ${databases.filter((d) => !d.readable).length}`])
  family(
    'health',
    'The health output: 1 for the current state (healthy, degraded or unhealthy), 0 for the others.',
    HEALTH_STATES.map((state) => `${PREFIX}_health${labels({ state })} ${state === health ? 1 : 0}`)
  )
  family('last_check_timestamp_seconds', 'When this check ran, in seconds since the Unix epoch; alert when it stops advancing.', [
    `${PREFIX}_last_check_timestamp_seconds ${(checkedAt.getTime() / 1000).toFixed(3)}`
  ])
  return `${lines.join('\n')}\n# EOF\n`
}
