import { redact } from '../core/connection.js'
import { planTargets } from './targets.js'
import type { ModeContext, ModeResult } from './types.js'

/**
 * dry-run: inspect every targeted database in a read-only transaction, plan each update path,
 * run every pre-flight check, and say whether the upgrade may proceed. Never changes anything.
 */
export async function dryRun(context: ModeContext): Promise<ModeResult> {
  const { plan } = await planTargets(context)
  const blocked = plan.status === 'dry_run_blocked'
  return {
    mode: 'dry-run',
    status: plan.status,
    changed: false,
    plan,
    errors: plan.blockers,
    warnings: plan.warnings,
    error: blocked ? `${plan.blockers.length} blocker(s): ${plan.blockers[0].code}: ${plan.blockers[0].message}` : undefined,
    target: redact(context.target)
  }
}
