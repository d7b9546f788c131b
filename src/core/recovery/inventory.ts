import type pg from 'pg'
import { withSession, type Connector } from '../connection.js'
import type { ManifestDatabase, ManifestExtension } from './manifest.js'
import { CURRENT_TIMELINE_SQL } from './wal.js'

/** What snapshot and rollback read from the server: identity, WAL and archiving settings, privileges. */
export interface ClusterFacts {
  systemIdentifier: string
  version: string
  versionNum: number
  inRecovery: boolean
  /** null on a standby (pg_current_wal_lsn is not available there). */
  timeline: number | null
  currentLsn: string | null
  walSegmentSize: number
  walLevel: string
  archiveMode: string
  archiveCommand: string
  archiveLibrary: string
  hotStandby: string
  /** null when the role may not read it (needs pg_read_all_settings). */
  dataDirectory: string | null
  role: string
  superuser: boolean
  replication: boolean
  canCreateRestorePoint: boolean
  canSwitchWal: boolean
  canPromote: boolean
  maxWalSenders: number
  walSenders: number
  replicas: Array<{ application: string | null; address: string | null; state: string | null }>
  replicationSlots: Array<{ name: string; type: string }>
  userTablespaces: string[]
  archiver: {
    archivedCount: number
    lastArchivedWal: string | null
    lastArchivedTime: string | null
    failedCount: number
    lastFailedWal: string | null
    lastFailedTime: string | null
  }
  databases: Array<{ name: string; allowConnections: boolean; isTemplate: boolean; bytes: number | null }>
  commits: number | null
  now: string
}

const CLUSTER_SQL = `
SELECT json_build_object(
  'systemIdentifier', (SELECT system_identifier::text FROM pg_control_system()),
  'version', current_setting('server_version'),
  'versionNum', current_setting('server_version_num')::int,
  'inRecovery', pg_is_in_recovery(),
  'timeline', CASE WHEN pg_is_in_recovery() THEN NULL ELSE ${CURRENT_TIMELINE_SQL} END,
  'currentLsn', CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
  'walSegmentSize', (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),
  'walLevel', current_setting('wal_level'),
  'archiveMode', current_setting('archive_mode'),
  'archiveCommand', current_setting('archive_command'),
  'archiveLibrary', coalesce(current_setting('archive_library', true), ''),
  'hotStandby', current_setting('hot_standby'),
  'dataDirectory', (SELECT setting FROM pg_settings WHERE name = 'data_directory'),
  'role', current_user,
  'superuser', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
  'replication', (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
  'canCreateRestorePoint', has_function_privilege('pg_create_restore_point(text)', 'EXECUTE'),
  'canSwitchWal', has_function_privilege('pg_switch_wal()', 'EXECUTE'),
  'canPromote', has_function_privilege('pg_promote(boolean, integer)', 'EXECUTE'),
  'maxWalSenders', current_setting('max_wal_senders')::int,
  'walSenders', (SELECT count(*) FROM pg_stat_replication),
  'replicas', (SELECT coalesce(json_agg(json_build_object('application', application_name, 'address', client_addr::text, 'state', state)), '[]') FROM pg_stat_replication),
  'replicationSlots', (SELECT coalesce(json_agg(json_build_object('name', slot_name, 'type', slot_type)), '[]') FROM pg_replication_slots),
  'userTablespaces', (SELECT coalesce(json_agg(spcname ORDER BY spcname), '[]') FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')),
  'archiver', (SELECT json_build_object('archivedCount', archived_count, 'lastArchivedWal', last_archived_wal, 'lastArchivedTime', last_archived_time,
      'failedCount', failed_count, 'lastFailedWal', last_failed_wal, 'lastFailedTime', last_failed_time) FROM pg_stat_archiver),
  'databases', (SELECT coalesce(json_agg(json_build_object('name', datname, 'allowConnections', datallowconn, 'isTemplate', datistemplate,
      'bytes', CASE WHEN has_database_privilege(oid, 'CONNECT') THEN pg_database_size(oid) END) ORDER BY datname), '[]') FROM pg_database),
  'commits', (SELECT sum(xact_commit) FROM pg_stat_database),
  'now', clock_timestamp()
) AS facts`

export async function readClusterFacts(client: pg.Client): Promise<ClusterFacts> {
  const result = await client.query<{ facts: ClusterFacts }>(CLUSTER_SQL)
  const facts = result.rows[0].facts
  return { ...facts, walSegmentSize: Number(facts.walSegmentSize), commits: facts.commits === null ? null : Number(facts.commits) }
}

