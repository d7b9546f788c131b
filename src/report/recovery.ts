import { formatDuration } from '../core/duration.js'
import { formatBytes } from '../core/recovery/format.js'
import type { PhaseRecord } from '../core/recovery/phases.js'
import type { RollbackReport } from '../modes/rollback.js'
import type { SnapshotReport } from '../modes/snapshot.js'
import type { ModeResult } from '../modes/types.js'
import { capped, type Section } from './document.js'

/** The heading of the snapshot's rollback hint (left out of a summary once the run rolled back). */
export const ROLL_BACK_HINT = 'How to roll back to this snapshot'

const ROWS = 300

function phaseSection(phases: PhaseRecord[], total?: number): Section {
  const rows = phases.map((p) => [p.name, formatDuration(p.durationMs), p.ok ? '✓' : '✗', p.detail ?? ''])
  const { shown, note } = capped(rows, ROWS)
  return {
    heading: `Phases${total !== undefined ? ` (${formatDuration(total)} in all)` : ''}`,
    table: { columns: ['Phase', 'Duration', 'Result', 'Detail'], rows: shown, note }
  }
}

/** Who reads the hints: a workflow author (a `uses:` step) or someone at a shell (a command). */
export type Audience = 'action' | 'cli'

function rollbackStep(snapshot: string, strategy: string): string {
  const pitr = strategy === 'basebackup'
  return [
    '```yaml',
    '- uses: our-org/pg-extension-upgrade@v1',
    '  with:',
    '    mode: rollback',
    '    database-url: ${{ secrets.DATABASE_URL }}',
    `    snapshot: ${snapshot}`,
    `    rollback-strategy: ${strategy === 'dump' ? 'auto   # downgrade, else dump' : 'auto   # downgrade when possible; pitr needs confirm-data-loss: true'}`,
    ...(pitr ? ['    pgdata: /path/to/the/data/directory   # for pitr', '    confirm-data-loss: false                # true allows a whole-cluster pitr'] : []),
    '```'
  ].join('\n')
}

const shellQuote = (value: string) => (/^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`)

function rollbackCommand(snapshot: string, strategy: string): string {
  const command = `pg-extension-upgrade rollback --snapshot ${shellQuote(snapshot)}`
  // The CLI prints text, not Markdown: plain indented command lines that can be copied as they are.
  return [
    `  ${command}${strategy === 'dump' ? '   # downgrade, else dump' : '   # downgrade when possible'}`,
    ...(strategy === 'basebackup' ? [`  ${command} --pgdata /path/to/the/data/directory --confirm-data-loss   # a whole-cluster pitr`] : [])
  ].join('\n')
}

/** Summary sections of the snapshot mode: what was recorded, each phase, and how to roll back. */
export function snapshotSections(result: ModeResult, audience: Audience = 'action'): Section[] {
  const report = result.report as SnapshotReport | undefined
  if (!report) return []
  const sections: Section[] = []
  const manifest = report.manifest
  const lines: string[] = []
  if (report.strategy) lines.push(`Strategy: **${report.strategy}** — ${report.reason ?? ''}`)
  if (manifest) {
    lines.push(`Manifest: \`${report.snapshot}\` (snapshot \`${manifest.id}\`, ${manifest.createdAt} by the server's clock)`)
    lines.push(`Cluster: PostgreSQL ${manifest.server.version}, system identifier ${manifest.server.systemIdentifier}, timeline ${manifest.server.timeline}`)
    const rp = manifest.restorePoint
    if (rp) {
      lines.push(`Restore point: \`${rp.name}\` at ${rp.lsn} in ${rp.walFile} (timeline ${rp.timeline}), archived ${rp.archivedAt}`)
      lines.push(`Uniqueness: ${rp.uniqueness}`)
    }
    const backup = manifest.baseBackup
    if (backup?.external) lines.push(`Base backup: external — ${backup.note ?? ''}`)
    else if (backup) {
      lines.push(`Base backup: \`${backup.path}\` (${formatBytes(backup.bytes ?? 0)}, plain format, label "${backup.label}"), WAL ${backup.startLsn} … ${backup.endLsn}; verified with ${backup.verifiedWith}`)
    }
    if (manifest.archive) lines.push(`WAL archive: ${manifest.archive.directory ? `\`${manifest.archive.directory}\`` : `not a local directory (${manifest.archive.method})`}`)
  }
  if (lines.length) sections.push({ heading: 'Snapshot', text: lines.join('  \n') })
  if (manifest) {
    const rows = manifest.databases.map((d) => [
      d.name,
      d.owner,
      `${d.encoding}, ${d.localeProvider === 'icu' ? `icu ${d.icuLocale}` : `${d.collate}/${d.ctype}`}`,
      d.extensions.map((e) => `${e.name} ${e.version} (${e.schema})`).join(', '),
      d.dump
        ? `${d.dump.file} (${formatBytes(d.dump.bytes)}, ${Object.keys(d.dump.rowCounts).length} table(s), ${Object.values(d.dump.rowCounts).reduce((a, b) => a + b, 0)} row(s))`
        : ''
    ])
    const { shown, note } = capped(rows, ROWS)
    sections.push({ heading: 'Databases recorded', table: { columns: ['Database', 'Owner', 'Encoding, locale', 'Extensions (schema)', 'Dump'], rows: shown, note } })
  }
  sections.push(phaseSection(report.phases, report.durationMs))
  if (report.status === 'snapshot_created' && manifest) {
    const external =
      manifest.strategy === 'restore-point'
        ? `The base backup is external: a whole-cluster rewind is done with your backup tool to restore point \`${manifest.restorePoint?.name}\`, timeline ${manifest.restorePoint?.timeline}.`
        : ''
    const hint = audience === 'cli' ? rollbackCommand(report.snapshot ?? '', manifest.strategy) : rollbackStep(report.snapshot ?? '', manifest.strategy)
    sections.push({ heading: ROLL_BACK_HINT, text: [hint, external].filter(Boolean).join('\n') })
  } else {
    sections.push({
      heading: 'What the failed snapshot changed',
      items: report.changed
        ? report.leftBehind.length
          ? report.leftBehind
          : ['the files written were removed again']
        : ['Nothing: a precondition failed before anything was written or any restore point created.']
    })
  }
  return sections
}

