import type { ServerFacts } from './catalog.js'
import { CatalogCache, inspectDatabase } from './catalog.js'
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
  /** Statements sent for inspection in all, for the round-trip benchmark. */
  roundTrips: number
}

/**
 * Inspects and plans every database, each on a session of its own, at most `concurrency` at a
 * time. The first database is inspected alone because it also reads the server-wide facts
 * (available versions), which every other database shares. Each database is planned as soon
 * as it is inspected, so its raw facts are not kept: memory stays flat as the fleet grows.
 */
export async function makePlan(connect: Connector, options: PlanningOptions, log: Logger): Promise<PlanningResult> {
  const requestOf = (database: string): PlanRequest =>
    options.extensionsFor ? { ...options.request, extensions: options.extensionsFor(database) } : options.request
  let server: ServerFacts | undefined
  let roundTrips = 0
  const cache = new CatalogCache()
  const inspectAndPlan = (database: string): Promise<DatabasePlanResult> =>
    withSession(connect, { database, purpose: 'inspect' }, async (client) => {
      const request = requestOf(database)
      const targets = request.extensions.map((e) => e.name)
      const inspection = await inspectDatabase(client, { targets, longTransactionMs: options.longTransactionMs, cache }, !server)
      server ??= inspection.server
      roundTrips += inspection.roundTrips
      log.debug(`inspected ${database} in ${inspection.roundTrips} round trip(s)`)
      return planDatabase(server!, inspection.database, request, options.planner)
    })
  const [first, ...rest] = options.databases
  const results = [await inspectAndPlan(first), ...(await runPool(rest, options.concurrency, inspectAndPlan))] as DatabasePlanResult[]
  return { plan: assemblePlan(server!, results, options.request), server: server!, cache, roundTrips }
}
