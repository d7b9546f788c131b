import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import type pg from 'pg'
import { closeQuietly, libpqEnvironment, withSession } from '../connection.js'
import { formatDuration } from '../duration.js'
import { CodedError, errorMessage } from '../errors.js'
import { ASIDE_MARK } from '../fleet.js'
import type { Finding } from '../plan.js'
import { describePgError } from '../pg-error.js'
import { findCompatibleProgram, runProgram } from '../programs.js'
import { readVersions } from '../catalog.js'
import { countRows } from '../recovery/inventory.js'
import { inSnapshot, type ManifestDatabase } from '../recovery/manifest.js'
import { hasDrift, type RollbackContext, type RollbackDatabaseResult } from './types.js'

const SCHEMA_ENTRY = /^\d+; \d+ \d+ SCHEMA - /
const DATABASE_LEVEL_ENTRY = /^\d+; \d+ \d+ (DATABASE PROPERTIES - |COMMENT - DATABASE |ACL - DATABASE |SECURITY LABEL - DATABASE )/

/** `<db>__pre_rollback_<stamp>`, shortened to fit 63 bytes. */
export function asideName(database: string, stamp: string): string {
  const suffix = `${ASIDE_MARK}${stamp}`
  let head = database
  while (Buffer.byteLength(head + suffix) > 63) head = head.slice(0, -1)
  return head + suffix
}

/** The database to stand in while the target is renamed: postgres, or template1 when the target is postgres. */
function maintenanceDatabase(database: string): string {
  return database === 'postgres' ? 'template1' : 'postgres'
}

function createDatabaseSql(client: pg.Client, db: ManifestDatabase, versionNum: number, closed: boolean): string {
  const id = (name: string) => client.escapeIdentifier(name)
  const lit = (value: string) => client.escapeLiteral(value)
  const parts = [
    `CREATE DATABASE ${id(db.name)}`,
    `OWNER ${id(db.owner)}`,
    'TEMPLATE template0',
    `ENCODING ${lit(db.encoding)}`,
    `LC_COLLATE ${lit(db.collate)}`,
    `LC_CTYPE ${lit(db.ctype)}`
  ]
  if (versionNum >= 150000) {
    parts.push(`LOCALE_PROVIDER ${db.localeProvider}`)
    if (db.localeProvider === 'icu' && db.icuLocale) parts.push(`${versionNum >= 170000 ? 'LOCALE' : 'ICU_LOCALE'} ${lit(db.icuLocale)}`)
  }
  parts.push(`TABLESPACE ${id(db.tablespace)}`)
  // Closed to everyone but superusers (us) until it is restored and verified.
  if (closed) parts.push('CONNECTION LIMIT 0')
  return parts.join(' ')
}

/**
 * Checks for every database a dump rollback would replace, before anything moves: a dump in the
 * snapshot, the recorded versions still shipped, the owner and tablespace still there, no other
 * sessions (unless terminate-connections), enough privilege, and pg_restore.
 */
