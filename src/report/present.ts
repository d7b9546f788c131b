import type { Finding, Plan, PlannedExtension } from '../core/plan.js'
import type { Mode } from '../inputs.js'
import { fails, type ModeResult } from '../modes/types.js'
import type { ExecuteReport } from '../modes/execute.js'
import type { VerifyReport } from '../modes/verify.js'
import type { DriftReport } from '../modes/drift.js'
import type { RunReport, Stage } from '../modes/run.js'
import type { DriftEntry } from '../core/drift.js'
import { formatDuration } from '../core/duration.js'
import { catalogVersion } from '../core/executor.js'
import { capped, type Document, type Section } from './document.js'
import { ROLL_BACK_HINT, rollbackSections, snapshotSections, type Audience } from './recovery.js'

/** How many rows a summary table shows before pointing at the JSON file. */
export const TABLE_ROW_LIMIT = 300

export type Presenter = (result: ModeResult, audience: Audience) => Section[]

const PRESENTERS: Partial<Record<Mode, Presenter>> = {
  'dry-run': (result) => (result.plan ? planSections(result.plan) : []),
  execute: (result) => (result.report ? executeSections(result.report as ExecuteReport) : result.plan ? planSections(result.plan) : []),
  verify: (result) => (result.report ? verifySections(result.report as VerifyReport) : []),
  snapshot: (result, audience) => snapshotSections(result, audience),
  rollback: rollbackSections,
  drift: (result) => (result.report ? driftSections(result.report as DriftReport) : []),
  run: (result, audience) => (result.report ? runSections(result, result.report as RunReport, audience) : [])
}

/**
 * The result as a document; `audience: 'cli'` writes its hints as commands instead of workflow
 * steps. `codesUrl`, where the codes are explained, is linked under the findings.
 */
export function present(result: ModeResult, audience: Audience = 'action', codesUrl?: string): Document {
  const ok = !fails(result)
  const icon = ok ? (result.status === 'nothing_to_do' ? '➖' : '✅') : '❌'
  const where = result.target ? ` · ${result.target}` : ''
  const detail = result.error ?? describeOutcome(result)
  // What failed comes first; the mode's own sections and the warnings follow.
  const { errors, warnings } = findingSections(result, codesUrl)
  const sections = [...errors, ...(result.mode ? (PRESENTERS[result.mode]?.(result, audience) ?? []) : []), ...warnings]
  return {
    title: `pg-extension-upgrade · ${result.mode ?? 'invalid input'}`,
    ok,
    headline: `${icon} **${result.status}**${where}${detail ? `\n\n${detail}` : ''}`,
    sections
  }
}

function describeOutcome(result: ModeResult): string {
  if (result.mode === 'execute' && result.report) return executeCounts(result.report as ExecuteReport)
  if (result.mode === 'run' && result.report) return pipeline(result.report as RunReport)
  if (result.mode === 'drift' && result.report) {
    const { counts } = result.report as DriftReport
    const classes = Object.entries(counts).filter(([k, v]) => !['databases', 'checked', 'ok'].includes(k) && v > 0)
    const { health } = result.report as DriftReport
    return `${counts.databases} database(s), ${counts.checked} extension(s) checked: ${counts.ok ?? 0} in step${classes.map(([k, v]) => `, ${v} ${k}`).join('')}. Health: ${health}.`
  }
  if (result.mode === 'verify' && result.report) {
    const { counts } = result.report as VerifyReport
    return `${counts.passed} check(s) passed, ${counts.failed} failed, ${counts.skipped} skipped.`
  }
  const plan = result.plan
  if (!plan) return ''
  const changes = plan.databases.flatMap((d) => d.extensions).filter((e) => e.action === 'update' || e.action === 'install')
  const databases = plan.databases.length
  return `${changes.length} change(s) planned in ${databases} database(s) on PostgreSQL ${plan.server.version}.`
}

export function findingLine(finding: Finding): string {
  const scope = [finding.database, finding.extension].filter(Boolean).join('/')
  return `**${finding.code}**${scope ? ` (${scope})` : ''}: ${finding.message}`
}

