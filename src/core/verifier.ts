import type pg from 'pg'
import { textArrayLiteral } from './catalog.js'
import { withSession, type Connector } from './connection.js'
import type { Code } from './codes.js'
import { describePgError, pgErrorFields } from './pg-error.js'
import { excerpt, type Probe } from './sql-split.js'

export type CheckName = 'version' | 'library' | 'members' | 'dependents' | 'probe' | 'drift'

export interface VerifyCheck {
  check: CheckName
  extension?: string
  ok: boolean
  /** The check could not run (for example the role may not call a validator); not a failure. */
  skipped?: boolean
  message: string
  details?: string[]
}

export interface MemberChange {
  added: string[]
  removed: string[]
}

export interface VerifyDatabaseReport {
  name: string
  ok: boolean
  checks: VerifyCheck[]
  /** What the update added to and removed from each extension, against the plan's inspection. */
  memberChanges: Record<string, MemberChange>
}

/** What a database should look like: each extension at a version, or at its default (null). */
export interface Expectation {
  name: string
  version: string | null
  /** The target was the control-file default, so being behind the default is drift. */
  drift: boolean
  /** Member objects recorded before the change, to report what was added and removed. */
  membersBefore?: string[]
}

export interface VerifyOptions {
  /** null: every installed extension, at its control-file default. */
  expectations: Expectation[] | null
  probes: Probe[]
  statementTimeoutMs: number
}

export const CHECK_CODES: Record<CheckName, Code> = {
  version: 'VERIFY_FAILED',
  library: 'LIBRARY_MISMATCH',
  members: 'VERIFY_FAILED',
  dependents: 'VERIFY_FAILED',
  probe: 'VERIFY_FAILED',
  drift: 'DRIFT'
}

const DETAIL_LIMIT = 50

/** Catalog facts for the checks, in one round trip; `%NAMES%` is a driver-escaped array literal. */
const CATALOG_SQL = `
WITH ext AS MATERIALIZED (
  SELECT e.oid, e.extname, e.extversion, a.default_version
  FROM pg_extension e LEFT JOIN pg_available_extensions a ON a.name = e.extname
  WHERE cardinality(%NAMES%::text[]) = 0 OR e.extname = ANY (%NAMES%::text[])
),
members AS MATERIALIZED (
  SELECT x.extname, d.classid, d.objid, d.objsubid
  FROM ext x JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = x.oid AND d.deptype = 'e'
),
dangling AS (
  SELECT extname, format('member %s %s no longer exists', classid::regclass, objid) AS problem
  FROM members WHERE pg_describe_object(classid, objid, objsubid) IS NULL
  UNION ALL
  SELECT m.extname, format('operator %s uses function %s, which no longer exists', o.oid::regoperator, o.oprcode::oid)
  FROM members m JOIN pg_operator o ON m.classid = 'pg_operator'::regclass AND o.oid = m.objid
  WHERE o.oprcode <> 0 AND NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = o.oprcode)
  UNION ALL
  SELECT m.extname, format('operator family %s lists operator %s, which no longer exists', f.opfname, a.amopopr)
  FROM members m JOIN pg_opfamily f ON m.classid = 'pg_opfamily'::regclass AND f.oid = m.objid
  JOIN pg_amop a ON a.amopfamily = f.oid
  WHERE NOT EXISTS (SELECT 1 FROM pg_operator o WHERE o.oid = a.amopopr)
  UNION ALL
  SELECT m.extname, format('operator family %s lists support function %s, which no longer exists', f.opfname, a.amproc::oid)
  FROM members m JOIN pg_opfamily f ON m.classid = 'pg_opfamily'::regclass AND f.oid = m.objid
  JOIN pg_amproc a ON a.amprocfamily = f.oid
  WHERE NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = a.amproc)
  UNION ALL
  SELECT m.extname, format('operator class %s belongs to a missing family', c.opcname)
  FROM members m JOIN pg_opclass c ON m.classid = 'pg_opclass'::regclass AND c.oid = m.objid
  WHERE NOT EXISTS (SELECT 1 FROM pg_opfamily f WHERE f.oid = c.opcfamily)
  UNION ALL
  SELECT m.extname, format('cast %s uses function %s, which no longer exists', pg_describe_object(m.classid, m.objid, 0), c.castfunc)
  FROM members m JOIN pg_cast c ON m.classid = 'pg_cast'::regclass AND c.oid = m.objid
  WHERE c.castfunc <> 0 AND NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = c.castfunc)
  UNION ALL
  SELECT m.extname, format('type %s has an I/O function that no longer exists', t.oid::regtype)
  FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
  WHERE EXISTS (SELECT 1 FROM unnest(ARRAY[t.typinput, t.typoutput, t.typreceive, t.typsend]::oid[]) f(fn)
                WHERE f.fn <> 0 AND NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = f.fn))
),
dependent_objects AS MATERIALIZED (
  SELECT DISTINCT m.extname, d.classid, d.objid
  FROM members m JOIN pg_depend d ON d.refclassid = m.classid AND d.refobjid = m.objid AND d.deptype IN ('n', 'a')
  WHERE NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = d.classid AND x.objid = d.objid AND x.deptype = 'e')
)
SELECT json_build_object(
  'superuser', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
  'extensions', (SELECT coalesce(json_agg(json_build_object('name', extname, 'version', extversion, 'default', default_version)), '[]') FROM ext),
  'members', (SELECT coalesce(json_object_agg(extname, objects), '{}') FROM (
      SELECT extname, array_agg(pg_describe_object(classid, objid, 0) ORDER BY pg_describe_object(classid, objid, 0)) AS objects
      FROM members GROUP BY extname) x),
  'dangling', (SELECT coalesce(json_agg(json_build_object('extension', extname, 'problem', problem)), '[]') FROM dangling),
  'cFunctions', (SELECT coalesce(json_agg(json_build_object('extension', m.extname, 'oid', p.oid, 'name', p.oid::regprocedure::text)), '[]')
      FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
      JOIN pg_language l ON l.oid = p.prolang WHERE l.lanname = 'c'),
  'indexes', (SELECT coalesce(json_agg(json_build_object('extension', o.extname, 'name', i.indexrelid::regclass::text, 'valid', i.indisvalid, 'ready', i.indisready)), '[]')
      FROM dependent_objects o JOIN pg_index i ON o.classid = 'pg_class'::regclass AND i.indexrelid = o.objid),
  'views', (SELECT coalesce(json_agg(DISTINCT jsonb_build_object('extension', o.extname, 'oid', r.ev_class, 'name', r.ev_class::regclass::text)), '[]')
      FROM dependent_objects o JOIN pg_rewrite r ON o.classid = 'pg_rewrite'::regclass AND r.oid = o.objid
      JOIN pg_class c ON c.oid = r.ev_class AND c.relkind IN ('v', 'm')),
  'functions', (SELECT coalesce(json_agg(json_build_object('extension', o.extname, 'oid', p.oid, 'name', p.oid::regprocedure::text, 'validator', l.lanvalidator)), '[]')
      FROM dependent_objects o JOIN pg_proc p ON o.classid = 'pg_proc'::regclass AND p.oid = o.objid
      JOIN pg_language l ON l.oid = p.prolang WHERE l.lanvalidator <> 0 AND l.lanname <> 'c')
) AS facts`