/** The locale columns of pg_database changed over the versions (datlocprovider 15, datlocale 17). */
function localeColumns(versionNum: number): string {
  if (versionNum >= 170000) return `CASE d.datlocprovider WHEN 'i' THEN 'icu' ELSE 'libc' END, d.datlocale`
  if (versionNum >= 150000) return `CASE d.datlocprovider WHEN 'i' THEN 'icu' ELSE 'libc' END, d.daticulocale`
  return `'libc', NULL::text`
}

function inventorySql(versionNum: number): string {
  const [provider, icu] = localeColumns(versionNum).split(', ')
  return `
SELECT json_build_object(
  'name', d.datname,
  'owner', pg_get_userbyid(d.datdba),
  'encoding', pg_encoding_to_char(d.encoding),
  'collate', d.datcollate,
  'ctype', d.datctype,
  'localeProvider', ${provider},
  'icuLocale', ${icu},
  'tablespace', t.spcname,
  'allowConnections', d.datallowconn,
  'connectionLimit', d.datconnlimit,
  'isTemplate', d.datistemplate,
  'extensions', (
    SELECT coalesce(json_agg(json_build_object(
      'name', e.extname, 'version', e.extversion, 'schema', n.nspname, 'relocatable', e.extrelocatable,
      'requires', (SELECT coalesce(json_agg(r.extname::text ORDER BY r.extname), '[]')
                   FROM pg_depend dep JOIN pg_extension r ON r.oid = dep.refobjid
                   WHERE dep.classid = 'pg_extension'::regclass AND dep.objid = e.oid
                     AND dep.refclassid = 'pg_extension'::regclass AND dep.deptype = 'n')
    ) ORDER BY e.extname), '[]')
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace)
) AS database
FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
WHERE d.datname = current_database()`
}

/** Extensions in dependency order (required ones first), alphabetical among equals. */
export function inDependencyOrder(extensions: ManifestExtension[]): ManifestExtension[] {
  const byName = new Map(extensions.map((e) => [e.name, e]))
  const done = new Set<string>()
  const ordered: ManifestExtension[] = []
  const visit = (extension: ManifestExtension, path: Set<string>) => {
    if (done.has(extension.name) || path.has(extension.name)) return
    path.add(extension.name)
    for (const required of [...extension.requires].sort()) {
      const dependency = byName.get(required)
      if (dependency) visit(dependency, path)
    }
    done.add(extension.name)
    ordered.push(extension)
  }
  for (const extension of [...extensions].sort((a, b) => a.name.localeCompare(b.name))) visit(extension, new Set())
  return ordered
}

/** Owner, encoding, locale and extensions (with versions, schemas and requires order) of the connected database. */
export async function readDatabaseInventory(client: pg.Client, versionNum: number): Promise<Omit<ManifestDatabase, 'dump'>> {
  const result = await client.query<{ database: Omit<ManifestDatabase, 'dump' | 'schemas'> }>(inventorySql(versionNum))
  const database = result.rows[0].database
  const extensions = inDependencyOrder(database.extensions)
  return { ...database, extensions, schemas: [...new Set(extensions.map((e) => e.schema))].sort() }
}

export async function inventoryOf(connect: Connector, database: string, versionNum: number): Promise<Omit<ManifestDatabase, 'dump'>> {
  return withSession(connect, { database, purpose: 'snapshot-inventory' }, (client) => readDatabaseInventory(client, versionNum))
}

/** User tables whose rows a dump carries: every ordinary table except extension members and temporary ones. */
const TABLES_SQL = `
SELECT format('%I.%I', n.nspname, c.relname) AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1`

/**
 * Exact row counts of every user table, in the session's snapshot (the caller's transaction):
 * the names come from format('%I.%I'), so they are quoted by the server and safe to embed.
 */
export async function countRows(client: pg.Client): Promise<Record<string, number>> {
  const tables = (await client.query<{ name: string }>(TABLES_SQL)).rows.map((r) => r.name)
  const counts: Record<string, number> = {}
  for (let i = 0; i < tables.length; i += 100) {
    const batch = tables.slice(i, i + 100)
    const sql = `SELECT ${batch.map((name, j) => `(SELECT count(*) FROM ${name}) AS c${j}`).join(', ')}`
    const row = (await client.query<Record<string, string>>(sql)).rows[0]
    batch.forEach((name, j) => (counts[name] = Number(row[`c${j}`])))
  }
  return counts
}
