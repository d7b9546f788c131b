import type pg from 'pg'
import { quirkOf } from './quirks.js'
import { splitPath } from './versions.js'

/** One shipped version of an extension (pg_available_extension_versions). */
export interface AvailableVersion {
  version: string
  superuser: boolean
  trusted: boolean
  relocatable: boolean
  schema: string | null
  requires: string[]
}

export interface AvailableExtension {
  name: string
  defaultVersion: string | null
  versions: AvailableVersion[]
}

/** Facts that are the same for every database of a server. */
export interface ServerFacts {
  version: string
  versionNum: number
  inRecovery: boolean
  /** null when the role may not read the setting (needs pg_read_all_settings). */
  preloadLibraries: string[] | null
  role: string
  superuser: boolean
  available: Record<string, AvailableExtension>
}

export interface InstalledExtension {
  name: string
  version: string
  schema: string
  owner: string
  /** The current role has the privileges of the owner, so it may ALTER the extension. */
  ownedByMe: boolean
  relocatable: boolean
}

export interface SessionInfo {
  pid: number
  user: string | null
  application: string | null
  state: string | null
  ageMs: number | null
  query: string | null
}

export interface LockHolder extends SessionInfo {
  extension: string
  relation: string
  mode: string
}

export interface Dependents {
  count: number
  sample: string[]
}

export interface DatabaseFacts {
  name: string
  canCreate: boolean
  /** default_transaction_read_only is on for this database (server, database or role setting). */
  readOnly: boolean
  /** Installed extensions looked at closely: the targets, or those behind their default version. */
  inScope: string[]
  installed: Record<string, InstalledExtension>
  /** Per extension in scope: target version → every hop from the installed version. */
  paths: Record<string, Record<string, string[]>>
  /** User objects that depend on members of the extension. */
  dependents: Record<string, Dependents>
  /** Member objects (pg_describe_object), for extensions in scope. */
  members: Record<string, string[]>
  locks: LockHolder[]
  longTransactions: SessionInfo[]
  /** Loaded library versions for extensions that can tell (quirks' libraryProbe). */
  libraries: Record<string, string | null>
}

export interface InspectOptions {
  /** Extensions to look at closely; empty means every installed one behind its default version. */
  targets: string[]
  longTransactionMs: number
  /**
   * 'plan' reads everything a dry-run reports; 'apply' only what re-planning under the advisory
   * lock needs (installed versions, paths, privileges), not dependents, locks or members.
   */
  depth?: 'plan' | 'apply'
  /** Update paths and member lists already read from another database of the same server. */
  cache?: CatalogCache
  /**
   * Takes this session advisory lock in the same round trip, before the snapshot is read (execute:
   * the lock serialises runs, and the inspection must see what the previous holder left).
   */
  advisoryLock?: readonly [number, number]
}

/**
 * Update paths and member lists depend on the server's extension files and the installed
 * version, not on the database: a fleet reads them once per `name@version`.
 */
export class CatalogCache {
  private readonly paths = new Map<string, Record<string, string[]>>()
  private readonly members = new Map<string, string[]>()

  known(): string[] {
    return [...this.paths.keys()]
  }

  /** Fills a database's facts from the cache, and the cache from the database's facts. */
  exchange(database: DatabaseFacts, depth: 'plan' | 'apply'): void {
    for (const name of database.inScope) {
      const installed = database.installed[name]
      if (!installed) continue
      const key = `${name}@${installed.version}`
      if (name in database.paths) this.paths.set(key, database.paths[name])
      else if (this.paths.has(key)) database.paths[name] = this.paths.get(key)!
      if (depth !== 'plan') continue
      if (name in database.members) this.members.set(key, database.members[name])
      else if (this.members.has(key)) database.members[name] = this.members.get(key)!
    }
  }
}

