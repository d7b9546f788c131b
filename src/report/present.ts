import type { Finding, Plan, PlannedExtension } from '../core/plan.js'
import type { Mode } from '../inputs.js'
import { FAILURE_STATUSES, type ModeResult } from '../modes/types.js'
import { capped, type Document, type Section } from './document.js'

/** How many rows a summary table shows before pointing at the JSON file. */
export const TABLE_ROW_LIMIT = 300

export type Presenter = (result: ModeResult) => Section[]

const PRESENTERS: Partial<Record<Mode, Presenter>> = {
  'dry-run': (result) => (result.plan ? planSections(result.plan) : [])
}

export function present(result: ModeResult): Document {
  const ok = !FAILURE_STATUSES.has(result.status)
  const icon = ok ? (result.status === 'nothing_to_do' ? '➖' : '✅') : '❌'
  const where = result.target ? ` · ${result.target}` : ''
  const detail = result.error ?? describeOutcome(result)
  const sections = [...(result.mode ? (PRESENTERS[result.mode]?.(result) ?? []) : []), ...findingSections(result)]
  return {
    title: `pg-extension-upgrade · ${result.mode ?? 'invalid input'}`,
    ok,
    headline: `${icon} **${result.status}**${where}${detail ? `\n\n${detail}` : ''}`,
    sections
  }
}

function describeOutcome(result: ModeResult): string {
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

function findingSections(result: ModeResult): Section[] {
  const sections: Section[] = []
  if (result.errors.length > 0) {
    const heading = result.mode === 'dry-run' ? 'Blockers' : 'Errors'
    sections.push({ heading: `${heading} (${result.errors.length})`, items: result.errors.map(findingLine) })
  }
  if (result.warnings.length > 0) {
    sections.push({ heading: `Warnings (${result.warnings.length})`, items: result.warnings.map(findingLine) })
  }
  return sections
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