function findingSections(result: ModeResult, codesUrl?: string): { errors: Section[]; warnings: Section[] } {
  const heading = result.status === 'dry_run_blocked' ? 'Blockers' : 'Errors'
  const explained = codesUrl ? { text: `What each code means: [the codes](${codesUrl}).` } : {}
  return {
    errors: result.errors.length > 0 ? [{ heading: `${heading} (${result.errors.length})`, items: result.errors.map(findingLine), ...explained }] : [],
    warnings: result.warnings.length > 0 ? [{ heading: `Warnings (${result.warnings.length})`, items: result.warnings.map(findingLine), ...(result.errors.length > 0 ? {} : explained) }] : []
  }
}

const ACTION_LABEL: Record<PlannedExtension['action'], string> = {
  update: 'update',
  install: 'install',
  none: 'up to date',
  blocked: 'blocked'
}

function checksFor(plan: Plan, database: string, extension: PlannedExtension): string {
  const mine = (f: Finding) => f.database === database && (f.extension === extension.name || f.extension === undefined)
  const failed = plan.blockers.filter(mine).map((f) => `✗ ${f.code}`)
  const warned = plan.warnings.filter(mine).map((f) => `⚠ ${f.code}`)
  const all = [...failed, ...warned]
  return all.length > 0 ? all.join(', ') : extension.action === 'none' ? '' : '✓ passed'
}

function planSections(plan: Plan): Section[] {
  const rows = plan.databases.flatMap((database) =>
    database.extensions.map((extension) => [
      database.name,
      extension.name,
      `${extension.from ?? '(not installed)'} → ${extension.to ?? '?'}`,
      extension.action === 'update' || extension.action === 'install' ? extension.path.join(' → ') : '',
      `${ACTION_LABEL[extension.action]}${extension.direction === 'downgrade' ? ' (downgrade)' : ''}${extension.staged ? ' (staged)' : ''}`,
      checksFor(plan, database.name, extension)
    ])
  )
  if (rows.length === 0) {
    return [{ heading: 'Plan', text: 'Every targeted extension already matches its target.' }]
  }
  const { shown, note } = capped(rows, TABLE_ROW_LIMIT)
  const sections: Section[] = [
    { heading: 'Plan', table: { columns: ['Database', 'Extension', 'Installed → target', 'Path', 'Action', 'Checks'], rows: shown, note } }
  ]
  const dependents = plan.databases.flatMap((d) =>
    d.extensions.filter((e) => e.dependents).map((e) => `${d.name}/${e.name}: ${e.dependents!.sample.join('; ')}${e.dependents!.count > e.dependents!.sample.length ? ` (${e.dependents!.count} in all)` : ''}`)
  )
  if (dependents.length > 0) {
    sections.push({ heading: 'User objects that depend on the extensions (kept intact by the update)', items: capped(dependents, 50).shown, folded: true })
  }
  sections.push({ heading: 'Fingerprint', text: `\`${plan.fingerprint}\` — execute refuses the plan if the databases change before it runs.`, folded: true })
  return sections
}

const OUTCOME_LABEL: Record<string, string> = {
  updated: '✅ updated',
  installed: '✅ installed',
  already_current: '➖ already current',
  failed: '❌ failed',
  skipped: '⏭ not attempted'
}

function executeCounts(report: ExecuteReport): string {
  const { updated, current, failed, notStarted } = report.counts
  return `${updated} updated, ${current} already current, ${failed} failed, ${notStarted} not started (databases) in ${formatDuration(report.durationMs)}.`
}

