import { CodedError } from '../core/errors.js'
import { runPool, selectDatabases } from '../core/fleet.js'
import { prefixedLogger, type Logger } from '../core/logger.js'
import type { ExtensionRequest } from '../core/extension-list.js'
import { databasePatterns, requestsFor } from '../core/manifest.js'
import type { PlanRequest } from '../core/plan.js'
import { makePlan, type PlanningResult } from '../core/planning.js'
import type { PlannerOptions } from '../core/planner.js'
import type { ModeContext } from './types.js'

/**
 * The databases a mode works on: `databases` minus `exclude-databases`; with neither, the
 * databases a manifest names, else the database of the URL. With a manifest, a database it asks
 * nothing of is left out: an empty request would otherwise mean "every extension behind".
 */
export async function targetDatabases(context: ModeContext): Promise<string[]> {
  const { inputs, connect, target, manifest } = context
  const patterns = inputs.databases.length > 0 ? inputs.databases : manifest ? databasePatterns(manifest) : []
  const selected = await selectDatabases(connect, { patterns, exclude: inputs.excludeDatabases }, target.database)
  return manifest ? selected.filter((database) => requestsFor(manifest, database).length > 0) : selected
}

/** What a database is asked to reach: the manifest's entries for it, or the `extensions` input. */
export function requestedExtensions(context: ModeContext, database: string): ExtensionRequest[] {
  return context.manifest ? requestsFor(context.manifest, database) : context.inputs.extensions
}

/** The options every database is planned with; with a manifest, the extensions vary per database. */
export function planRequest(context: ModeContext): PlanRequest {
  const { inputs, manifest } = context
  return {
    extensions: manifest ? [] : inputs.extensions,
    allowDowngrade: inputs.allowDowngrade,
    installMissing: inputs.installMissing,
    stagedExtensions: inputs.stagedExtensions,
    ...(inputs.firstStatementExtensions.length > 0 ? { firstStatementExtensions: inputs.firstStatementExtensions } : {}),
    ...(manifest ? { manifest: manifest.file } : {})
  }
}

/** Inspects and plans every targeted database, as dry-run does. */
export async function planTargets(context: ModeContext, planner?: PlannerOptions): Promise<PlanningResult> {
  const { inputs, connect, log } = context
  const databases = await targetDatabases(context)
  if (databases.length === 0) {
    throw new CodedError('INVALID_INPUT', `input "manifest": ${context.manifest?.file} asks nothing of the selected databases`)
  }
  return makePlan(
    connect,
    {
      databases,
      request: planRequest(context),
      extensionsFor: context.manifest ? (database) => requestedExtensions(context, database) : undefined,
      longTransactionMs: inputs.longTransactionThreshold,
      concurrency: inputs.concurrency,
      planner
    },
    log
  )
}

/**
 * Runs `work` per database through the bounded pool. One at a time, each database gets a log
 * group; side by side, groups would interleave, so every line is prefixed with its database.
 */
export function eachDatabase<R>(
  context: ModeContext,
  databases: readonly string[],
  title: (database: string) => string,
  work: (database: string, log: Logger) => Promise<R>,
  mayStart?: () => boolean
): Promise<Array<R | undefined>> {
  const { log, inputs } = context
  const sideBySide = databases.length > 1 && inputs.concurrency > 1
  return runPool(
    databases,
    inputs.concurrency,
    (database) => (sideBySide ? work(database, prefixedLogger(log, database)) : log.group(title(database), () => work(database, log))),
    mayStart
  )
}
