import { statSync } from 'node:fs'
import { z } from 'zod'
import { digestProblem } from './digest.js'
import { CodedError } from './errors.js'
import { readInputFile } from './input-files.js'
import { fingerprintPlan, isChange, type DatabasePlan, type Plan, type PlannedExtension } from './plan.js'

const extensionSchema = z.object({
  name: z.string(),
  from: z.string().nullable(),
  to: z.string().nullable(),
  path: z.array(z.string()),
  action: z.enum(['update', 'install', 'none', 'blocked']),
  defaultTarget: z.boolean(),
  order: z.number(),
  schema: z.string().nullable(),
  requires: z.array(z.string())
})

/** The parts of a plan that execute and verify rely on; the rest passes through untouched. */
const planSchema = z.looseObject({
  schemaVersion: z.literal(1),
  status: z.enum(['dry_run_approved', 'dry_run_blocked', 'nothing_to_do']),
  request: z.object({
    extensions: z.array(z.object({ name: z.string(), version: z.string().optional() })),
    allowDowngrade: z.boolean(),
    installMissing: z.boolean(),
    stagedExtensions: z.array(z.string()),
    firstStatementExtensions: z.array(z.string()).optional(),
    manifest: z.string().optional()
  }),
  databases: z.array(
    z.looseObject({ name: z.string(), fingerprint: z.string(), unplanned: z.array(z.string()), extensions: z.array(z.looseObject(extensionSchema.shape)) })
  ),
  blockers: z.array(z.looseObject({ code: z.string(), message: z.string() })),
  members: z.record(z.string(), z.array(z.string())).optional(),
  fingerprint: z.string(),
  truncated: z.looseObject({ planFile: z.string(), reason: z.string() }).optional(),
  digest: z.string().optional()
})

const invalid = (message: string) => new CodedError('INVALID_INPUT', `input "plan": ${message}`)

/** The CLI's `dry-run --json` prints {status, changed, plan, …}: the plan is its `plan`. */
function unwrapCliJson(value: unknown): unknown {
  const wrapper = value as { schemaVersion?: unknown; plan?: unknown } | null
  return wrapper && typeof wrapper === 'object' && wrapper.schemaVersion === undefined && typeof wrapper.plan === 'object' ? wrapper.plan : value
}

function parsePlan(json: string, where: string): { plan: Plan; raw: unknown } {
  let raw: unknown
  try {
    raw = unwrapCliJson(JSON.parse(json))
  } catch {
    throw invalid(`${where} is not valid JSON`)
  }
  const parsed = planSchema.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw invalid(`${where} is not a dry-run plan (schema version 1): ${issue.path.join('.') || 'plan'} ${issue.message}`)
  }
  return { plan: parsed.data as unknown as Plan, raw }
}

/** Where an entry contradicts itself: its action against its from, to and path. */
function entryProblem(entry: PlannedExtension): string | undefined {
  const path = entry.path.join(' → ') || '(empty)'
  if (entry.action === 'update' && (entry.from === null || entry.from === entry.to || entry.path[0] !== entry.from || entry.path.at(-1) !== entry.to)) {
    return `action update from ${entry.from} to ${entry.to} does not match its path ${path}`
  }
  if (entry.action === 'install' && (entry.from !== null || entry.path.length !== 1 || entry.path[0] !== entry.to)) return `action install of ${entry.to} does not match from ${entry.from} and path ${path}`
  if (entry.action === 'none' && entry.from !== entry.to) return `action none, yet from ${entry.from} differs from to ${entry.to}`
  return undefined
}

/** Where an entry's target contradicts the request it was planned from (with a manifest, the request is per database and not in the plan). */
function requestProblem(plan: Plan, entry: PlannedExtension): string | undefined {
  if (plan.request.extensions.length === 0 || entry.requiredBy) return undefined
  const asked = plan.request.extensions.find((e) => e.name === entry.name)
  if (!asked) return 'the request does not name it'
  if (asked.version === undefined && !entry.defaultTarget) return `the request asks for the default version, the entry says to ${entry.to}`
  if (asked.version !== undefined && (asked.version !== entry.to || entry.defaultTarget)) return `the request asks for ${asked.version}, the entry says to ${entry.to}`
  return undefined
}