function executeSections(report: ExecuteReport): Section[] {
  const ordered = [...report.databases].sort((a, b) => Number(b.outcome === 'failed') - Number(a.outcome === 'failed'))
  const rows = ordered.flatMap((database) =>
    database.extensions.length === 0
      ? [[database.name, '', '', '', database.outcome === 'failed' ? '❌ failed' : database.outcome, '', '', `${database.code ?? ''}: ${database.message ?? ''}`]]
      : database.extensions.map((e) => [
          database.name,
          e.name,
          `${e.from ?? '(new)'} → ${e.to ?? '?'}`,
          e.walked.join(' → '),
          OUTCOME_LABEL[e.outcome] ?? e.outcome,
          String(e.attempts),
          formatDuration(e.durationMs),
          e.outcome === 'failed'
            ? `${e.code}${e.sqlstate ? ` (SQLSTATE ${e.sqlstate})` : ''}: ${e.message ?? ''}${e.failedHop ? ` [hop ${e.failedHop.from} → ${e.failedHop.to}]` : ''}; catalog at ${catalogVersion(e)}`
            : (e.message ?? '')
        ])
  )
  const { shown, note } = capped(rows, TABLE_ROW_LIMIT)
  const sections: Section[] = [
    { heading: 'Updates', table: { columns: ['Database', 'Extension', 'From → to', 'Walked', 'Outcome', 'Attempts', 'Duration', 'Detail'], rows: shown, note } }
  ]
  const blockers = report.databases.flatMap((d) =>
    d.extensions.flatMap((e) =>
      e.blockers.map((b) => `${d.name}/${e.name} waited on pid ${b.pid} (${b.user ?? '?'}, ${b.application || 'no application_name'}, ${b.state ?? '?'}, ${formatDuration(b.ageMs ?? 0)}): ${b.query ?? ''}`)
    )
  )
  if (blockers.length > 0) sections.push({ heading: 'Sessions that blocked an update', items: capped(blockers, 50).shown })
  return sections
}

function verifySections(report: VerifyReport): Section[] {
  // Failed checks are shown; the passing ones are folded away below them.
  const checkRows = (passing: boolean) =>
    report.databases.flatMap((database) =>
      database.checks
        .filter((c) => c.ok === passing)
        .map((c) => [
          database.name,
          c.check,
          c.extension ?? '',
          c.ok ? (c.skipped ? '– skipped' : '✓ pass') : '✗ fail',
          `${c.message}${c.details ? `\n${c.details.slice(0, 5).join('\n')}` : ''}`
        ])
    )
  const columns = ['Database', 'Check', 'Extension', 'Result', 'Detail']
  const failed = capped(checkRows(false), TABLE_ROW_LIMIT)
  const passed = capped(checkRows(true), TABLE_ROW_LIMIT)
  const sections: Section[] = []
  if (failed.shown.length > 0) sections.push({ heading: 'Failed checks', table: { columns, rows: failed.shown, note: failed.note } })
  if (passed.shown.length > 0) sections.push({ heading: `Passed checks (${checkRows(true).length})`, table: { columns, rows: passed.shown, note: passed.note }, folded: true })
  const changes = report.databases.flatMap((d) =>
    Object.entries(d.memberChanges)
      .filter(([, c]) => c.added.length + c.removed.length > 0)
      .map(([name, c]) => `${d.name}/${name}: added ${c.added.length}${c.added.length ? ` (${c.added.slice(0, 10).join('; ')}${c.added.length > 10 ? '; …' : ''})` : ''}, removed ${c.removed.length}${c.removed.length ? ` (${c.removed.slice(0, 10).join('; ')}${c.removed.length > 10 ? '; …' : ''})` : ''}`)
  )
  if (changes.length > 0) sections.push({ heading: 'What the update changed in each extension', items: capped(changes, 50).shown, folded: true })
  return sections
}

const DRIFT_CELL: Record<DriftEntry['class'], (e: DriftEntry) => string> = {
  ok: (e) => `✓ ${e.catalog}`,
  catalog_behind: (e) => `⬇ ${e.catalog} → ${e.target}`,
  catalog_ahead: (e) => `⬆ ${e.catalog} (ships ${e.control ?? '—'})`,
  restart_required: (e) => `↻ ${e.catalog}, library ${e.library}`,
  unavailable: (e) => `✗ ${e.catalog} not shipped`,
  fleet_skew: (e) => e.catalog,
  parity: (e) => e.catalog
}