const OUTCOME: Record<string, string> = {
  rolled_back: '✅ rolled back',
  already_matched: '➖ already matched',
  failed: '❌ failed',
  not_started: '⏭ not attempted',
  put_back: '↩ original put back'
}

/** Summary sections of the rollback mode: the strategy and why, what is discarded, each phase, and how to put things back. */
export function rollbackSections(result: ModeResult): Section[] {
  const report = result.report as RollbackReport | undefined
  if (!report) return []
  const sections: Section[] = []
  const lines = [
    report.snapshot
      ? `Snapshot: \`${report.snapshot.id}\` (${report.snapshot.strategy}, ${report.snapshot.createdAt})${report.snapshot.restorePoint ? `, restore point \`${report.snapshot.restorePoint}\`` : ''} — \`${report.snapshot.path}\``
      : 'No snapshot: the planned versions were restored by downgrade scripts.',
    `Strategy: **${report.strategy ?? 'none'}** — ${report.reason}`
  ]
  if (report.pitr) {
    const p = report.pitr
    if (p.newTimeline) lines.push(`Cluster recovered to timeline ${p.recoveryTimeline}, promoted onto timeline ${p.newTimeline}; the server was down for ${formatDuration(p.stoppedForMs ?? 0)}`)
    if (p.previousDir) lines.push(`The data directory as it was before the rollback is kept in \`${p.previousDir}\``)
    if (p.failedDir) lines.push(`The failed restore is kept in \`${p.failedDir}\``)
    if (p.logFile) lines.push(`Server log of the recovery: \`${p.logFile}\``)
  }
  sections.push({ heading: 'Rollback', text: lines.join('  \n') })
  if (report.discarded) {
    const done = report.status === 'rolled_back'
    sections.push({ heading: done ? 'What was discarded' : 'What this rollback discards', text: report.discarded.summary })
  }
  const rows = report.databases.flatMap((d) => {
    const names = [...new Set([...Object.keys(d.recorded), ...Object.keys(d.before), ...Object.keys(d.after ?? {})])].sort()
    if (names.length === 0) return [[d.name, '', '', '', OUTCOME[d.outcome] ?? d.outcome, d.detail ?? '']]
    return names.map((name, i) => [
      i === 0 ? d.name : '',
      name,
      `${d.before[name] ?? '–'} → ${d.recorded[name] ?? '(not recorded)'}`,
      d.after ? (d.after[name] ?? 'not installed') : '',
      i === 0 ? (OUTCOME[d.outcome] ?? d.outcome) : '',
      i === 0 ? [d.detail, d.rowsChecked ? `${d.rowsChecked.tables} table(s), ${d.rowsChecked.rows} row(s) match the snapshot` : ''].filter(Boolean).join('; ') : ''
    ])
  })
  if (rows.length) {
    const { shown, note } = capped(rows, ROWS)
    sections.push({ heading: 'Databases', table: { columns: ['Database', 'Extension', 'Before → recorded', 'After', 'Result', 'Detail'], rows: shown, note } })
  }
  sections.push(phaseSection(report.phases, report.durationMs))
  if (report.recovery?.length) {
    sections.push({ heading: report.status === 'rolled_back' ? 'Notes' : 'How things stand and how to put them back', text: report.recovery.map((line) => (line.startsWith('  ') ? `    ${line.trim()}` : line)).join('\n\n') })
  }
  if (report.pitr?.logExcerpt) sections.push({ heading: 'Server log (recovery)', text: `\`\`\`\n${report.pitr.logExcerpt}\n\`\`\``, folded: true })
  const kept = report.databases.filter((d) => d.keptAs).map((d) => `${d.name}: the replaced database is kept as \`${d.keptAs}\`; drop it when satisfied: DROP DATABASE "${d.keptAs}";`)
  if (report.pitr?.previousDir && report.status === 'rolled_back') kept.push(`remove the kept data directory when satisfied: rm -rf '${report.pitr.previousDir}'`)
  if (kept.length) sections.push({ heading: 'Kept for safety (keep-previous)', items: kept })
  return sections
}
