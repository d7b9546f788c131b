import type { ServerFacts } from './catalog.js'
import { CatalogCache, inspectDatabase, inspectServer } from './catalog.js'
import { withSession, type Connector } from './connection.js'
import { runPool } from './fleet.js'
import type { ExtensionRequest } from './extension-list.js'
import type { Logger } from './logger.js'
import type { Plan, PlanRequest } from './plan.js'
import { assemblePlan, planDatabase, type DatabasePlanResult, type PlannerOptions } from './planner.js'

export interface PlanningOptions {
  databases: string[]
  /** The options every database is planned with. */
  request: PlanRequest
  /** Per database, what it must reach, when that differs between databases (a manifest). */
  extensionsFor?: (database: string) => ExtensionRequest[]
  longTransactionMs: number
  concurrency: number
  planner?: PlannerOptions
}

export interface PlanningResult {
  plan: Plan
  server: ServerFacts
  /** Paths and member lists read while planning, for execute's re-inspections. */
  cache: CatalogCache
}

/**
 * Inspects and plans every database, each on a session of its own, at most `concurrency` at a
 * time. Each database is planned as soon as it is inspected, so its raw facts are not kept:
 * memory stays flat as the fleet grows.
 */
export async function makePlan(connect: Connector, options: PlanningOptions, log: Logger): Promise<PlanningResult> {
  const requestOf = (database: string): PlanRequest =>
    options.extensionsFor ? { ...options.request, extensions: options.extensionsFor(database) } : options.request
  // One database: the server-wide facts come in the same round trip. A fleet: they are read once,
  // on a session of their own, while the databases are being inspected.
  const single = options.databases.length === 1
  const serverFacts = single ? undefined : withSession(connect, { database: options.databases[0], purpose: 'inspect' }, inspectServer)
  serverFacts?.catch(() => undefined)
  const cache = new CatalogCache()
  const inspectAndPlan = (database: string): Promise<DatabasePlanResult & { server: ServerFacts }> =>
    withSession(connect, { database, purpose: 'inspect' }, async (client) => {
      const request = requestOf(database)
      const targets = request.extensions.map((e) => e.name)
      const inspection = await inspectDatabase(client, { targets, longTransactionMs: options.longTransactionMs, cache }, single)
      log.debug(`inspected ${database} in ${inspection.roundTrips} round trip(s)`)
      const server = inspection.server ?? (await serverFacts!)
      return { ...planDatabase(server, inspection.database, request, options.planner), server }
    })
  const results = (await runPool(options.databases, options.concurrency, inspectAndPlan)) as Array<DatabasePlanResult & { server: ServerFacts }>
  const server = results[0].server
  return { plan: assemblePlan(server, results, options.request), server, cache }
}