interface Facts {
  superuser: boolean
  extensions: Array<{ name: string; version: string; default: string | null }>
  members: Record<string, string[]>
  dangling: Array<{ extension: string; problem: string }>
  cFunctions: Array<{ extension: string; oid: number; name: string }>
  indexes: Array<{ extension: string; name: string; valid: boolean; ready: boolean }>
  views: Array<{ extension: string; oid: number; name: string }>
  functions: Array<{ extension: string; oid: number; name: string; validator: number }>
}

interface Resolution {
  kind: 'library' | 'view' | 'function'
  extension: string
  name: string
  sqlstate: string
  message: string
}

/**
 * Tries each object the way the server itself would — the C validator loads the library and
 * looks the symbol up without calling the function; views are planned (EXPLAIN); SQL and PL/pgSQL bodies
 * are validated — in one anonymous block that catches each failure and reports it as a notice.
 */
function resolutionBlock(facts: Facts, includeC: boolean): string | null {
  const items = [
    ...(includeC ? facts.cFunctions.map((f) => ({ kind: 'library', extension: f.extension, name: f.name, sql: `PERFORM fmgr_c_validator(${Number(f.oid)}::oid)` })) : []),
    ...facts.views.map((v) => ({ kind: 'view', extension: v.extension, name: v.name, sql: `EXECUTE format('EXPLAIN SELECT * FROM %s', ${Number(v.oid)}::oid::regclass)` })),
    ...facts.functions.map((f) => ({ kind: 'function', extension: f.extension, name: f.name, sql: `EXECUTE format('SELECT %s(%s::oid)', ${Number(f.validator)}::oid::regproc, ${Number(f.oid)})` }))
  ]
  if (items.length === 0) return null
  const attempts = items
    .map(
      (item, index) => `
  BEGIN ${item.sql};
  EXCEPTION WHEN OTHERS THEN
    failures := failures || jsonb_build_object('index', ${index}, 'sqlstate', SQLSTATE, 'message', SQLERRM);
  END;`
    )
    .join('')
  const legend = JSON.stringify(items.map(({ kind, extension, name }) => ({ kind, extension, name })))
  return `DO $pgxu$
DECLARE failures jsonb := '[]';
BEGIN
  PERFORM set_config('check_function_bodies', 'on', true);${attempts}
  RAISE NOTICE 'pgxu-resolution %', jsonb_build_object('legend', ${dollarQuote(legend)}::jsonb, 'failures', failures);
END
$pgxu$`
}

