import * as core from '@actions/core'
import { mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { scrub } from '../core/connection.js'
import type { Plan } from '../core/plan.js'
import type { ModeResult } from '../modes/types.js'

/** GitHub caps all outputs of a job at 1 MB; larger JSON goes out compacted, in full in its file. */
export const OUTPUT_LIMIT_BYTES = 900_000

export interface WrittenFiles {
  planFile?: string
  reportFile?: string
}

/** Writes the plan and the report as JSON files under RUNNER_TEMP (or the system temp directory). */
export function writeResultFiles(result: ModeResult, env: NodeJS.ProcessEnv, secrets: readonly string[]): WrittenFiles {
  const dir = join(env.RUNNER_TEMP || tmpdir(), 'pg-extension-upgrade', `${result.mode ?? 'failed'}-${Date.now()}-${process.pid}`)
  mkdirSync(dir, { recursive: true })
  const write = (name: string, value: unknown) => {
    const path = join(dir, name)
    writeFileSync(path, scrub(JSON.stringify(value, null, 2), secrets) + '\n')
    return path
  }
  return {
    planFile: result.plan ? write('plan.json', result.plan) : undefined,
    reportFile: result.report !== undefined ? write('report.json', result.report) : undefined
  }
}

/**
 * Smaller forms of a plan for the `plan` output, each still a valid plan whose status answers
 * the gate and whose `truncated.planFile` names the full plan (execute follows it).
 */
export function compactPlans(plan: Plan, planFile: string): Plan[] {
  const truncated = { planFile, reason: 'the plan exceeded the size GitHub allows for step outputs' }
  return [
    {
      ...plan,
      databases: plan.databases.map((d) => ({ ...d, extensions: d.extensions.filter((e) => e.action !== 'none') })),
      blockers: plan.blockers.slice(0, 100),
      warnings: plan.warnings.slice(0, 100),
      members: {},
      truncated
    },
    { ...plan, databases: [], blockers: plan.blockers.slice(0, 20), warnings: [], members: {}, truncated }
  ]
}

/** The value as JSON, or the first smaller form that fits the output limit (the last one always does). */
function fitted(value: unknown, smaller: () => unknown[]): string {
  const json = JSON.stringify(value)
  if (Buffer.byteLength(json) <= OUTPUT_LIMIT_BYTES) return json
  const forms = smaller().map((form) => JSON.stringify(form))
  return forms.find((form) => Buffer.byteLength(form) <= OUTPUT_LIMIT_BYTES) ?? forms[forms.length - 1]
}

/** The only place that sets step outputs. Every value is scrubbed of secrets first. */
export function setOutputs(result: ModeResult, files: WrittenFiles, secrets: readonly string[]): void {
  const set = (name: string, value: string | undefined) => {
    if (value !== undefined) core.setOutput(name, scrub(value, secrets))
  }
  set('status', result.status)
  set('changed', String(result.changed))
  if (result.plan && files.planFile) {
    const { plan } = result
    const planFile = files.planFile
    set('plan', fitted(plan, () => compactPlans(plan, planFile)))
    set('plan-file', planFile)
  }
  if (result.report !== undefined && files.reportFile) {
    const report = result.report as Record<string, unknown>
    const truncated = { reportFile: files.reportFile, reason: 'the report exceeded the size GitHub allows for step outputs' }
    // The last form keeps what a workflow reads from a report: its status and counts.
    const { schemaVersion, mode, status, counts } = report
    set('report', fitted(report, () => [{ schemaVersion, mode, status, counts, truncated }]))
    set('report-file', files.reportFile)
  }
  for (const [name, value] of Object.entries(result.outputs ?? {})) set(name, value)
  set('error', result.error)
}
