import { beforeAll, describe, expect, it } from '@jest/globals'
import { readFileSync } from 'node:fs'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { driftMetrics, escapeLabel, SERIES_CLASSES } from '../src/core/drift-metrics.js'
import { classifyDrift, driftHealth, entryHealth, type DriftEntry } from '../src/core/drift.js'
import type { DriftReport } from '../src/modes/drift.js'
import { runAction } from './harness/action.js'
import { temporaryDirectory } from './harness/postgres.js'
import { runInProcess, testCluster, uniqueName } from './helpers.js'

/*
 * drift for monitoring: the health output and the metrics file, checked with a real parser of the
 * exposition format (the one node_exporter's textfile collector and the Pushgateway speak).
 */

interface Family {
  name: string
  type: string
  help: string
  metrics: Array<{ value: string; labels?: Record<string, string> }>
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/

/** Parses the file and checks what the lenient parser lets through: names, types, values, the end. */
function parseExposition(text: string): Family[] {
  expect(text.endsWith('\n# EOF\n')).toBe(true)
  expect(text.split('\n# EOF\n')[0]).not.toContain('# EOF')
  const families = parsePrometheusTextFormat(text) as Family[]
  for (const family of families) {
    // A sample whose name is not its declared family lands in an UNTYPED family of its own.
    expect({ name: family.name, type: family.type }).toEqual({ name: family.name, type: 'GAUGE' })
    expect(family.name).toMatch(METRIC_NAME)
    expect(family.help.length).toBeGreaterThan(0)
    for (const sample of family.metrics) {
      expect(Number.isFinite(Number(sample.value))).toBe(true)
      for (const name of Object.keys(sample.labels ?? {})) expect(name).toMatch(/^[a-zA-Z_][a-zA-Z0-9_]*$/)
    }
  }
  const names = families.map((f) => f.name)
  expect(new Set(names).size).toBe(names.length)
  return families
}

const family = (families: Family[], name: string) => {
  const found = families.find((f) => f.name === `pg_extension_upgrade_${name}`)
  if (!found) throw new Error(`no family pg_extension_upgrade_${name}`)
  return found
}

const sample = (f: Family, labels: Record<string, string>) => f.metrics.filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))

const available = (defaultVersion: string, versions: string[]) => ({ name: 'x', defaultVersion, versions: versions.map((version) => ({ version })) }) as never

describe('health', () => {
  const entry = (over: Partial<DriftEntry>): DriftEntry => ({
    database: 'd',
    extension: 'hstore',
    catalog: '1.8',
    control: '1.8',
    target: '1.8',
    library: null,
    class: 'ok',
    message: '',
    ...over
  })

  it.each([
    ['ok', entry({}), 'healthy'],
    ['catalog behind: an ALTER is due', entry({ catalog: '1.4', class: 'catalog_behind' }), 'degraded'],
    ['restart required: a restart is due', entry({ library: '1.7', class: 'restart_required' }), 'degraded'],
    ['catalog ahead of a pinned target, shipped', entry({ catalog: '1.8', target: '1.6', class: 'catalog_ahead' }), 'degraded'],
    ['catalog ahead of anything shipped', entry({ catalog: '1.9', class: 'catalog_ahead' }), 'unhealthy'],
    ['library behind the catalog', entry({ extension: 'postgis', catalog: '3.4.2', control: '3.4.2', target: '3.4.2', library: '3.4.0', class: 'catalog_ahead' }), 'unhealthy'],
    ['control file gone', entry({ control: null, target: null, class: 'unavailable' }), 'unhealthy']
  ])('%s → %s', (_label, e, expected) => {
    expect(entryHealth(e)).toBe(expected)
  })

  it('classifyDrift and entryHealth agree on a rolled-back binary', () => {
    const e = classifyDrift({ database: 'd', extension: 'hstore', catalog: '1.9', available: available('1.8', ['1.7', '1.8']), explicitTarget: undefined, library: null })
    expect(e.class).toBe('catalog_ahead')
    expect(entryHealth(e)).toBe('unhealthy')
  })

  it('an unreadable database makes the whole check unhealthy; skew or parity alone degrade it', () => {
    expect(driftHealth([entry({})], 0, 0)).toBe('healthy')
    expect(driftHealth([entry({})], 1, 0)).toBe('degraded')
    expect(driftHealth([entry({})], 0, 1)).toBe('unhealthy')
    expect(driftHealth([], 0, 0)).toBe('healthy')
  })
})

