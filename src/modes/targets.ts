import { selectDatabases } from '../core/fleet.js'
import type { PlanRequest } from '../core/plan.js'
import { makePlan, type PlanningResult } from '../core/planning.js'
import type { PlannerOptions } from '../core/planner.js'
import type { Inputs } from '../inputs.js'
import type { ModeContext } from './types.js'

/** The databases a mode works on: `databases` minus `exclude-databases`, or the database of the URL. */
export async function targetDatabases(context: ModeContext): Promise<string[]> {
  const { inputs, connect, target } = context
  return selectDatabases(connect, { patterns: inputs.databases, exclude: inputs.excludeDatabases }, target.database)
}

export function planRequest(inputs: Inputs): PlanRequest {
  return {
    extensions: inputs.extensions,
    allowDowngrade: inputs.allowDowngrade,
    installMissing: inputs.installMissing,
    stagedExtensions: inputs.stagedExtensions
  }
}

/** Inspects and plans every targeted database, as dry-run does. */
export async function planTargets(context: ModeContext, planner?: PlannerOptions): Promise<PlanningResult> {
  const { inputs, connect, log } = context
  const databases = await targetDatabases(context)
  return makePlan(
    connect,
    { databases, request: planRequest(inputs), longTransactionMs: inputs.longTransactionThreshold, concurrency: inputs.concurrency, planner },
    log
  )
}
