import * as core from '@actions/core'
import { mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { scrub } from '../core/connection.js'
import { isChange, type Finding, type Plan } from '../core/plan.js'
import type { ModeResult } from '../modes/types.js'

/**
 * The largest JSON value a step output carries in full. Workflows hand `plan` and `report` to the
 * next step's inputs, which a runner passes as environment variables, and Linux refuses to start a
 * process with one variable over 128 KiB (E2BIG); GitHub also caps all outputs of a job at 1 MB.
 * Past this size the output is a compact form that points at the full file.
 */
export const HANDOFF_LIMIT_BYTES = 32 * 1024

/** How many findings, and how much of each message, the compact forms keep. */
const COMPACT_FINDINGS = 20
const COMPACT_MESSAGE_CHARS = 400

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

const shortFindings = (findings: Finding[]): Finding[] =>
  findings.slice(0, COMPACT_FINDINGS).map((f) => ({ ...f, message: f.message.length > COMPACT_MESSAGE_CHARS ? `${f.message.slice(0, COMPACT_MESSAGE_CHARS)}…` : f.message }))

/**
 * The plan as a step output carries it when the full plan is too large: a valid plan whose
 * status, counts and fingerprint answer a gate (`fromJSON(...).status`), with no databases, and
 * whose `truncated.planFile` names the full plan (every mode that takes `plan` follows it).
 */
export function compactPlan(plan: Plan, planFile: string): Plan {
  const changes = plan.databases.reduce((sum, d) => sum + d.extensions.filter(isChange).length, 0)
  return {
    ...plan,
    databases: [],
    blockers: shortFindings(plan.blockers),
    warnings: shortFindings(plan.warnings),
    members: {},
    counts: { databases: plan.databases.length, changes, blockers: plan.blockers.length, warnings: plan.warnings.length },
    truncated: { planFile, reason: `the full plan (${plan.databases.length} databases) is larger than a step output can hand to the next step` }
  }
}

/** A report as a step output carries it when too large: what workflows read (status, counts), and where the rest is. */
export function compactReport(report: Record<string, unknown>, reportFile: string): Record<string, unknown> {
  const { schemaVersion, mode, status, counts, strategy, snapshot } = report
  return {
    schemaVersion,
    mode,
    status,
    ...(counts !== undefined ? { counts } : {}),
    ...(strategy !== undefined ? { strategy } : {}),
    ...(typeof snapshot === 'string' ? { snapshot } : {}),
    truncated: { reportFile, reason: 'the full report is larger than a step output can hand to the next step' }
  }
}

/** The value as JSON, or its compact form when it would not fit a hand-off. */
function handedOff(value: unknown, compact: () => unknown): string {
  const json = JSON.stringify(value)
  return Buffer.byteLength(json) <= HANDOFF_LIMIT_BYTES ? json : JSON.stringify(compact())
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
    set('plan', handedOff(plan, () => compactPlan(plan, planFile)))
    set('plan-file', planFile)
  } else if (result.mode === 'dry-run') {
    // A gate reading fromJSON(steps.<id>.outputs.plan).status gets JSON even when nothing could be planned.
    set('plan', JSON.stringify({ schemaVersion: 1, status: result.status, error: result.error ?? null }))
  }
  if (result.report !== undefined && files.reportFile) {
    const report = result.report as Record<string, unknown>
    const reportFile = files.reportFile
    set('report', handedOff(report, () => compactReport(report, reportFile)))
    set('report-file', reportFile)
  }
  for (const [name, value] of Object.entries(result.outputs ?? {})) set(name, value)
  set('error', result.error)
}
