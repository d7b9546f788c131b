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

export function compactPlan(plan: Plan, planFile: string): Plan {
  return {
    ...plan,
    databases: plan.databases.map((d) => ({ ...d, extensions: d.extensions.filter((e) => e.action !== 'none') })),
    blockers: plan.blockers.slice(0, 100),
    warnings: plan.warnings.slice(0, 100),
    members: {},
    truncated: { planFile, reason: 'the plan exceeded the size GitHub allows for step outputs' }
  }
}

function fitted(value: unknown, file: string | undefined, compact: () => unknown): string {
  const json = JSON.stringify(value)
  if (Buffer.byteLength(json) <= OUTPUT_LIMIT_BYTES || !file) return json
  const smaller = JSON.stringify(compact())
  if (Buffer.byteLength(smaller) <= OUTPUT_LIMIT_BYTES) return smaller
  return JSON.stringify({ truncated: { file, reason: 'too large for a step output' } })
}

/** The only place that sets step outputs. Every value is scrubbed of secrets first. */
export function setOutputs(result: ModeResult, files: WrittenFiles, secrets: readonly string[]): void {
  const set = (name: string, value: string | undefined) => {
    if (value !== undefined) core.setOutput(name, scrub(value, secrets))
  }
  set('status', result.status)
  set('changed', String(result.changed))
  if (result.plan) {
    const plan = result.plan
    set('plan', fitted(plan, files.planFile, () => compactPlan(plan, files.planFile!)))
    set('plan-file', files.planFile)
  }
  if (result.report !== undefined) {
    const report = result.report
    set('report', fitted(report, files.reportFile, () => ({ ...(report as object), truncated: { file: files.reportFile } })))
    set('report-file', files.reportFile)
  }
  for (const [name, value] of Object.entries(result.outputs ?? {})) set(name, value)
  set('error', result.error)
}