function dollarQuote(text: string): string {
  let tag = 'pgxu_legend'
  while (text.includes(`$${tag}$`)) tag += '_'
  return `$${tag}$${text}$${tag}$`
}

async function resolveObjects(client: pg.Client, block: string): Promise<Resolution[]> {
  let payload: string | undefined
  const onNotice = (notice: { message?: string }) => {
    if (notice.message?.startsWith('pgxu-resolution ')) payload = notice.message.slice('pgxu-resolution '.length)
  }
  client.on('notice', onNotice)
  try {
    await client.query(block)
  } finally {
    client.off('notice', onNotice)
  }
  if (!payload) throw new Error('the resolution block reported nothing')
  const { legend, failures } = JSON.parse(payload) as {
    legend: Array<{ kind: Resolution['kind']; extension: string; name: string }>
    failures: Array<{ index: number; sqlstate: string; message: string }>
  }
  return failures.map((f) => ({ ...legend[f.index], sqlstate: f.sqlstate, message: f.message }))
}

const capped = (items: string[]) => (items.length > DETAIL_LIMIT ? [...items.slice(0, DETAIL_LIMIT), `… and ${items.length - DETAIL_LIMIT} more`] : items)

/** Proves a database's state read-only: versions, libraries, members, dependents, probes, drift. */
export async function verifyDatabase(connect: Connector, database: string, options: VerifyOptions): Promise<VerifyDatabaseReport> {
  return withSession(
    connect,
    { database, purpose: 'verify', settings: { default_transaction_read_only: 'on', standard_conforming_strings: 'on', statement_timeout: `${options.statementTimeoutMs}ms` } },
    async (client) => {
      const names = options.expectations?.map((e) => e.name) ?? []
      const sql = CATALOG_SQL.replaceAll('%NAMES%', textArrayLiteral(client, names))
      await client.query('BEGIN TRANSACTION READ ONLY')
      try {
        const facts = (await client.query(sql)).rows[0].facts as Facts
        const checks: VerifyCheck[] = []
        const expectations = options.expectations ?? facts.extensions.map((e) => ({ name: e.name, version: null, drift: true }))
        checkVersions(facts, expectations, checks)
        for (const problem of facts.dangling) {
          checks.push({ check: 'members', extension: problem.extension, ok: false, message: problem.problem })
        }
        const memberChanges = diffMembers(facts, expectations)
        const block = resolutionBlock(facts, facts.superuser)
        const failures = block ? await resolveObjects(client, block) : []
        checkLibraries(facts, expectations, failures, checks)
        checkDependents(facts, failures, checks)
        await runProbes(client, options.probes, checks)
        for (const extension of expectations) {
          if (!checks.some((c) => c.extension === extension.name && c.check === 'members')) {
            const change = memberChanges[extension.name]
            const moved = change ? ` (${change.added.length} added, ${change.removed.length} removed by the update)` : ''
            checks.push({ check: 'members', extension: extension.name, ok: true, message: `no dangling member${moved}` })
          }
        }
        return { name: database, ok: checks.every((c) => c.ok), checks, memberChanges }
      } finally {
        await client.query('ROLLBACK').catch(() => undefined)
      }
    }
  )
}

function checkVersions(facts: Facts, expectations: Expectation[], checks: VerifyCheck[]): void {
  for (const expected of expectations) {
    const actual = facts.extensions.find((e) => e.name === expected.name)
    if (!actual) {
      checks.push({ check: 'version', extension: expected.name, ok: false, message: `${expected.name} is not installed` })
      continue
    }
    const target = expected.version ?? actual.default
    if (target === null) {
      checks.push({ check: 'version', extension: expected.name, ok: false, message: `${expected.name} ${actual.version} is installed but the server no longer ships it` })
      continue
    }
    const ok = actual.version === target
    checks.push({
      check: 'version',
      extension: expected.name,
      ok,
      message: ok ? `${expected.name} is at ${target}` : `${expected.name} is at ${actual.version}, expected ${target}`
    })
    if (expected.drift && actual.default !== null && actual.version !== actual.default) {
      checks.push({ check: 'drift', extension: expected.name, ok: false, message: `the catalog says ${actual.version} but the server ships ${actual.default} as the default` })
    }
  }
}

function diffMembers(facts: Facts, expectations: Expectation[]): Record<string, MemberChange> {
  const changes: Record<string, MemberChange> = {}
  for (const expected of expectations) {
    if (!expected.membersBefore) continue
    const before = new Set(expected.membersBefore)
    const after = new Set(facts.members[expected.name] ?? [])
    changes[expected.name] = {
      added: [...after].filter((m) => !before.has(m)),
      removed: [...before].filter((m) => !after.has(m))
    }
  }
  return changes
}

