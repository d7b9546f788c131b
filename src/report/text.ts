import { styleText } from 'node:util'
import type { Document, Section, Table } from './document.js'

type Paint = (style: 'bold' | 'green' | 'red' | 'yellow' | 'dim', text: string) => string

/** styleText drops styles when process.stdout is not a terminal unless told not to check: `--color` must win. */
export function painter(colour: boolean): Paint {
  return colour ? (style, text) => styleText(style, text, { validateStream: false }) : (_style, text) => text
}

function table({ columns, rows, note }: Table, paint: Paint): string {
  const widths = columns.map((column, i) => Math.min(60, Math.max(column.length, ...rows.map((row) => (row[i] ?? '').length))))
  const line = (cells: string[]) => cells.map((c, i) => (c.length > widths[i] ? `${c.slice(0, widths[i] - 1)}…` : c.padEnd(widths[i]))).join('  ').trimEnd()
  const out = [paint('bold', line(columns)), ...rows.map(line)]
  if (note) out.push(paint('dim', note))
  return out.join('\n')
}

function section(s: Section, paint: Paint): string {
  const parts = [paint('bold', s.heading)]
  if (s.text) parts.push(s.text)
  if (s.table) parts.push(table(s.table, paint))
  if (s.items) parts.push(s.items.map((item) => `  • ${item}`).join('\n'))
  return parts.join('\n')
}

/** Sections are written in Markdown; a terminal shows the words, not the `**` and backticks. */
const plain = (text: string) => text.replace(/\*\*(.+?)\*\*/g, '$1').replace(/(^|[^`])`([^`\n]+)`/g, '$1$2')

export function renderText(document: Document, colour: boolean): string {
  const paint = painter(colour)
  const headline = paint(document.ok ? 'green' : 'red', document.headline)
  return plain([paint('bold', document.title), headline, ...document.sections.map((s) => section(s, paint))].join('\n\n') + '\n')
}