const SERVER_SQL = `
SELECT json_build_object(
  'version', current_setting('server_version'),
  'versionNum', current_setting('server_version_num')::int,
  'inRecovery', pg_is_in_recovery(),
  'preload', (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'),
  'role', current_user,
  'superuser', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
  'available', (
    SELECT coalesce(json_agg(json_build_object('name', a.name, 'defaultVersion', a.default_version, 'versions', v.versions)), '[]')
    FROM pg_available_extensions a
    JOIN (
      SELECT name, json_agg(json_build_object(
        'version', version, 'superuser', superuser, 'trusted', trusted, 'relocatable', relocatable,
        'schema', schema, 'requires', coalesce(requires, '{}'::name[])) ORDER BY version) AS versions
      FROM pg_available_extension_versions GROUP BY name
    ) v USING (name)
  )
) AS server`

/**
 * The per-database part, in two layers. The common part — installed extensions, the targets,
 * their update paths, privileges — is all that the re-inspection under execute's advisory lock
 * needs. A plan adds the members, the user objects that depend on them, the locks held on them
 * and the long transactions: on a fresh session that part costs several times the rest, so the
 * re-inspection does without it. `%TARGETS%`, `%KNOWN%` and `%LONG_TX_MS%` are replaced by
 * driver-escaped literals.
 */
const COMMON_CTES = `
installed AS MATERIALIZED (
  SELECT e.oid, e.extname AS name, e.extversion AS version, n.nspname AS schema,
         pg_get_userbyid(e.extowner) AS owner, pg_has_role(e.extowner, 'USAGE') AS owned_by_me,
         e.extrelocatable AS relocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
),
targets AS (SELECT unnest(%TARGETS%::text[]) AS name),
known AS (SELECT unnest(%KNOWN%::text[]) AS key),
-- pg_available_extensions parses every control file: read it only when a row needs it (a CTE is
-- scanned lazily), which a re-inspection with explicit targets and cached paths never does.
available AS MATERIALIZED (SELECT name, default_version FROM pg_available_extensions),
in_scope AS MATERIALIZED (
  SELECT i.*, i.name || '@' || i.version AS key
  FROM installed i
  WHERE i.name IN (SELECT name FROM targets)
     OR (NOT EXISTS (SELECT 1 FROM targets)
         AND (SELECT a.default_version FROM available a WHERE a.name = i.name) IS DISTINCT FROM i.version)
),
paths AS (
  SELECT s.name, json_object_agg(p.target, p.path) AS paths
  FROM (SELECT * FROM in_scope s WHERE s.key NOT IN (SELECT key FROM known) AND EXISTS (SELECT 1 FROM available a WHERE a.name = s.name)) s
  CROSS JOIN LATERAL pg_extension_update_paths(s.name) p
  WHERE p.source = s.version AND p.path IS NOT NULL
  GROUP BY s.name
)`

const COMMON_FIELDS = `
  'name', current_database(),
  'canCreate', has_database_privilege(current_database(), 'CREATE'),
  'readOnly', current_setting('default_transaction_read_only') = 'on',
  'inScope', (SELECT coalesce(json_agg(name ORDER BY name), '[]') FROM in_scope),
  'installed', (SELECT coalesce(json_agg(json_build_object('name', name, 'version', version, 'schema', schema,
      'owner', owner, 'ownedByMe', owned_by_me, 'relocatable', relocatable)), '[]') FROM installed),
  'paths', (SELECT coalesce(json_object_agg(name, paths), '{}') FROM paths)`

const PLAN_CTES = `
members AS MATERIALIZED (
  SELECT s.name AS extension, d.classid, d.objid, s.key IN (SELECT key FROM known) AS known
  FROM in_scope s JOIN pg_depend d
    ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = s.oid AND d.deptype = 'e'
),
dependents AS (
  -- Membership is looked up in pg_depend through its (classid, objid) index: a CTE of all
  -- members would be scanned once per dependent, quadratic in the number of members.
  SELECT m.extension, pg_describe_object(d.classid, d.objid, d.objsubid) AS object
  FROM members m
  JOIN pg_depend d ON d.refclassid = m.classid AND d.refobjid = m.objid AND d.deptype IN ('n', 'a')
  WHERE NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = d.classid AND x.objid = d.objid AND x.deptype = 'e')
    AND NOT EXISTS (
      SELECT 1 FROM pg_depend o JOIN pg_depend x ON x.classid = o.refclassid AND x.objid = o.refobjid AND x.deptype = 'e'
      WHERE o.classid = d.classid AND o.objid = d.objid AND o.deptype IN ('i', 'a'))
),
dependents_agg AS (
  SELECT extension, count(DISTINCT object) AS count,
         (array_agg(DISTINCT object ORDER BY object))[1:20] AS sample
  FROM dependents GROUP BY extension
),
locks AS (
  SELECT m.extension, l.pid, l.relation::regclass::text AS relation, l.mode
  FROM members m
  JOIN pg_locks l ON m.classid = 'pg_class'::regclass AND l.locktype = 'relation' AND l.relation = m.objid
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  WHERE l.pid <> pg_backend_pid() AND l.granted
)`

