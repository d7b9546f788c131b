import { mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspectServer, type ServerFacts } from '../core/catalog.js'
import { redact, resolveTarget, makeConnector, withSession } from '../core/connection.js'
import {
  classifyDrift,
  compareParity,
  driftHealth,
  fleetSkew,
  readDatabaseExtensions,
  readParitySettings,
  type DriftEntry,
  type FleetSkew,
  type Health,
  type ParityDifference,
  type ParitySide
} from '../core/drift.js'
import { driftMetrics } from '../core/drift-metrics.js'
import { CodedError } from '../core/errors.js'
import { InterruptedError, interruptedBy } from '../core/interrupt.js'
import { describePgError } from '../core/pg-error.js'
import { runPool } from '../core/fleet.js'
import type { Finding } from '../core/plan.js'
import { requestedExtensions, targetDatabases } from './targets.js'
import type { ModeContext, ModeResult, Status } from './types.js'

export interface DriftReport {
  schemaVersion: 1
  mode: 'drift'
  status: Status
  health: Health
  checkedAt: string
  counts: Record<string, number>
  databases: Array<{ name: string; extensions: DriftEntry[] }>
  fleet: FleetSkew[]
  parity: ParityDifference[]
  /** Databases that could not be read: monitoring sees them as unhealthy instead of losing the whole check. */
  unreadable: Array<{ database: string; code: string; message: string }>
}

/** The OpenMetrics file of one check, under RUNNER_TEMP (or the system temp directory). */
function writeMetricsFile(text: string, env: NodeJS.ProcessEnv): string {
  const dir = join(env.RUNNER_TEMP || tmpdir(), 'pg-extension-upgrade', `drift-${Date.now()}-${process.pid}`)
  mkdirSync(dir, { recursive: true })
  const path = join(dir, 'metrics.prom')
  writeFileSync(path, text)
  return path
}

/** The reference server's side of a parity check (its database of reference-database-url). */
async function readReference(context: ModeContext): Promise<ParitySide | undefined> {
  const url = context.inputs.referenceDatabaseUrl
  if (!url) return undefined
  const reference = resolveTarget(url, {}, 'reference-database-url')
  const connect = makeConnector(reference, context.inputs.connectTimeout)
  return withSession(connect, { purpose: 'drift' }, async (client) => {
    const { installed } = await readDatabaseExtensions(client)
    return { extensions: installed, ...(await readParitySettings(client)) }
  })
}

/**
 * drift: for every targeted database and extension, the catalog version, the control-file
 * default and the loaded library version (where the extension can tell), classified against
 * the target and the installed package — not against the other databases. Read-only: a
 * monitoring role is enough.
 */