describe('the metrics file format', () => {
  const awkward = 'tenant "a"\\b\nc'
  const entries: DriftEntry[] = [
    { database: awkward, extension: 'hstore', catalog: '1.4', control: '1.8', target: '1.8', library: null, class: 'catalog_behind', message: '' },
    { database: 'plain', extension: 'hstore', catalog: '1.8', control: '1.8', target: '1.8', library: null, class: 'ok', message: '' },
    { database: 'plain', extension: 'postgis', catalog: '3.4.0', control: '3.4.2', target: '3.4.2', library: '3.4.0', class: 'restart_required', message: '' }
  ]
  const text = driftMetrics({
    entries,
    fleet: [{ extension: 'hstore', class: 'fleet_skew', versions: { '1.4': [awkward], '1.8': ['plain'] }, message: '' }],
    parity: [],
    databases: [
      { name: awkward, readable: true },
      { name: 'plain', readable: true },
      { name: 'locked', readable: false }
    ],
    health: 'unhealthy',
    checkedAt: new Date('2026-01-02T03:04:05.678Z')
  })

  it('escapes label values as the format requires', () => {
    expect(escapeLabel(awkward)).toBe('tenant \\"a\\"\\\\b\\nc')
    expect(text).toContain('database="tenant \\"a\\"\\\\b\\nc"')
  })

  it('parses, and every value and label reads back exactly', () => {
    const families = parseExposition(text)
    const info = family(families, 'extension_info')
    expect(info.metrics).toHaveLength(3)
    expect(sample(info, { database: awkward, extension: 'hstore' })).toEqual([
      { value: '1', labels: { database: awkward, extension: 'hstore', catalog_version: '1.4', default_version: '1.8', library_version: '' } }
    ])
    expect(sample(info, { extension: 'postgis' })[0].labels).toMatchObject({ catalog_version: '3.4.0', default_version: '3.4.2', library_version: '3.4.0' })

    const drift = family(families, 'drift')
    expect(drift.metrics).toHaveLength(entries.length * SERIES_CLASSES.length)
    const on = (database: string, extension: string) =>
      sample(drift, { database, extension })
        .filter((m) => m.value === '1')
        .map((m) => m.labels?.class)
        .sort()
    expect(on(awkward, 'hstore')).toEqual(['catalog_behind', 'fleet_skew'])
    expect(on('plain', 'hstore')).toEqual(['fleet_skew', 'ok'])
    expect(on('plain', 'postgis')).toEqual(['restart_required'])

    expect(family(families, 'databases_unreadable').metrics).toEqual([{ value: '1' }])
    expect(sample(family(families, 'database_readable'), { database: 'locked' })[0].value).toBe('0')
    expect(family(families, 'health').metrics.map((m) => [m.labels?.state, m.value])).toEqual([
      ['healthy', '0'],
      ['degraded', '0'],
      ['unhealthy', '1']
    ])
    expect(Number(family(families, 'last_check_timestamp_seconds').metrics[0].value)).toBe(Date.parse('2026-01-02T03:04:05.678Z') / 1000)
  })

  it('the parser used here rejects a label value that is not escaped (it is a real check)', () => {
    expect(() => parsePrometheusTextFormat('# TYPE a gauge\na{database="x"y"} 1\n')).toThrow()
  })
})

const cluster = await testCluster()

