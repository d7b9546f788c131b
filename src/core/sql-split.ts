export interface Probe {
  sql: string
  /** From a `-- expect: <value>` comment after the statement's `;`, on the same line. */
  expect?: string
  /** 1-based line where the statement starts, for error messages. */
  line: number
}

const EXPECT = /^[ \t]*--[ \t]*expect:[ \t]?(.*)$/

/**
 * Splits SQL into statements on `;`, respecting '…' and "…" quotes, $tag$…$tag$ bodies, and
 * line comments and (nested) block comments, as PostgreSQL's own lexer does.
 */
export function splitStatements(text: string): Probe[] {
  const probes: Probe[] = []
  let start = 0
  let i = 0
  const lineAt = (offset: number) => text.slice(0, offset).split('\n').length

  const push = (end: number, expect?: string) => {
    const raw = text.slice(start, end)
    const sql = raw.trim()
    if (sql.length > 0 && !/^(--[^\n]*\n?|\s)*$/.test(sql)) {
      const leading = raw.length - raw.trimStart().length
      probes.push({ sql, line: lineAt(start + leading), ...(expect !== undefined ? { expect: expect.trim() } : {}) })
    }
  }

  while (i < text.length) {
    const c = text[i]
    const next = text[i + 1]
    if (c === "'" || c === '"') {
      i = skipQuoted(text, i, c)
    } else if (c === '-' && next === '-') {
      i = text.indexOf('\n', i)
      if (i < 0) i = text.length
    } else if (c === '/' && next === '*') {
      i = skipBlockComment(text, i)
    } else if (c === '$') {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i))
      if (tag && !/[A-Za-z0-9_]/.test(text[i - 1] ?? '')) {
        const close = text.indexOf(tag[0], i + tag[0].length)
        i = close < 0 ? text.length : close + tag[0].length
      } else {
        i++
      }
    } else if (c === ';') {
      const lineEnd = text.indexOf('\n', i)
      const rest = text.slice(i + 1, lineEnd < 0 ? text.length : lineEnd)
      const expect = EXPECT.exec(rest)?.[1]
      push(i, expect)
      i = expect !== undefined ? (lineEnd < 0 ? text.length : lineEnd) : i + 1
      start = i
    } else {
      i++
    }
  }
  push(text.length)
  return probes
}

function skipQuoted(text: string, from: number, quote: string): number {
  let i = from + 1
  while (i < text.length) {
    if (text[i] === quote) {
      if (text[i + 1] === quote) i += 2
      else return i + 1
    } else {
      i++
    }
  }
  return text.length
}

function skipBlockComment(text: string, from: number): number {
  let depth = 0
  let i = from
  while (i < text.length) {
    if (text[i] === '/' && text[i + 1] === '*') {
      depth++
      i += 2
    } else if (text[i] === '*' && text[i + 1] === '/') {
      depth--
      i += 2
      if (depth === 0) return i
    } else {
      i++
    }
  }
  return text.length
}