export async function drift(context: ModeContext): Promise<ModeResult> {
  const { inputs, connect, log } = context
  const databases = await targetDatabases(context)
  const reference = await readReference(context)
  let server: ServerFacts | undefined
  let targetSettings: Pick<ParitySide, 'preload' | 'settings'> | undefined

  const readOne = (database: string) =>
    withSession(connect, { database, purpose: 'drift' }, async (client) => {
      const requested = requestedExtensions(context, database)
      const names = new Set(requested.map((e) => e.name))
      const explicit = new Map(requested.filter((e) => e.version).map((e) => [e.name, e.version as string]))
      server ??= await inspectServer(client)
      if (reference) targetSettings ??= await readParitySettings(client)
      const { installed, libraries } = await readDatabaseExtensions(client)
      const entries = installed
        .filter((e) => names.size === 0 || names.has(e.name))
        .map((e) =>
          classifyDrift({
            database,
            extension: e.name,
            catalog: e.version,
            available: server!.available[e.name],
            explicitTarget: explicit.get(e.name),
            library: libraries[e.name] ?? null
          })
        )
      for (const name of names) {
        if (!installed.some((e) => e.name === name)) log.info(`${database}: ${name} is not installed`)
      }
      const parity = reference && targetSettings ? compareParity(database, { extensions: installed, ...targetSettings }, reference) : []
      return { name: database, extensions: entries, parity, unreadable: undefined }
    })

  // One database that cannot be read is a finding, not the end of the check: the others still count.
  const checkOne = async (database: string) => {
    try {
      return await readOne(database)
    } catch (error) {
      if (error instanceof InterruptedError || interruptedBy()) throw error
      const code = error instanceof CodedError ? error.code : 'DATABASE_UNREADABLE'
      const message = error instanceof CodedError ? error.message : describePgError(error)
      log.warn(`${database}: cannot be read: ${message}`)
      return { name: database, extensions: [] as DriftEntry[], parity: [] as ParityDifference[], unreadable: { database, code, message } }
    }
  }

  const [first, ...rest] = databases
  const results = [await checkOne(first), ...((await runPool(rest, inputs.concurrency, checkOne)) as Array<Awaited<ReturnType<typeof checkOne>>>)]
  const entries = results.flatMap((r) => r.extensions)
  const fleet = fleetSkew(entries)
  const parity = results.flatMap((r) => r.parity)
  const unreadable = results.flatMap((r) => (r.unreadable ? [r.unreadable] : []))
  const drifted = entries.filter((e) => e.class !== 'ok')
  const found: Status = drifted.length + fleet.length + parity.length > 0 ? 'drift_detected' : 'no_drift'
  // A check that could not read every database is no verdict: failed, whatever fail-on-drift says.
  const status: Status = unreadable.length > 0 ? 'failed' : found
  const health = driftHealth(entries, fleet.length + parity.length, unreadable.length)
  const checkedAt = new Date()
  const counts: Record<string, number> = { databases: databases.length, checked: entries.length, fleet_skew: fleet.length, parity: parity.length, unreadable: unreadable.length }
  for (const e of entries) counts[e.class] = (counts[e.class] ?? 0) + 1
  const report: DriftReport = {
    schemaVersion: 1,
    mode: 'drift',
    status,
    health,
    checkedAt: checkedAt.toISOString(),
    counts,
    databases: results.map(({ name, extensions }) => ({ name, extensions })),
    fleet,
    parity,
    unreadable
  }
  const metrics = driftMetrics({ entries, fleet, parity, databases: results.map((r) => ({ name: r.name, readable: !r.unreadable })), health, checkedAt })
  const unreadableFindings: Finding[] = unreadable.map((u) => ({ code: 'DATABASE_UNREADABLE' as const, database: u.database, message: `${u.code}: ${u.message}` }))
  const findings: Finding[] = [
    ...drifted.map((e) => ({ code: 'DRIFT' as const, database: e.database, extension: e.extension, message: `${e.class}: ${e.message}` })),
    ...fleet.map((f) => ({ code: 'DRIFT' as const, extension: f.extension, message: `fleet_skew: ${f.message}` })),
    ...parity.map((p) => ({ code: 'DRIFT' as const, database: p.database, message: `parity: ${p.message}` }))
  ]
  return {
    mode: 'drift',
    status,
    changed: false,
    report,
    errors: [...unreadableFindings, ...(inputs.failOnDrift ? findings : [])],
    warnings: inputs.failOnDrift ? [] : findings,
    fails: status === 'failed' || (status === 'drift_detected' && inputs.failOnDrift),
    error:
      unreadable.length > 0
        ? `${unreadable.length} database(s) could not be read; first: ${unreadable[0].database}: ${unreadable[0].code}: ${unreadable[0].message}`
        : findings.length > 0
          ? `${findings.length} drift finding(s); first: ${findings[0].message}`
          : undefined,
    target: redact(context.target),
    outputs: {
      drift: JSON.stringify({ status, health, databases: report.databases, fleet, parity, unreadable }),
      health,
      'metrics-file': writeMetricsFile(metrics, context.env)
    }
  }
}
