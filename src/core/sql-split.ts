import { CodedError } from './errors.js'

export interface Probe {
  sql: string
  /** From a `-- expect: <value>` comment inside the statement or right after its `;`, on the same line. */
  expect?: string
  /** 1-based line where the statement starts, for error messages. */
  line: number
}

/** Longest piece of a statement an error quotes: enough to find it, never a whole file. */
export const EXCERPT_LIMIT = 200

const EXPECT = /^--[ \t]*expect[ \t]*:(.*)$/i
/** PostgreSQL's identifier characters (scan.l ident_cont): letters, digits, `_`, `$` and any non-ASCII. */
const WORD_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/
const DOLLAR_TAG = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y

/**
 * Statements a probe may not run, by first keyword. A probe is one read-only query in a
 * transaction it cannot leave; these would leave or reshape that transaction or the session, run
 * code or programs outside the query, or are allowed by PostgreSQL even in a read-only transaction.
 */
const REFUSED: Record<string, string> = {
  BEGIN: 'transaction control',
  START: 'transaction control',
  COMMIT: 'transaction control',
  END: 'transaction control',
  ROLLBACK: 'transaction control',
  ABORT: 'transaction control',
  SAVEPOINT: 'transaction control',
  RELEASE: 'transaction control',
  PREPARE: 'transaction control',
  SET: 'session state',
  RESET: 'session state',
  DISCARD: 'session state',
  LISTEN: 'session state',
  UNLISTEN: 'session state',
  NOTIFY: 'session state',
  LOAD: 'session state',
  EXECUTE: 'session state',
  DEALLOCATE: 'session state',
  DECLARE: 'session state',
  FETCH: 'session state',
  MOVE: 'session state',
  CLOSE: 'session state',
  LOCK: 'session state',
  DO: 'a code block',
  CALL: 'a procedure call',
  COPY: 'server-side files and programs',
  VACUUM: 'maintenance',
  ANALYZE: 'maintenance',
  ANALYSE: 'maintenance',
  CLUSTER: 'maintenance',
  REINDEX: 'maintenance',
  CHECKPOINT: 'maintenance'
}

/** Two words that together name a refused statement whose first word alone is allowed. */
const REFUSED_PAIRS: Record<string, string> = { 'ALTER SYSTEM': 'server configuration' }

export const REFUSED_STATEMENTS = [...Object.keys(REFUSED), ...Object.keys(REFUSED_PAIRS)]

/** A statement as errors and reports quote it: whitespace collapsed, cut at EXCERPT_LIMIT characters. */
export function excerpt(sql: string): string {
  const flat = sql.replace(/\s+/g, ' ').trim()
  return flat.length > EXCERPT_LIMIT ? `${flat.slice(0, EXCERPT_LIMIT)}…` : flat
}

const quoted = (sql: string) => JSON.stringify(excerpt(sql))

interface Pending {
  start: number
  line: number
  /** The first two tokens when they are words, upper-cased, to recognise refused statements. */
  words: string[]
  leadingWords: boolean
  expect?: string
}

/**
 * Splits SQL into statements on `;` the way PostgreSQL's lexer sees them: standard strings with
 * doubled quotes, E'' strings with backslash escapes, dollar quotes with tags, quoted identifiers,
 * line comments and nested block comments. Each `-- expect: <value>` belongs to exactly one
 * statement — the one it stands inside (before the `;`, or in a last statement without one), or
 * the one whose `;` it follows on the same line. Whatever cannot be attached that way, statements
 * a probe may not run, and unterminated quotes or comments are INVALID_INPUT naming `input` and the line.
 */