export async function dumpObstacles(ctx: RollbackContext): Promise<Finding[]> {
  const obstacles: Finding[] = []
  const drifted = ctx.drift.filter(hasDrift)
  for (const drift of drifted) {
    const recorded = ctx.manifest.databases.find((d) => d.name === drift.name)
    if (!recorded?.dump) obstacles.push({ code: 'NO_ROLLBACK_PATH', database: drift.name, message: `the snapshot holds no dump of ${drift.name} (taken with snapshot-strategy ${ctx.manifest.strategy})` })
  }
  if (obstacles.length > 0) return obstacles
  await withSession(ctx.connect, { database: maintenanceDatabase(ctx.target.database), purpose: 'rollback-inspect' }, async (client) => {
    const me = (await client.query<{ rolsuper: boolean; rolcreatedb: boolean; role: string }>('SELECT rolsuper, rolcreatedb, current_user AS role FROM pg_roles WHERE rolname = current_user')).rows[0]
    for (const drift of drifted) {
      const db = ctx.manifest.databases.find((d) => d.name === drift.name)!
      const scope = { database: db.name }
      const facts = (
        await client.query<{ owner_exists: boolean; member: boolean; tablespace_exists: boolean; missing: string[]; sessions: SessionRow[] }>(
          `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AS owner_exists,
                  CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) THEN pg_has_role($1, 'MEMBER') ELSE false END AS member,
                  EXISTS (SELECT 1 FROM pg_tablespace WHERE spcname = $2) AS tablespace_exists,
                  ARRAY(SELECT e.name || ' ' || e.version FROM json_to_recordset($3::json) AS e(name text, version text)
                        WHERE NOT EXISTS (SELECT 1 FROM pg_available_extension_versions v WHERE v.name = e.name AND v.version = e.version)) AS missing,
                  (SELECT coalesce(json_agg(json_build_object('pid', pid, 'user', usename, 'application', application_name)), '[]')
                   FROM pg_stat_activity WHERE datname = $4 AND pid <> pg_backend_pid()) AS sessions`,
          [db.owner, db.tablespace, JSON.stringify(db.extensions.map((e) => ({ name: e.name, version: e.version }))), db.name]
        )
      ).rows[0]
      if (!facts.owner_exists) obstacles.push({ code: 'SNAPSHOT_MISMATCH', ...scope, message: `the recorded owner ${db.owner} of ${db.name} no longer exists; create the role first` })
      if (!facts.tablespace_exists) obstacles.push({ code: 'SNAPSHOT_MISMATCH', ...scope, message: `the recorded tablespace ${db.tablespace} of ${db.name} no longer exists` })
      for (const missing of facts.missing) obstacles.push({ code: 'VERSION_NOT_AVAILABLE', ...scope, message: `${missing} is no longer shipped on the server, so the dump cannot be restored at the recorded version` })
      if (!me.rolsuper && !(me.rolcreatedb && facts.member)) {
        obstacles.push({ code: 'INSUFFICIENT_PRIVILEGE', ...scope, message: `role ${me.role} may not recreate ${db.name}: it needs SUPERUSER, or CREATEDB and membership in ${db.owner}` })
      }
      if (drift.exists && facts.sessions.length > 0 && !ctx.request.terminateConnections) {
        // A client that just disconnected leaves its backend in pg_stat_activity for a moment.
        facts.sessions = await lingering(client, db.name, facts.sessions)
      }
      if (drift.exists && facts.sessions.length > 0 && !ctx.request.terminateConnections) {
        const who = facts.sessions.map((s) => `pid ${s.pid} (${s.user ?? '?'}, ${s.application || 'no application_name'})`).join(', ')
        obstacles.push({ code: 'SESSIONS_CONNECTED', ...scope, message: `${facts.sessions.length} other session(s) are connected to ${db.name}: ${who}; disconnect them or set terminate-connections: true` })
      }
    }
  })
  const found = await findCompatibleProgram('pg_restore', Math.floor(ctx.facts.versionNum / 10000), { binDir: ctx.request.pgBinDir || undefined, env: ctx.request.env }, 'atLeast').catch(
    (error: CodedError) => error
  )
  if (found instanceof CodedError) {
    obstacles.push({ code: found.code, message: found.message })
    return obstacles
  }
  for (const drift of drifted) {
    const db = ctx.manifest.databases.find((d) => d.name === drift.name)!
    const problem = await dumpedDatabaseProblem(found, inSnapshot(ctx.manifestDir, db.dump!.file), db.name, ctx.request.env)
    if (problem) obstacles.push({ code: 'SNAPSHOT_CORRUPT', database: db.name, message: problem })
  }
  return obstacles
}

/**
 * The database a dump rollback replaces is the one the dump's own archive header names
 * (`;     dbname:` of pg_restore --list), not merely what the manifest says: a manifest naming
 * another database would otherwise replace it with this dump.
 */
