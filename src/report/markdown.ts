import type { Document, Section, Table } from './document.js'

/** GitHub rejects a step summary over 1 MiB; stay clear of it. */
export const SUMMARY_LIMIT_BYTES = 1_000_000

const cell = (value: string) => value.replace(/\|/g, '\\|').replace(/\r?\n/g, '<br>') || ' '

function table({ columns, rows, note }: Table): string {
  const lines = [`| ${columns.map(cell).join(' | ')} |`, `|${columns.map(() => ' --- ').join('|')}|`]
  for (const row of rows) lines.push(`| ${row.map(cell).join(' | ')} |`)
  if (note) lines.push('', `_${note}_`)
  return lines.join('\n')
}

function section(s: Section): string {
  const body = [s.text ?? '', s.table ? table(s.table) : '', s.items ? s.items.map((i) => `- ${i.replace(/\r?\n/g, ' ')}`).join('\n') : '']
    .filter((part) => part.length > 0)
    .join('\n\n')
  if (s.folded) return `<details><summary>${s.heading}</summary>\n\n${body}\n\n</details>`
  return `### ${s.heading}\n\n${body}`
}

export function renderMarkdown(document: Document, limitBytes = SUMMARY_LIMIT_BYTES): string {
  const text = [`## ${document.title}`, document.headline, ...document.sections.map(section)].join('\n\n') + '\n'
  return trimToBytes(text, limitBytes)
}

/** Cuts on a line boundary and says so, rather than letting GitHub reject the whole text. */
export function trimToBytes(text: string, limitBytes: number): string {
  const bytes = Buffer.from(text)
  if (bytes.length <= limitBytes) return text
  const notice = '\n\n_…trimmed to fit GitHub’s size limit; the full report is in the JSON file._\n'
  const room = Math.max(0, limitBytes - Buffer.byteLength(notice))
  // A cut inside a multi-byte character decodes to U+FFFD; the line it is on is dropped anyway.
  const kept = bytes.subarray(0, room).toString('utf8')
  return kept.slice(0, Math.max(0, kept.lastIndexOf('\n'))) + notice
}
