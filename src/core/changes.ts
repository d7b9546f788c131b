import { z } from 'zod'
import { CodedError } from './errors.js'
import { readInputFile } from './input-files.js'
import { isChange, type Plan } from './plan.js'

/**
 * What an upgrade changed, or may have changed, in one database, and the version each of those
 * extensions had before it (null: it was not installed). Read from a plan or an execute report;
 * rollback checks that its snapshot covers all of it, and `run` without a snapshot downgrades to it.
 */
export interface PriorVersions {
  database: string
  extensions: Record<string, string | null>
}

/** Every database the plan changes, with the planned `from` of each changed extension. */
export function changesOfPlan(plan: Plan): PriorVersions[] {
  return plan.databases
    .map((d) => ({ database: d.name, extensions: Object.fromEntries(d.extensions.filter(isChange).map((e) => [e.name, e.from])) }))
    .filter((d) => Object.keys(d.extensions).length > 0)
}

const extensionOutcomeSchema = z.looseObject({ name: z.string(), from: z.string().nullable(), outcome: z.string() })
const executeReportSchema = z.looseObject({
  mode: z.literal('execute'),
  databases: z.array(z.looseObject({ name: z.string(), extensions: z.array(extensionOutcomeSchema) }))
})
const runReportSchema = z.looseObject({ mode: z.literal('run'), execute: executeReportSchema.optional() })
const compactReportSchema = z.looseObject({ mode: z.enum(['execute', 'run']), truncated: z.object({ reportFile: z.string() }) })
/** The parts of an execute report this module reads. */
interface ExecuteReportShape {
  databases: ReadonlyArray<{ name: string; extensions: ReadonlyArray<{ name: string; from: string | null; outcome: string }> }>
}

/** Outcomes after which the catalog may differ from `from`: a failed staged update may have walked some hops. */
const MAY_HAVE_CHANGED = new Set(['updated', 'installed', 'failed', 'interrupted'])

/** Every database an execute report says was changed or may have been, with each extension's `from`. */
export function changesOfReport(report: ExecuteReportShape): PriorVersions[] {
  return report.databases
    .map((d) => ({
      database: d.name,
      extensions: Object.fromEntries(d.extensions.filter((e) => MAY_HAVE_CHANGED.has(e.outcome)).map((e) => [e.name, e.from]))
    }))
    .filter((d) => Object.keys(d.extensions).length > 0)
}

/** Both sources together: a database or extension named by either is included; the plan's `from` wins. */
export function mergeChanges(...sources: PriorVersions[][]): PriorVersions[] {
  const merged = new Map<string, Record<string, string | null>>()
  for (const source of sources.reverse()) {
    for (const { database, extensions } of source) merged.set(database, { ...merged.get(database), ...extensions })
  }
  return [...merged].map(([database, extensions]) => ({ database, extensions })).sort((a, b) => a.database.localeCompare(b.database))
}

/**
 * The `report` input: an execute or run report (JSON or its file, inside the workspace or
 * RUNNER_TEMP; a compacted output is followed to its report-file, one level only). Returns what it
 * says was changed.
 */
export function loadReportChanges(input: string, env: NodeJS.ProcessEnv): PriorVersions[] {
  const read = (text: string) => (text.trim().startsWith('{') ? text : readInputFile('report', text.trim(), env))
  const parse = (text: string, what: string): unknown => {
    try {
      return JSON.parse(text)
    } catch {
      throw new CodedError('INVALID_INPUT', `input "report": ${what} is not valid JSON`)
    }
  }
  let value = parse(read(input), 'the value')
  const compact = compactReportSchema.safeParse(value)
  if (compact.success) {
    const file = compact.data.truncated.reportFile
    value = parse(read(file), `the report-file ${file}`)
    if (compactReportSchema.safeParse(value).success) throw new CodedError('INVALID_INPUT', `input "report": the report-file ${file} is itself a compacted report`)
  }
  const execute = executeReportSchema.safeParse(value)
  if (execute.success) return changesOfReport(execute.data)
  const run = runReportSchema.safeParse(value)
  if (run.success) return run.data.execute ? changesOfReport(run.data.execute) : []
  throw new CodedError('INVALID_INPUT', 'input "report": not the report of an execute or run step')
}