export async function dumpedDatabaseProblem(pgRestore: string, dumpFile: string, database: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const listed = await runProgram(pgRestore, ['--list', dumpFile], { env }).catch((error: unknown) => error as Error)
  if (listed instanceof Error) return `pg_restore cannot read the archive header of ${dumpFile}: ${errorMessage(listed)}`
  const dumped = /^;\s+dbname: (.*)$/im.exec(listed.stdout)?.[1]
  if (dumped === undefined) return `the archive header of ${dumpFile} names no database (no "; dbname:" line in pg_restore --list)`
  if (dumped !== database) return `the manifest says ${dumpFile} is the dump of ${database}, but its archive header says it is the dump of ${dumped}; nothing was changed`
  return undefined
}

/**
 * The SQL of the dump's database-level entries (ALTER DATABASE … SET, COMMENT ON DATABASE, GRANT
 * … ON DATABASE), as pg_dump wrote it: pg_restore only emits them with --create, which also forces
 * its CREATE DATABASE, so the script is generated (-f -, not run) and the CREATE DATABASE block,
 * \connect and psql meta-commands are left out.
 */
export async function databaseLevelSql(pgRestore: string, dumpFile: string, scratch: string, env: NodeJS.ProcessEnv): Promise<string[]> {
  const listed = await runProgram(pgRestore, ['--list', '--create', dumpFile], { env })
  const lines = listed.stdout.split('\n').filter((line) => DATABASE_LEVEL_ENTRY.test(line))
  if (lines.length === 0) return []
  const list = join(scratch, 'database.list')
  writeFileSync(list, `${lines.join('\n')}\n`)
  const script = await runProgram(pgRestore, ['--create', '-L', list, '-f', '-', dumpFile], { env })
  const blocks = script.stdout.split(/^--\n-- Name: /m).slice(1)
  return blocks
    .filter((block) => /; Type: (DATABASE PROPERTIES|COMMENT|ACL|SECURITY LABEL);/.test(block.split('\n')[0]) && !/; Type: DATABASE;/.test(block.split('\n')[0]))
    .map((block) =>
      block
        .split('\n')
        .slice(1)
        .filter((line) => !line.startsWith('--') && !line.startsWith('\\'))
        .join('\n')
        .trim()
    )
    .filter((sql) => sql.length > 0)
}

type SessionRow = { pid: number; user: string; application: string }

