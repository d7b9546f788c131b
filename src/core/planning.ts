import type { DatabaseFacts, ServerFacts } from './catalog.js'
import { inspectDatabase } from './catalog.js'
import { closeQuietly, type Connector } from './connection.js'
import type { Logger } from './logger.js'
import type { Plan, PlanRequest } from './plan.js'
import { buildPlan, type PlannerOptions } from './planner.js'

export interface PlanningOptions {
  databases: string[]
  request: PlanRequest
  longTransactionMs: number
  planner?: PlannerOptions
}

export interface Inspected {
  server: ServerFacts
  databases: DatabaseFacts[]
  roundTrips: number
}

/** Inspects each database on a session of its own; server-wide facts are read once, with the first. */
export async function inspectDatabases(connect: Connector, options: PlanningOptions, log: Logger): Promise<Inspected> {
  const targets = options.request.extensions.map((e) => e.name)
  let server: ServerFacts | undefined
  let roundTrips = 0
  const databases: DatabaseFacts[] = []
  for (const name of options.databases) {
    const client = await connect({ database: name, purpose: 'inspect' })
    try {
      const inspection = await inspectDatabase(client, { targets, longTransactionMs: options.longTransactionMs }, !server)
      server ??= inspection.server
      roundTrips += inspection.roundTrips
      databases.push(inspection.database)
      log.debug(`inspected ${name} in ${inspection.roundTrips} round trip(s)`)
    } finally {
      await closeQuietly(client)
    }
  }
  if (!server) throw new Error('no database to inspect')
  return { server, databases, roundTrips }
}

export async function makePlan(connect: Connector, options: PlanningOptions, log: Logger): Promise<{ plan: Plan; inspected: Inspected }> {
  const inspected = await inspectDatabases(connect, options, log)
  return { plan: buildPlan({ server: inspected.server, databases: inspected.databases, request: options.request, options: options.planner }), inspected }
}
