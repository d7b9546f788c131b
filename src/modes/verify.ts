import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { redact } from '../core/connection.js'
import { inputFileRoots, readInputFile } from '../core/input-files.js'
import type { Plan } from '../core/plan.js'
import { loadPlan } from '../core/plan-input.js'
import { splitStatements, type Probe } from '../core/sql-split.js'
import { CHECK_CODES, verifyDatabase, type Expectation, type VerifyDatabaseReport } from '../core/verifier.js'
import type { Finding } from '../core/plan.js'
import type { ExtensionRequest } from '../core/extension-list.js'
import { eachDatabase, requestedExtensions, targetDatabases } from './targets.js'
import type { ModeContext, ModeResult, Status } from './types.js'

export interface VerifyReport {
  schemaVersion: 1
  mode: 'verify'
  status: Status
  checkedAt: string
  counts: { passed: number; failed: number; skipped: number }
  databases: VerifyDatabaseReport[]
}

/**
 * `verify-sql` is inline SQL, or the path of a file holding it: one line naming an existing file
 * or ending in .sql. The file must be inside the workspace or the runner's temp directory.
 */
export function readProbes(input: string, env: NodeJS.ProcessEnv): Probe[] {
  const text = input.trim()
  if (text.length === 0) return []
  const isPath = !/[\r\n]/.test(text) && (/^\S+\.sql$/i.test(text) || existsSync(resolve(inputFileRoots(env)[0], text)))
  return splitStatements(isPath ? readInputFile('verify-sql', text, env) : text)
}

/** Expectations per database: from the plan, from `extensions`, or every installed extension at its default. */
export function expectationsFor(requested: ExtensionRequest[], plan: Plan | undefined, database: string): Expectation[] | null {
  if (plan) {
    const planned = plan.databases.find((d) => d.name === database)?.extensions ?? []
    return planned
      .filter((e) => e.action !== 'blocked' && e.to !== null)
      .map((e) => ({ name: e.name, version: e.to, drift: e.defaultTarget, membersBefore: e.from ? plan.members[`${e.name}@${e.from}`] : undefined }))
  }
  if (requested.length > 0) {
    return requested.map((r) => ({ name: r.name, version: r.version ?? null, drift: r.version === undefined }))
  }
  return null
}

export function verifyFindings(report: VerifyDatabaseReport): Finding[] {
  return report.checks
    .filter((c) => !c.ok)
    .map((c) => ({
      code: CHECK_CODES[c.check],
      database: report.name,
      extension: c.extension,
      message: `${c.check}: ${c.message}${c.details ? ` — ${c.details.slice(0, 3).join('; ')}` : ''}`
    }))
}

/**
 * verify: prove the result, read-only — versions, C functions resolving in their libraries,
 * no dangling members, valid dependent indexes and resolvable views and functions, the user's
 * probes, and no drift behind the control-file default. Also a health gate on its own.
 */
export async function verify(context: ModeContext): Promise<ModeResult> {
  const plan = context.inputs.plan ? loadPlan(context.inputs.plan, context.env) : undefined
  const report = await verifyTargets(context, plan)
  return verifyResult(context, report)
}

const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max)}… (${text.length - max} more characters)` : text)

/**
 * A check quotes at most the failing statement, and that truncated: a probe (or the server's
 * error echoing it) can be as long as the verify-sql input.
 */
function clipChecks(report: VerifyDatabaseReport): VerifyDatabaseReport {
  return { ...report, checks: report.checks.map((check) => ({ ...check, message: clip(check.message, 1000), ...(check.details ? { details: check.details.map((detail) => clip(detail, 500)) } : {}) })) }
}

/** Verifies the plan's databases (or the targeted ones), each read-only on a session of its own. */
export async function verifyTargets(context: ModeContext, plan: Plan | undefined): Promise<VerifyReport> {
  const { inputs, connect } = context
  const probes = readProbes(inputs.verifySql, context.env)
  const databases = plan ? plan.databases.map((d) => d.name) : await targetDatabases(context)
  const reports = (await eachDatabase(context, databases, (database) => `verify ${database}`, async (database, dbLog) => {
    const report = clipChecks(await verifyDatabase(connect, database, { expectations: expectationsFor(requestedExtensions(context, database), plan, database), probes, statementTimeoutMs: inputs.statementTimeout }))
    for (const check of report.checks) dbLog.info(`${check.ok ? (check.skipped ? '–' : '✓') : '✗'} ${check.check}${check.extension ? ` ${check.extension}` : ''}: ${check.message}`)
    return report
  })) as VerifyDatabaseReport[]
  const checks = reports.flatMap((r) => r.checks)
  return {
    schemaVersion: 1,
    mode: 'verify',
    status: reports.every((r) => r.ok) ? 'verified' : 'verify_failed',
    checkedAt: new Date().toISOString(),
    counts: {
      passed: checks.filter((c) => c.ok && !c.skipped).length,
      failed: checks.filter((c) => !c.ok).length,
      skipped: checks.filter((c) => c.skipped).length
    },
    databases: reports
  }
}

export function verifyResult(context: ModeContext, report: VerifyReport): ModeResult {
  const errors = report.databases.flatMap(verifyFindings)
  return {
    mode: 'verify',
    status: report.status,
    changed: false,
    report,
    errors,
    warnings: [],
    error: errors.length > 0 ? `${errors.length} check(s) failed; first: ${errors[0].code}: ${errors[0].message}` : undefined,
    target: redact(context.target)
  }
}