/** Sessions still connected after up to a second: backends of clients that just left are gone by then. */
async function lingering(client: pg.Client, database: string, sessions: SessionRow[]): Promise<SessionRow[]> {
  let left = sessions
  for (let i = 0; i < 10 && left.length > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    left = (
      await client.query<SessionRow>(
        `SELECT pid, usename AS user, application_name AS application FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [database]
      )
    ).rows
  }
  return left
}

async function terminateSessions(client: pg.Client, database: string): Promise<number> {
  // In the target list, pg_terminate_backend runs only for the rows the WHERE clause kept (in a
  // WHERE clause the planner may evaluate it first, on any session, ours included).
  const result = await client.query<{ pid: number }>(
    'SELECT pid, pg_terminate_backend(pid) AS terminated FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
    [database]
  )
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    const left = (await client.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [database])).rows[0]
    if (Number(left.n) === 0) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return result.rowCount ?? 0
}

/**
 * dump: one database at a time. The current database is renamed aside (kept while keep-previous),
 * recreated empty from template0 with the recorded owner, encoding and locale; the dump's schemas
 * are restored, then every recorded extension is created at its recorded version in dependency
 * order (pg_dump records no version: a plain restore would bring back the new one), then the rest
 * of the dump; versions and row counts are checked against the manifest. On any failure the new
 * database is dropped and the original renamed back under its name.
 */
export async function rollBackByDump(ctx: RollbackContext, stamp: string): Promise<RollbackDatabaseResult[]> {
  const pgRestore = await findCompatibleProgram('pg_restore', Math.floor(ctx.facts.versionNum / 10000), { binDir: ctx.request.pgBinDir || undefined, env: ctx.request.env }, 'atLeast')
  const results: RollbackDatabaseResult[] = []
  const drifted = ctx.drift.filter(hasDrift)
  for (const [index, drift] of drifted.entries()) {
    const db = ctx.manifest.databases.find((d) => d.name === drift.name)!
    const result = await restoreOne(ctx, db, drift.exists, pgRestore, stamp)
    results.push(result)
    if (result.outcome !== 'rolled_back') {
      for (const rest of drifted.slice(index + 1)) {
        results.push({ name: rest.name, outcome: 'not_started', before: {}, recorded: {}, durationMs: 0, detail: `not attempted: ${drift.name} failed first` })
      }
      break
    }
  }
  return results
}

async function restoreOne(ctx: RollbackContext, db: ManifestDatabase, exists: boolean, pgRestore: string, stamp: string): Promise<RollbackDatabaseResult> {
  const started = performance.now()
  const recorded = Object.fromEntries(db.extensions.map((e) => [e.name, e.version]))
  const before = exists ? await withSession(ctx.connect, { database: db.name, purpose: 'rollback-inspect' }, readVersions).catch(() => ({})) : {}
  const dumpFile = inSnapshot(ctx.manifestDir, db.dump!.file)
  const maintenance = await ctx.connect({ database: maintenanceDatabase(db.name), purpose: 'rollback-coordinator' })
  // Unique even for two rollbacks within one second.
  let aside = asideName(db.name, stamp)
  for (let n = 2; (await maintenance.query('SELECT 1 FROM pg_database WHERE datname = $1', [aside])).rowCount; n++) aside = asideName(db.name, `${stamp}_${n}`)
  const scratch = mkdtempSync(join(tmpdir(), 'pgxu-restore-'))
  const env = libpqEnvironment(ctx.target, db.name)
  const secrets = ctx.target.secrets
  let renamed = false
  let created = false
  let blockedConnections = false
  const id = (name: string) => maintenance.escapeIdentifier(name)
  try {
    await ctx.phases.run(`replace ${db.name}: rename it aside`, async (note) => {
      if (!exists) {
        note(`${db.name} does not exist any more; it is recreated`)
        return
      }
      if (ctx.request.terminateConnections) {
        const allowed = (await maintenance.query<{ datallowconn: boolean }>('SELECT datallowconn FROM pg_database WHERE datname = $1', [db.name])).rows[0]?.datallowconn
        if (allowed) {
          await maintenance.query(`ALTER DATABASE ${id(db.name)} WITH ALLOW_CONNECTIONS false`)
          blockedConnections = true
        }
      }
      for (let attempt = 1; ; attempt++) {
        const terminated = ctx.request.terminateConnections ? await terminateSessions(maintenance, db.name) : 0
        if (terminated > 0) ctx.log.info(`terminated ${terminated} session(s) connected to ${db.name}`)
        try {
          await maintenance.query(`ALTER DATABASE ${id(db.name)} RENAME TO ${id(aside)}`)
          break
        } catch (error) {
          if (!ctx.request.terminateConnections || attempt >= 5) {
            throw new CodedError('SESSIONS_CONNECTED', `${db.name} cannot be renamed aside: ${describePgError(error)}`)
          }
        }
      }
      renamed = true
      note(`${db.name} is now ${aside}`)
    })
    await ctx.phases.run(`replace ${db.name}: create it from template0`, async (note) => {
      await maintenance.query(createDatabaseSql(maintenance, db, ctx.facts.versionNum, ctx.facts.superuser))
      created = true
      note(`owner ${db.owner}, encoding ${db.encoding}, collate ${db.collate}, ctype ${db.ctype}, ${db.localeProvider}${db.icuLocale ? ` ${db.icuLocale}` : ''}${ctx.facts.superuser ? '; closed to other roles until verified' : ''}`)
    })
    const list = await runProgram(pgRestore, ['--list', dumpFile], { env: ctx.request.env })
    const entries = list.stdout.split('\n').filter((line) => line.trim() && !line.startsWith(';'))
    const schemaEntries = entries.filter((line) => SCHEMA_ENTRY.test(line))
    const restEntries = entries.filter((line) => !SCHEMA_ENTRY.test(line))
    const restore = async (name: string, lines: string[], extra: string[] = [], database = db.name) => {
      const file = join(scratch, name)
      writeFileSync(file, `${lines.join('\n')}\n`)
      await runProgram(pgRestore, ['--no-password', '--exit-on-error', '-L', file, '-d', database, ...extra, dumpFile], {
        env: ctx.request.env,
        extraEnv: { ...env, PGDATABASE: database },
        secrets
      })
    }
    await ctx.phases.run(`restore ${db.name}: schemas`, async (note) => {
      if (schemaEntries.length > 0) await restore('schemas.list', schemaEntries)
      note(`${schemaEntries.length} schema entr${schemaEntries.length === 1 ? 'y' : 'ies'}`)
    })
    await ctx.phases.run(`restore ${db.name}: extensions at the recorded versions`, async (note) => {
      for (const extension of db.extensions) {
        await withSession(ctx.connect, { database: db.name, purpose: 'rollback-extension' }, async (client) => {
          const present = (await client.query<{ extversion: string }>('SELECT extversion FROM pg_extension WHERE extname = $1', [extension.name])).rows[0]
          if (present?.extversion === extension.version) return
          const sql = present
            ? `ALTER EXTENSION ${client.escapeIdentifier(extension.name)} UPDATE TO ${client.escapeLiteral(extension.version)}`
            : `CREATE EXTENSION ${client.escapeIdentifier(extension.name)} WITH SCHEMA ${client.escapeIdentifier(extension.schema)} VERSION ${client.escapeLiteral(extension.version)}`
          await client.query(sql)
        })
      }
      note(db.extensions.map((e) => `${e.name} ${e.version} in ${e.schema}`).join(', ') || 'none recorded')
    })
    await ctx.phases.run(`restore ${db.name}: the rest of the dump (pg_restore)`, async (note) => {
      const jobs = Math.max(1, Math.min(4, availableParallelism()))
      await restore('rest.list', restEntries, ['-j', String(jobs)])
      note(`${restEntries.length} entries, ${jobs} job(s)`)
    })
    const verified = await ctx.phases.run(`verify ${db.name}: versions and row counts`, async (note) => {
      return withSession(ctx.connect, { database: db.name, purpose: 'rollback-verify' }, async (client) => {
        const versions = await readVersions(client)
        const wrongVersions = Object.entries(recorded).filter(([name, version]) => versions[name] !== version)
        const extra = Object.keys(versions).filter((name) => !(name in recorded))
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
        const counts = await countRows(client)
        await client.query('COMMIT')
        const expected = db.dump!.rowCounts
        const mismatches = [...new Set([...Object.keys(expected), ...Object.keys(counts)])]
          .filter((table) => expected[table] !== counts[table])
          .map((table) => `${table}: ${counts[table] ?? 'missing'} row(s), the snapshot had ${expected[table] ?? 'no such table'}`)
        const rows = Object.values(counts).reduce((sum, n) => sum + n, 0)
        if (wrongVersions.length > 0 || extra.length > 0 || mismatches.length > 0) {
          const problems = [
            ...wrongVersions.map(([name, version]) => `${name} is ${versions[name] ?? 'not installed'}, recorded ${version}`),
            ...extra.map((name) => `${name} ${versions[name]} is installed but was not recorded`),
            ...mismatches.slice(0, 10)
          ]
          throw new CodedError('ROLLBACK_FAILED', `the restored ${db.name} does not match the snapshot: ${problems.join('; ')}`)
        }
        note(`${Object.keys(recorded).length} extension version(s) and ${Object.keys(counts).length} table(s) with ${rows} row(s) match`)
        return { versions, tables: Object.keys(counts).length, rows }
      })
    })
    await ctx.phases.run(`restore ${db.name}: database-level settings, comment and grants`, async (note) => {
      const statements = await databaseLevelSql(pgRestore, dumpFile, scratch, ctx.request.env)
      for (const block of statements) await maintenance.query(block)
      const flags = [`CONNECTION LIMIT ${db.connectionLimit}`, `IS_TEMPLATE ${db.isTemplate}`, `ALLOW_CONNECTIONS ${db.allowConnections}`]
      await maintenance.query(`ALTER DATABASE ${id(db.name)} WITH ${flags.join(' ')}`)
      note(`${statements.length} entr${statements.length === 1 ? 'y' : 'ies'}; ${flags.join(', ').toLowerCase()}`)
    })
    let keptAs: string | undefined
    if (renamed) {
      if (blockedConnections) await maintenance.query(`ALTER DATABASE ${id(aside)} WITH ALLOW_CONNECTIONS true`).catch(() => undefined)
      if (ctx.request.keepPrevious) {
        keptAs = aside
      } else {
        await ctx.phases.run(`drop the replaced ${db.name} (keep-previous: false)`, async (note) => {
          await maintenance.query(`DROP DATABASE ${id(aside)}`)
          note(`dropped ${aside}`)
        })
      }
    }
    return {
      name: db.name,
      outcome: 'rolled_back',
      before,
      after: verified.versions,
      recorded,
      rowsChecked: { tables: verified.tables, rows: verified.rows, mismatches: [] },
      keptAs,
      durationMs: performance.now() - started,
      detail: `restored from ${db.dump!.file} in ${formatDuration(performance.now() - started)}${keptAs ? `; the replaced database is kept as ${keptAs}` : ''}`
    }
  } catch (error) {
    const message = error instanceof CodedError ? error.message : describePgError(error) || errorMessage(error)
    const putBack: string[] = []
    if (created) {
      try {
        await terminateSessions(maintenance, db.name)
        await maintenance.query(`DROP DATABASE ${id(db.name)}`)
        putBack.push(`the partly restored ${db.name} was dropped`)
      } catch (dropError) {
        putBack.push(`the partly restored ${db.name} could not be dropped (${describePgError(dropError)}): drop it, then rename ${aside} back`)
        ctx.warnings.push({ code: 'ROLLBACK_FAILED', database: db.name, message: `DROP DATABASE ${id(db.name)}; ALTER DATABASE ${id(aside)} RENAME TO ${id(db.name)};` })
      }
    }
    let outcome: RollbackDatabaseResult['outcome'] = 'failed'
    if (renamed && !putBack.some((p) => p.includes('could not'))) {
      try {
        await maintenance.query(`ALTER DATABASE ${id(aside)} RENAME TO ${id(db.name)}`)
        if (blockedConnections) await maintenance.query(`ALTER DATABASE ${id(db.name)} WITH ALLOW_CONNECTIONS true`)
        putBack.push(`the original ${db.name} was put back under its name, unchanged`)
        outcome = 'put_back'
      } catch (renameError) {
        putBack.push(`the original is still named ${aside}: ALTER DATABASE ${id(aside)} RENAME TO ${id(db.name)}; (${describePgError(renameError)})`)
      }
    } else if (!exists) {
      putBack.push(`${db.name} did not exist before the rollback, so there was nothing to put back`)
      outcome = 'put_back'
    } else if (!renamed) {
      if (blockedConnections) await maintenance.query(`ALTER DATABASE ${id(db.name)} WITH ALLOW_CONNECTIONS true`).catch(() => undefined)
      putBack.push(`${db.name} was not touched`)
      outcome = 'put_back'
    }
    return {
      name: db.name,
      outcome,
      before,
      recorded,
      durationMs: performance.now() - started,
      detail: `${message}; ${putBack.join('; ')}`
    }
  } finally {
    await closeQuietly(maintenance)
    rmSync(scratch, { recursive: true, force: true })
  }
}