/**
 * Checks a full plan says what the dry-run decided: its fingerprint is that of its databases, its
 * status follows from its blockers and entries, every entry is coherent, and its digest matches
 * its content. Each named check runs before the digest so that the message says what changed.
 */
export function planProblems(plan: Plan, raw: unknown): string[] {
  const problems: string[] = []
  if (plan.fingerprint !== fingerprintPlan(plan.databases)) problems.push(`fingerprint ${plan.fingerprint} is not the fingerprint of its databases`)
  const entries = plan.databases.flatMap((database: DatabasePlan) => database.extensions.map((entry) => ({ database: database.name, entry })))
  const blockedEntries = entries.filter(({ entry }) => entry.action === 'blocked')
  const expected = plan.blockers.length > 0 || blockedEntries.length > 0 ? 'dry_run_blocked' : entries.some(({ entry }) => isChange(entry)) ? 'dry_run_approved' : 'nothing_to_do'
  if (plan.status !== expected) {
    problems.push(`status is ${plan.status}, but with ${plan.blockers.length} blocker(s), ${blockedEntries.length} blocked entr${blockedEntries.length === 1 ? 'y' : 'ies'} and its entries it is ${expected}`)
  }
  if (plan.status === 'dry_run_blocked' && plan.blockers.length === 0) problems.push('status is dry_run_blocked but it lists no blocker')
  for (const { database, entry } of entries) {
    const problem = entryProblem(entry) ?? requestProblem(plan, entry)
    if (problem) problems.push(`${database}: ${entry.name}: ${problem}`)
  }
  for (const database of plan.databases) {
    for (const asked of plan.request.extensions) {
      if (!database.extensions.some((e) => e.name === asked.name)) problems.push(`${database.name}: the request names ${asked.name}, which has no entry`)
    }
  }
  const tampered = digestProblem(raw)
  if (tampered) problems.push(tampered)
  return problems
}

/**
 * Reads the `plan` input: the JSON a dry-run wrote, or the path of its plan file. A compacted plan
 * (`truncated`, from a step output too large for GitHub) is followed to its plan file, one level
 * only. The full plan must pass `planProblems`; anything else is INVALID_INPUT naming the input.
 * A file (the input or a compacted plan's planFile) must be inside the workspace or RUNNER_TEMP.
 */
export function loadPlan(input: string, env: NodeJS.ProcessEnv = process.env): Plan {
  const text = input.trim()
  const inline = text.startsWith('{')
  if (!inline && !existsQuietly(text)) {
    throw invalid('must be the JSON a dry-run produced (steps.<id>.outputs.plan) or the path of its plan file (plan-file); neither was found')
  }
  const { plan, raw } = parsePlan(inline ? text : readInputFile('plan', text, env), inline ? 'the value' : text)
  if (!plan.truncated) return checked(plan, raw, inline ? 'the plan' : text)
  const file = plan.truncated.planFile
  if (!existsQuietly(file)) {
    throw invalid(`this is the compacted plan (${plan.truncated.reason}) and its file ${file} is not on this machine; pass the plan file instead`)
  }
  const full = parsePlan(readInputFile('plan', file, env), file)
  if (full.plan.truncated) throw invalid(`the compacted plan points at ${file}, which is itself a compacted plan (pointing at ${full.plan.truncated.planFile}); give the full plan file`)
  if (full.plan.fingerprint !== plan.fingerprint || full.plan.status !== plan.status) {
    throw invalid(`the compacted plan (fingerprint ${plan.fingerprint}, ${plan.status}) and its plan file ${file} (fingerprint ${full.plan.fingerprint}, ${full.plan.status}) disagree`)
  }
  return checked(full.plan, full.raw, file)
}

function checked(plan: Plan, raw: unknown, where: string): Plan {
  const problems = planProblems(plan, raw)
  if (problems.length > 0) throw invalid(`${where} is not the plan dry-run wrote: ${problems.join('; ')}; nothing was changed (run dry-run again)`)
  return plan
}

function existsQuietly(path: string): boolean {
  try {
    statSync(path)
    return true
  } catch {
    return false
  }
}
