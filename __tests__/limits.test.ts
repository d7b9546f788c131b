import { describe, expect, it } from '@jest/globals'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { HANDOFF_LIMIT_BYTES, setOutputs, writeResultFiles } from '../src/action/outputs.js'
import type { DatabaseReport } from '../src/core/executor.js'
import { fingerprintPlan, sealPlan, type DatabasePlan, type Finding, type Plan } from '../src/core/plan.js'
import { loadPlan } from '../src/core/plan-input.js'
import type { ExecuteReport } from '../src/modes/execute.js'
import type { ModeResult } from '../src/modes/types.js'
import { SUMMARY_LIMIT_BYTES, renderMarkdown } from '../src/report/markdown.js'
import { present } from '../src/report/present.js'
import { parseOutputFile } from './harness/action.js'
import { temporaryDirectory } from './harness/postgres.js'

const FLEET = 1000
const names = Array.from({ length: FLEET }, (_, i) => `tenant_${String(i).padStart(4, '0')}`)
const members = Array.from({ length: 400 }, (_, i) => `function postgis_member_${i}(geometry,geometry,double precision)`)

function fleetPlan(): Plan {
  const databases: DatabasePlan[] = names.map((name) => ({
    name,
    fingerprint: `sha256:${'ab'.repeat(32)}`,
    unplanned: ['plpgsql@1.0'],
    extensions: ['hstore', 'pg_trgm', 'postgis'].map((extension, order) => ({
      name: extension,
      from: '1.4',
      to: '1.8',
      path: ['1.4', '1.5', '1.6', '1.7', '1.8'],
      action: 'update' as const,
      defaultTarget: true,
      order: order + 1,
      schema: 'public',
      requires: [],
      dependents: { count: 2, sample: ['column tags of table customers', 'index customers_tags'] }
    }))
  }))
  const warnings: Finding[] = names.map((name) => ({ code: 'DEPENDENT_OBJECTS', database: name, extension: 'hstore', message: '2 user object(s) depend on members of hstore' }))
  return sealPlan({
    schemaVersion: 1,
    status: 'dry_run_approved',
    createdAt: new Date().toISOString(),
    server: { version: '15.20', versionNum: 150020, isReplica: false },
    request: { extensions: [], allowDowngrade: false, installMissing: false, stagedExtensions: [] },
    databases,
    blockers: [],
    warnings,
    members: { 'postgis@1.4': members },
    fingerprint: fingerprintPlan(databases)
  })
}

function fleetReport(): ExecuteReport {
  const databases: DatabaseReport[] = names.map((name, i) => ({
    name,
    outcome: i === 700 ? 'failed' : i > 900 ? 'not_started' : 'updated',
    durationMs: 40,
    extensions:
      i > 900
        ? []
        : ['hstore', 'pg_trgm', 'postgis'].map((extension) => ({
            name: extension,
            from: '1.4',
            to: '1.8',
            walked: ['1.4', '1.5', '1.6', '1.7', '1.8'],
            attempts: 1,
            durationMs: 12,
            outcome: i === 700 && extension === 'postgis' ? ('failed' as const) : ('updated' as const),
            finalVersion: i === 700 && extension === 'postgis' ? '1.4' : '1.8',
            blockers: [],
            ...(i === 700 && extension === 'postgis' ? { code: 'UPGRADE_SCRIPT_FAILED' as const, sqlstate: 'P0001', message: 'boom' } : {})
          }))
  }))
  return {
    schemaVersion: 1,
    mode: 'execute',
    status: 'failed',
    startedAt: new Date().toISOString(),
    durationMs: 60_000,
    planFingerprint: 'sha256:x',
    canary: [],
    counts: { updated: 900, current: 0, failed: 1, notStarted: 99 },
    databases
  }
}

function outputsOf(result: ModeResult): { outputs: Record<string, string>; files: ReturnType<typeof writeResultFiles> } {
  const dir = temporaryDirectory('pgxu-limits-')
  const outputFile = join(dir, 'output')
  writeFileSync(outputFile, '')
  const saved = process.env.GITHUB_OUTPUT
  process.env.GITHUB_OUTPUT = outputFile
  try {
    const files = writeResultFiles(result, { RUNNER_TEMP: dir }, [])
    setOutputs(result, files, [])
    return { outputs: parseOutputFile(readFileSync(outputFile, 'utf8')), files }
  } finally {
    process.env.GITHUB_OUTPUT = saved
  }
}

describe('a fleet of 1,000 databases stays within what GitHub accepts', () => {
  it('a dry-run: the summary is capped and under 1 MiB, the plan output is compacted but still answers the gate', () => {
    const plan = fleetPlan()
    const result: ModeResult = { mode: 'dry-run', status: plan.status, changed: false, plan, errors: [], warnings: plan.warnings }
    const summary = renderMarkdown(present(result))
    expect(Buffer.byteLength(summary)).toBeLessThan(SUMMARY_LIMIT_BYTES)
    expect(summary).toContain('more not shown here; the full list is in the JSON file')

    const { outputs, files } = outputsOf(result)
    expect(Buffer.byteLength(JSON.stringify(plan))).toBeGreaterThan(HANDOFF_LIMIT_BYTES)
    expect(Buffer.byteLength(outputs.plan)).toBeLessThanOrEqual(HANDOFF_LIMIT_BYTES)
    const compact = JSON.parse(outputs.plan) as Plan
    expect(compact.status).toBe('dry_run_approved')
    expect(compact.truncated?.planFile).toBe(files.planFile)
    // Well under Linux's 128 KiB per environment variable, so the next step can start.
    expect(Buffer.byteLength(outputs.plan)).toBeLessThan(64 * 1024)
    expect(compact.counts).toMatchObject({ databases: FLEET })
    expect(compact.fingerprint).toBe(plan.fingerprint)
    expect((JSON.parse(readFileSync(outputs['plan-file'], 'utf8')) as Plan).databases).toHaveLength(FLEET)
    // execute given the compacted output follows it to the full plan.
    expect(loadPlan(outputs.plan).databases).toHaveLength(FLEET)
  })

  it('an execute report: counts first, failed databases first, the table capped, the full matrix in report-file', () => {
    const report = fleetReport()
    const result: ModeResult = { mode: 'execute', status: 'failed', changed: true, report, errors: [], warnings: [] }
    const summary = renderMarkdown(present(result))
    expect(Buffer.byteLength(summary)).toBeLessThan(SUMMARY_LIMIT_BYTES)
    expect(summary).toContain('900 updated, 0 already current, 1 failed, 99 not started')
    const firstRow = summary.split('\n').find((line) => line.startsWith('| tenant_'))
    expect(firstRow).toContain('tenant_0700')
    expect(summary).toContain('more not shown here')

    const { outputs } = outputsOf(result)
    expect(Buffer.byteLength(outputs.report)).toBeLessThanOrEqual(HANDOFF_LIMIT_BYTES)
    expect(JSON.parse(outputs.report)).toMatchObject({ status: 'failed', counts: report.counts })
    expect((JSON.parse(readFileSync(outputs['report-file'], 'utf8')) as ExecuteReport).databases).toHaveLength(FLEET)
  })
})