const PLAN_FIELDS = `
  'members', (SELECT coalesce(json_object_agg(extension, objects), '{}') FROM (
      SELECT extension, array_agg(pg_describe_object(classid, objid, 0) ORDER BY pg_describe_object(classid, objid, 0)) AS objects
      FROM members WHERE NOT known GROUP BY extension) mm),
  'dependents', (SELECT coalesce(json_object_agg(extension, json_build_object('count', count, 'sample', sample)), '{}')
      FROM dependents_agg),
  'locks', (SELECT coalesce(json_agg(row_to_json(x)), '[]') FROM (
      SELECT l.extension, l.relation, l.mode, a.pid, a.usename AS user, a.application_name AS application, a.state,
             (extract(epoch FROM now() - coalesce(a.xact_start, a.query_start)) * 1000)::bigint AS "ageMs",
             left(a.query, 500) AS query
      FROM locks l JOIN pg_stat_activity a ON a.pid = l.pid) x),
  'longTransactions', (SELECT coalesce(json_agg(row_to_json(x)), '[]') FROM (
      SELECT pid, usename AS user, application_name AS application, state,
             (extract(epoch FROM now() - xact_start) * 1000)::bigint AS "ageMs", left(query, 500) AS query
      FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
        AND xact_start < now() - make_interval(secs => %LONG_TX_MS% / 1000.0)
      ORDER BY xact_start) x)`

const APPLY_EMPTY_FIELDS = `
  'members', '{}'::json, 'dependents', '{}'::json, 'locks', '[]'::json, 'longTransactions', '[]'::json`

const DATABASE_SQL = {
  plan: `WITH ${COMMON_CTES},${PLAN_CTES}\nSELECT json_build_object(${COMMON_FIELDS},${PLAN_FIELDS}\n) AS database`,
  apply: `WITH ${COMMON_CTES}\nSELECT json_build_object(${COMMON_FIELDS},${APPLY_EMPTY_FIELDS}\n) AS database`
} as const

interface RawDatabase extends Omit<DatabaseFacts, 'installed' | 'paths' | 'libraries'> {
  installed: InstalledExtension[]
  paths: Record<string, Record<string, string>>
}

interface RawServer extends Omit<ServerFacts, 'available' | 'preloadLibraries'> {
  preload: string | null
  available: AvailableExtension[]
}

export interface Inspection {
  server?: ServerFacts
  database: DatabaseFacts
  /** Statements sent to the server, for the round-trip benchmark and its test. */
  roundTrips: number
}

/**
 * Reads everything a plan needs from one database in one round trip: a READ ONLY transaction
 * sent as a single simple-protocol string. Library probes, which fail on a broken install, run
 * afterwards in read-only transactions of their own, only for the extensions that have one.
 */