function checkLibraries(facts: Facts, expectations: Expectation[], failures: Resolution[], checks: VerifyCheck[]): void {
  for (const expected of expectations) {
    const functions = facts.cFunctions.filter((f) => f.extension === expected.name)
    if (functions.length === 0) continue
    if (!facts.superuser) {
      checks.push({ check: 'library', extension: expected.name, ok: true, skipped: true, message: `${functions.length} C function(s) not checked: calling the C validator needs a superuser` })
      continue
    }
    const broken = failures.filter((f) => f.kind === 'library' && f.extension === expected.name)
    checks.push({
      check: 'library',
      extension: expected.name,
      ok: broken.length === 0,
      message:
        broken.length === 0
          ? `all ${functions.length} C function(s) resolve in their libraries`
          : `${broken.length} of ${functions.length} C function(s) do not resolve: the catalog is newer than the installed library`,
      ...(broken.length > 0 ? { details: capped(broken.map((b) => `${b.name}: ${b.message} (SQLSTATE ${b.sqlstate})`)) } : {})
    })
  }
}

function checkDependents(facts: Facts, failures: Resolution[], checks: VerifyCheck[]): void {
  const byExtension = new Map<string, string[]>()
  const problem = (extension: string, text: string) => byExtension.set(extension, [...(byExtension.get(extension) ?? []), text])
  for (const index of facts.indexes) {
    if (!index.valid || !index.ready) problem(index.extension, `index ${index.name} is ${index.valid ? 'not ready' : 'invalid'}`)
  }
  const denied = failures.filter((f) => f.kind !== 'library' && f.sqlstate === '42501')
  for (const failure of failures.filter((f) => f.kind !== 'library' && f.sqlstate !== '42501')) {
    problem(failure.extension, `${failure.kind} ${failure.name} no longer resolves: ${failure.message} (SQLSTATE ${failure.sqlstate})`)
  }
  const extensions = new Set([...facts.indexes, ...facts.views, ...facts.functions].map((o) => o.extension))
  for (const extension of extensions) {
    const problems = byExtension.get(extension) ?? []
    const count = [...facts.indexes, ...facts.views, ...facts.functions].filter((o) => o.extension === extension).length
    const skipped = denied.filter((d) => d.extension === extension).length
    const note = skipped > 0 ? `; ${skipped} not readable by this role` : ''
    checks.push({
      check: 'dependents',
      extension,
      ok: problems.length === 0,
      message: problems.length === 0 ? `${count} dependent user object(s) valid${note}` : `${problems.length} of ${count} dependent user object(s) broken${note}`,
      ...(problems.length > 0 ? { details: capped(problems) } : {})
    })
  }
}

/**
 * Each probe is one statement: the extended protocol (Parse/Bind/Execute) refuses a string holding
 * two, so nothing the splitter missed can run unseen. It runs inside the verify transaction, which is
 * READ ONLY on a session whose default is read-only too; the splitter has already refused the
 * statements that could leave or reshape that transaction.
 */
async function runProbes(client: pg.Client, probes: Probe[], checks: VerifyCheck[]): Promise<void> {
  for (const [index, probe] of probes.entries()) {
    const label = `probe ${index + 1} (line ${probe.line})`
    const statement = excerpt(probe.sql)
    await client.query('SAVEPOINT pgxu_probe')
    try {
      // Values stay in PostgreSQL's text form (t/f, 2024-01-01 …), as psql would print them.
      const query: pg.QueryArrayConfig & { queryMode: 'extended' } = {
        text: probe.sql,
        rowMode: 'array',
        queryMode: 'extended',
        types: { getTypeParser: () => (value: string) => value }
      }
      const { rows } = await client.query(query)
      await client.query('RELEASE SAVEPOINT pgxu_probe')
      if (probe.expect === undefined) {
        checks.push({ check: 'probe', ok: true, message: `${label} succeeded` })
        continue
      }
      const value = rows.length === 1 && rows[0].length === 1 ? String(rows[0][0] ?? 'null') : undefined
      const ok = value === probe.expect
      const got = value === undefined ? `${rows.length} row(s) instead of one value` : JSON.stringify(value)
      checks.push({ check: 'probe', ok, message: ok ? `${label} returned ${JSON.stringify(probe.expect)}` : `${label} returned ${got}, expected ${JSON.stringify(probe.expect)}`, details: [statement] })
    } catch (error) {
      await client.query('ROLLBACK TO SAVEPOINT pgxu_probe')
      const { sqlstate } = pgErrorFields(error)
      checks.push({ check: 'probe', ok: false, message: `${label} failed: ${describePgError(error)}${sqlstate === '25006' ? ' (probes run read-only)' : ''}`, details: [statement] })
    }
  }
}