export function splitStatements(text: string, input = 'verify-sql'): Probe[] {
  const probes: Probe[] = []
  const fail = (line: number, message: string): never => {
    throw new CodedError('INVALID_INPUT', `input "${input}", line ${line}: ${message}`)
  }
  let line = 1
  let i = 0
  let current: Pending | undefined
  /** The statement just ended by `;`, while only spaces separate that `;` from the cursor on its line. */
  let justEnded: Probe | undefined

  const begin = (kind: 'word' | 'other', word = '') => {
    if (!current) current = { start: i, line, words: [], leadingWords: true }
    if (kind === 'word' && current.leadingWords && current.words.length < 2) current.words.push(word.toUpperCase())
    else current.leadingWords = false
    justEnded = undefined
  }

  /** Advances over text[i, end), counting lines. */
  const advance = (end: number) => {
    for (; i < end; i++) if (text[i] === '\n') line++
  }

  const closeStatement = (end: number): Probe | undefined => {
    const statement = current
    current = undefined
    if (!statement) return undefined
    const sql = text.slice(statement.start, end).trim()
    const [first, second] = statement.words
    const reason = REFUSED[first] ?? REFUSED_PAIRS[`${first} ${second}`]
    if (reason !== undefined) {
      const name = REFUSED_PAIRS[`${first} ${second}`] ? `${first} ${second}` : first
      fail(statement.line, `a probe may not run ${name} (${reason}): each probe is one read-only query in a transaction it cannot leave; ${quoted(sql)}`)
    }
    const probe: Probe = { sql, line: statement.line, ...(statement.expect !== undefined ? { expect: statement.expect } : {}) }
    probes.push(probe)
    return probe
  }

  const attachExpect = (value: string) => {
    const target = justEnded ?? current
    if (!target) {
      return fail(line, '"-- expect:" belongs to no statement: write it after its statement\'s ";" on the same line, or inside the statement before the ";"')
    }
    if (target.expect !== undefined) fail(line, `a second "-- expect:" for the statement on line ${target.line}; each statement takes at most one`)
    target.expect = value
  }

  while (i < text.length) {
    const c = text[i]
    const next = text[i + 1]
    if (c === '\n' || c === '\r') {
      justEnded = undefined
      advance(i + 1)
    } else if (c === ' ' || c === '\t' || c === '\f' || c === '\v') {
      i++
    } else if (c === '-' && next === '-') {
      const end = lineEnd(text, i)
      const expect = EXPECT.exec(text.slice(i, end))
      if (expect) attachExpect(expect[1].trim())
      i = end
    } else if (c === '/' && next === '*') {
      const startLine = line
      const end = blockCommentEnd(text, i)
      if (end < 0) fail(startLine, `the block comment opened here is never closed: ${quoted(text.slice(i))}`)
      justEnded = undefined
      advance(end)
    } else if (c === ';') {
      justEnded = closeStatement(i)
      i++
    } else if (c === "'" || c === '"') {
      begin('other')
      const startLine = line
      const end = quotedEnd(text, i, c, false)
      if (end < 0) fail(startLine, `the ${c === "'" ? 'string' : 'quoted identifier'} opened here is never closed: ${quoted(text.slice(current!.start))}`)
      advance(end)
    } else if (c === '$' && dollarTag(text, i)) {
      const tag = dollarTag(text, i)!
      begin('other')
      const startLine = line
      const close = text.indexOf(tag, i + tag.length)
      if (close < 0) fail(startLine, `the dollar quote ${tag} opened here is never closed: ${quoted(text.slice(current!.start))}`)
      advance(close + tag.length)
    } else if (WORD_CHAR.test(c)) {
      let end = i + 1
      while (end < text.length && WORD_CHAR.test(text[end])) end++
      const word = text.slice(i, end)
      begin('word', word)
      if ((word === 'E' || word === 'e') && text[end] === "'") {
        // E'…': backslash escapes, so \' does not end the string (scan.l xestart).
        const startLine = line
        const close = quotedEnd(text, end, "'", true)
        if (close < 0) fail(startLine, `the string opened here is never closed: ${quoted(text.slice(current!.start))}`)
        advance(close)
      } else {
        i = end
      }
    } else {
      begin('other')
      i++
    }
  }
  closeStatement(text.length)
  return probes
}

/** The `$tag$` (or `$$`) opening a dollar quote at `from`, if one does. */
function dollarTag(text: string, from: number): string | undefined {
  DOLLAR_TAG.lastIndex = from
  return DOLLAR_TAG.exec(text)?.[0]
}

function lineEnd(text: string, from: number): number {
  const match = /[\r\n]/.exec(text.slice(from))
  return match ? from + match.index : text.length
}

/** The offset after the closing quote, or -1; a doubled quote stands for itself, and with `backslashes` so does \<any>. */
function quotedEnd(text: string, from: number, quote: string, backslashes: boolean): number {
  let i = from + 1
  while (i < text.length) {
    const c = text[i]
    if (backslashes && c === '\\') {
      i += 2
    } else if (c === quote) {
      if (text[i + 1] !== quote) return i + 1
      i += 2
    } else {
      i++
    }
  }
  return -1
}

/** The offset after the comment's matching `*\/` (comments nest in PostgreSQL), or -1. */
function blockCommentEnd(text: string, from: number): number {
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
  return -1
}