export async function inspectDatabase(
  client: pg.Client,
  options: InspectOptions,
  includeServer: boolean
): Promise<Inspection> {
  const depth = options.depth ?? 'plan'
  const databaseSql = DATABASE_SQL[depth]
    .replace('%TARGETS%', textArrayLiteral(client, options.targets))
    .replace('%KNOWN%', textArrayLiteral(client, options.cache?.known() ?? []))
    .replace('%LONG_TX_MS%', client.escapeLiteral(String(options.longTransactionMs)))
  const lock = options.advisoryLock ? [`SELECT pg_advisory_lock(${options.advisoryLock.map((k) => Math.trunc(k)).join(', ')})`] : []
  const statements = [...lock, 'BEGIN TRANSACTION READ ONLY', databaseSql, ...(includeServer ? [SERVER_SQL] : []), 'COMMIT']
  const results = await readOnly(client, statements)
  const at = statements.indexOf(databaseSql)
  const database = toDatabaseFacts(results[at].rows[0].database as RawDatabase)
  options.cache?.exchange(database, depth)
  const server = includeServer ? toServerFacts(results[at + 1].rows[0].server as RawServer) : undefined
  const probes = await readLibraries(client, database.inScope)
  database.libraries = probes.libraries
  return { server, database, roundTrips: 1 + probes.roundTrips }
}

/**
 * Asks each extension that can tell (quirks' libraryProbe) which library version the server
 * loads: null when the probe fails; extensions without a probe are left out (unknown).
 */
export async function readLibraries(client: pg.Client, names: string[]): Promise<{ libraries: Record<string, string | null>; roundTrips: number }> {
  const libraries: Record<string, string | null> = {}
  let roundTrips = 0
  for (const name of names) {
    const probe = quirkOf(name).libraryProbe
    if (!probe) continue
    libraries[name] = await probeLibrary(client, probe.sql)
    roundTrips++
  }
  return { libraries, roundTrips }
}

/** Runs statements as one simple-protocol string; a failure leaves no open transaction behind. */
async function readOnly(client: pg.Client, statements: string[]): Promise<pg.QueryResult[]> {
  try {
    return (await client.query(`${statements.join(';\n')};`)) as unknown as pg.QueryResult[]
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined)
    throw error
  }
}

async function probeLibrary(client: pg.Client, sql: string): Promise<string | null> {
  try {
    const results = await readOnly(client, ['BEGIN TRANSACTION READ ONLY', sql, 'COMMIT'])
    const value = Object.values(results[1].rows[0] ?? {})[0]
    return typeof value === 'string' && value.length > 0 ? value : null
  } catch {
    return null
  }
}

/** Reads the facts shared by every database of the server, in a read-only transaction of its own. */
export async function inspectServer(client: pg.Client): Promise<ServerFacts> {
  const results = await readOnly(client, ['BEGIN TRANSACTION READ ONLY', SERVER_SQL, 'COMMIT'])
  return toServerFacts(results[1].rows[0].server as RawServer)
}

/** A text[] literal for `values`, escaped by the driver, to splice into a simple-protocol string. */
export function textArrayLiteral(client: pg.Client, values: readonly string[]): string {
  return client.escapeLiteral(`{${values.map((value) => `"${value.replace(/(["\\])/g, '\\$1')}"`).join(',')}}`)
}

/** Installed extension versions of the session's database: name → version. */
export async function readVersions(client: pg.Client): Promise<Record<string, string>> {
  const result = await client.query<{ extname: string; extversion: string }>('SELECT extname, extversion FROM pg_extension ORDER BY extname')
  return Object.fromEntries(result.rows.map((r) => [r.extname, r.extversion]))
}

function toDatabaseFacts(raw: RawDatabase): DatabaseFacts {
  const paths: DatabaseFacts['paths'] = {}
  for (const [name, targets] of Object.entries(raw.paths)) {
    paths[name] = Object.fromEntries(Object.entries(targets).map(([target, path]) => [target, splitPath(path)]))
  }
  return {
    ...raw,
    installed: Object.fromEntries(raw.installed.map((extension) => [extension.name, extension])),
    paths,
    libraries: {}
  }
}

function toServerFacts(raw: RawServer): ServerFacts {
  const { preload, available, ...rest } = raw
  return {
    ...rest,
    preloadLibraries: preload === null ? null : splitSettingList(preload),
    available: Object.fromEntries(available.map((extension) => [extension.name, extension]))
  }
}

function splitSettingList(value: string): string[] {
  return value
    .split(',')
    .map((item) => item.trim().replace(/^"(.*)"$/, '$1'))
    .filter((item) => item.length > 0)
}
