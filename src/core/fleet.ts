import picomatch from 'picomatch'
import type { Connector } from './connection.js'
import { withSession } from './connection.js'
import { CodedError } from './errors.js'
import { interruption } from './interrupt.js'

export interface DatabaseSelection {
  /** Names, glob patterns and `all`; empty means the database of the connection URL. */
  patterns: string[]
  exclude: string[]
}

interface DatabaseRow {
  datname: string
  datallowconn: boolean
  datistemplate: boolean
}

const isGlob = (pattern: string) => picomatch.scan(pattern).isGlob

/**
 * Resolves `databases` and `exclude-databases` against pg_database. `all` and patterns reach
 * every database that allows connections except templates and the databases a dump rollback
 * kept aside (`<db>__pre_rollback_<stamp>`); those only when named exactly.
 * No match is an error that lists what exists, never a silent success.
 */
export async function selectDatabases(connect: Connector, selection: DatabaseSelection, defaultDatabase: string): Promise<string[]> {
  if (selection.patterns.length === 0) return [defaultDatabase]
  const rows = await withSession(connect, { database: defaultDatabase, purpose: 'inspect' }, async (client) => {
    const result = await client.query<DatabaseRow>('SELECT datname, datallowconn, datistemplate FROM pg_database ORDER BY datname')
    return result.rows
  })
  return resolveSelection(rows, selection)
}

/** What marks a database a dump rollback kept aside (keep-previous): a tenant's past, not a tenant to upgrade. */
export const ASIDE_MARK = '__pre_rollback_'
const keptAside = (name: string) => name.includes(ASIDE_MARK)

/** Pure part of the selection, so that it can be tested on its own. */
export function resolveSelection(rows: DatabaseRow[], selection: DatabaseSelection): string[] {
  const byName = new Map(rows.map((row) => [row.datname, row]))
  const chosen = new Set<string>()
  for (const pattern of selection.patterns) {
    if (pattern === 'all') {
      for (const row of rows) if (row.datallowconn && !row.datistemplate && !keptAside(row.datname)) chosen.add(row.datname)
      continue
    }
    if (!isGlob(pattern)) {
      const row = byName.get(pattern)
      if (row && !row.datallowconn) {
        throw new CodedError('INVALID_INPUT', `input "databases": database ${pattern} does not allow connections`)
      }
      if (row) chosen.add(pattern)
      continue
    }
    const matches = picomatch(pattern, { dot: true })
    for (const row of rows) if (row.datallowconn && !row.datistemplate && !keptAside(row.datname) && matches(row.datname)) chosen.add(row.datname)
  }
  for (const pattern of selection.exclude) {
    const matches = isGlob(pattern) ? picomatch(pattern, { dot: true }) : (name: string) => name === pattern
    for (const name of [...chosen]) if (matches(name)) chosen.delete(name)
  }
  if (chosen.size === 0) {
    const existing = rows.filter((r) => r.datallowconn).map((r) => r.datname)
    const shown = existing.slice(0, 30).join(', ') + (existing.length > 30 ? `, … (${existing.length} in all)` : '')
    const excluded = selection.exclude.length > 0 ? ` minus exclude-databases (${selection.exclude.join(', ')})` : ''
    throw new CodedError('INVALID_INPUT', `input "databases": ${selection.patterns.join(', ')}${excluded} matches no database; existing databases: ${shown}`)
  }
  return [...chosen].sort()
}

/**
 * Runs `work` over the items with at most `concurrency` in flight. Before starting each item it
 * asks `mayStart` (and whether the process was interrupted); once that says no, nothing new
 * starts (work in flight finishes) and the remaining items come back as undefined, in their order.
 */
export async function runPool<T, R>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<R>,
  mayStart: () => boolean = () => true
): Promise<Array<R | undefined>> {
  const results: Array<R | undefined> = new Array(items.length).fill(undefined)
  let next = 0
  const worker = async () => {
    while (next < items.length && !interruption.aborted && mayStart()) {
      const index = next++
      results[index] = await work(items[index], index)
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker))
  return results
}
