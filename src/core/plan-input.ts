import { existsSync, readFileSync } from 'node:fs'
import { z } from 'zod'
import { CodedError } from './errors.js'
import type { Plan } from './plan.js'

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
  truncated: z.object({ planFile: z.string(), reason: z.string() }).optional()
})

/** Reads the `plan` input: the JSON a dry-run wrote, or the path of its plan file. */
export function loadPlan(input: string): Plan {
  const text = input.trim()
  let json: string
  if (text.startsWith('{')) {
    json = text
  } else if (existsSync(text)) {
    json = readFileSync(text, 'utf8')
  } else {
    throw new CodedError('INVALID_INPUT', 'input "plan": must be the JSON a dry-run produced (steps.<id>.outputs.plan) or the path of its plan file (plan-file); neither was found')
  }
  let value: unknown
  try {
    value = JSON.parse(json)
  } catch {
    throw new CodedError('INVALID_INPUT', 'input "plan": is not valid JSON')
  }
  const parsed = planSchema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new CodedError('INVALID_INPUT', `input "plan": not a dry-run plan (schema version 1): ${issue.path.join('.') || 'plan'} ${issue.message}`)
  }
  const plan = parsed.data as unknown as Plan
  if (plan.truncated) {
    if (!existsSync(plan.truncated.planFile)) {
      throw new CodedError('INVALID_INPUT', `input "plan": this is the compacted plan (${plan.truncated.reason}) and its file ${plan.truncated.planFile} is not on this machine; pass the plan file instead`)
    }
    return loadPlan(plan.truncated.planFile)
  }
  return plan
}