function driftSections(report: DriftReport): Section[] {
  const extensions = [...new Set(report.databases.flatMap((d) => d.extensions.map((e) => e.extension)))].sort()
  const drifted = report.databases.filter((d) => d.extensions.some((e) => e.class !== 'ok'))
  const rows = drifted.map((d) => [
    d.name,
    ...extensions.map((name) => {
      const e = d.extensions.find((x) => x.extension === name)
      return e ? DRIFT_CELL[e.class](e) : ''
    })
  ])
  const inStep = report.databases.length - drifted.length
  const { shown, note } = capped(rows, TABLE_ROW_LIMIT)
  const sections: Section[] = [
    {
      heading: 'Drift matrix',
      text: `${inStep} database(s) fully in step${drifted.length > 0 ? `; ${drifted.length} drifted, below` : ''}. ✓ in step · ⬇ catalog behind (needs ALTER EXTENSION … UPDATE) · ⬆ catalog ahead (rolled-back binary) · ↻ restart required · ✗ no longer shipped`,
      ...(rows.length > 0 ? { table: { columns: ['Database', ...extensions], rows: shown, note } } : {})
    }
  ]
  if (report.fleet.length > 0) sections.push({ heading: 'Fleet skew', items: report.fleet.map((f) => f.message) })
  if (report.parity.length > 0) {
    const parityRows = report.parity.map((p) => [p.database, p.subject, p.target ?? 'absent', p.reference ?? 'absent'])
    const cappedParity = capped(parityRows, TABLE_ROW_LIMIT)
    sections.push({ heading: 'Parity with the reference server', table: { columns: ['Database', 'What', 'Here', 'Reference'], rows: cappedParity.shown, note: cappedParity.note } })
  }
  return sections
}

const STAGE_MARK: Record<Stage['status'], string> = {
  dry_run_approved: '✅', snapshot_created: '✅', success: '✅', verified: '✅', rolled_back: '↩️', nothing_to_do: '➖',
  dry_run_blocked: '⛔', failed: '❌', verify_failed: '❌', rollback_failed: '❌', no_drift: '✅', drift_detected: '❌',
  skipped: '⏭', not_reached: '·'
}

/** The envelope as a line: each stage with its mark, the last one reached in bold. */
function pipeline(report: RunReport): string {
  const reached = report.stages.filter((s) => s.status !== 'not_reached' && s.status !== 'skipped').at(-1)?.name
  return report.stages.map((s) => (s.name === reached ? `**${s.name} ${STAGE_MARK[s.status]}**` : `${s.name} ${STAGE_MARK[s.status]}`)).join(' → ')
}

function runSections(result: ModeResult, report: RunReport, audience: Audience): Section[] {
  const sections: Section[] = [
    {
      heading: 'Stages',
      table: {
        columns: ['Stage', 'Result', 'Duration', 'Detail'],
        rows: report.stages.map((s) => [s.name, `${STAGE_MARK[s.status]} ${s.status}`, s.status === 'not_reached' || s.status === 'skipped' ? '' : formatDuration(s.durationMs), s.detail])
      }
    }
  ]
  if (report.guidance) sections.push({ heading: 'What state the databases are in, and what to do', items: report.guidance })
  if (result.plan) sections.push(...planSections(result.plan).filter((s) => s.heading !== 'Fingerprint'))
  const as = (mode: ModeResult['mode'], stageReport: unknown): ModeResult => ({ ...result, mode, report: stageReport })
  // After a rollback, how to roll back to the snapshot is no longer news.
  const snapshot = report.snapshot ? snapshotSections(as('snapshot', report.snapshot), audience) : []
  sections.push(...(report.rollback ? snapshot.filter((s) => s.heading !== ROLL_BACK_HINT) : snapshot))
  if (report.execute) sections.push(...executeSections(report.execute))
  if (report.verify) sections.push(...verifySections(report.verify))
  if (report.rollback) sections.push(...rollbackSections(as('rollback', report.rollback)))
  return sections
}