describe('drift against a real cluster', () => {
  const current = uniqueName('pgxu_cli_current')
  const behind = uniqueName('pgxu_cli_behind')
  const locked = uniqueName('pgxu_cli_locked')
  const monitor = uniqueName('pgxu_cli_monitor')
  const password = 'monitor pw'

  beforeAll(async () => {
    await cluster.createDatabase(current, { hstore: '1.8' })
    await cluster.createDatabase(behind, { hstore: '1.4' })
    await cluster.createDatabase(locked, { hstore: '1.8' })
    const client = await cluster.connect('postgres')
    try {
      await client.query(`CREATE ROLE ${client.escapeIdentifier(monitor)} LOGIN PASSWORD ${client.escapeLiteral(password)}`)
      await client.query(`REVOKE CONNECT ON DATABASE ${client.escapeIdentifier(locked)} FROM PUBLIC`)
    } finally {
      await client.end()
    }
  })

  const drift = async (databases: string[], user?: string) => {
    const runnerTemp = temporaryDirectory('pgxu-cli-drift-')
    const url = user ? cluster.url(current, user, password) : cluster.url(current)
    const result = await runInProcess({ mode: 'drift', 'database-url': url, databases: databases.join(','), extensions: 'hstore' }, { RUNNER_TEMP: runnerTemp })
    return { result, runnerTemp }
  }

  it('healthy: every database at its default version', async () => {
    const { result, runnerTemp } = await drift([current])
    expect(result.status).toBe('no_drift')
    expect(result.outputs?.health).toBe('healthy')
    const file = result.outputs?.['metrics-file'] as string
    expect(file.startsWith(runnerTemp)).toBe(true)
    const families = parseExposition(readFileSync(file, 'utf8'))
    expect(sample(family(families, 'drift'), { database: current, class: 'ok' })[0].value).toBe('1')
    expect(sample(family(families, 'health'), { state: 'healthy' })[0].value).toBe('1')
  })

  it('degraded: a database behind needs an ALTER, and the fleet is skewed', async () => {
    const { result } = await drift([current, behind])
    expect(result.status).toBe('drift_detected')
    expect(result.outputs?.health).toBe('degraded')
    const families = parseExposition(readFileSync(result.outputs?.['metrics-file'] as string, 'utf8'))
    expect(sample(family(families, 'extension_info'), { database: behind })[0].labels).toMatchObject({ extension: 'hstore', catalog_version: '1.4', default_version: '1.8' })
    expect(sample(family(families, 'drift'), { database: behind, class: 'catalog_behind' })[0].value).toBe('1')
    expect(sample(family(families, 'drift'), { database: current, class: 'fleet_skew' })[0].value).toBe('1')
  })

  it('unhealthy: a database the role cannot connect to is reported, the others are still checked', async () => {
    const { result } = await drift([current, behind, locked], monitor)
    expect(result.status).toBe('failed')
    expect(result.outputs?.health).toBe('unhealthy')
    expect(result.errors.map((e) => [e.code, e.database])).toEqual([['DATABASE_UNREADABLE', locked], ...result.errors.slice(1).map((e) => [e.code, e.database])])
    const report = result.report as DriftReport
    expect(report.unreadable.map((u) => u.database)).toEqual([locked])
    expect(report.databases.find((d) => d.name === behind)?.extensions[0].class).toBe('catalog_behind')
    const families = parseExposition(readFileSync(result.outputs?.['metrics-file'] as string, 'utf8'))
    expect(family(families, 'databases_unreadable').metrics[0].value).toBe('1')
    expect(sample(family(families, 'database_readable'), { database: locked })[0].value).toBe('0')
    expect(sample(family(families, 'database_readable'), { database: behind })[0].value).toBe('1')
  })

  it('unhealthy when the server cannot be reached: the metrics file says so for the database of the URL', async () => {
    const runnerTemp = temporaryDirectory('pgxu-cli-drift-')
    const result = await runInProcess({ mode: 'drift', 'database-url': 'postgresql://nobody@127.0.0.1:1/postgres', 'connect-timeout': '2s' }, { RUNNER_TEMP: runnerTemp })
    expect(result.status).toBe('failed')
    expect(result.outputs?.health).toBe('unhealthy')
    const families = parseExposition(readFileSync(result.outputs?.['metrics-file'] as string, 'utf8'))
    expect(sample(family(families, 'database_readable'), { database: 'postgres' })[0].value).toBe('0')
    expect(family(families, 'extension_info').metrics).toEqual([])
  })

  it('unhealthy, with no metrics file, when not even the list of databases can be read', async () => {
    const result = await runInProcess({ mode: 'drift', 'database-url': 'postgresql://nobody@127.0.0.1:1/postgres', 'connect-timeout': '2s', databases: 'all' })
    expect(result.status).toBe('failed')
    expect(result.outputs).toEqual({ health: 'unhealthy' })
  })

  it('the action bundle sets the health and metrics-file outputs', async () => {
    const run = await runAction({ mode: 'drift', 'database-url': cluster.url(behind), extensions: 'hstore', 'fail-on-drift': 'false' })
    expect(run.code).toBe(0)
    expect(run.outputs.health).toBe('degraded')
    const families = parseExposition(readFileSync(run.outputs['metrics-file'], 'utf8'))
    expect(sample(family(families, 'drift'), { database: behind, class: 'catalog_behind' })[0].value).toBe('1')
  })
})
