import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import { appendFileSync, chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import pg from 'pg'
import {
  Cluster,
  SUPERUSER,
  SUPERUSER_PASSWORD,
  chownToOwner,
  freePort,
  makeOwnedTempDir,
  runAsOwner,
  startCluster
} from './harness/postgres.js'
import { codes, entry, requires, runInProcess, testCluster, uniqueName } from './helpers.js'
import type { Plan } from '../src/core/plan.js'
import type { ModeResult } from '../src/modes/types.js'

const cluster = await testCluster()

/** A role password that URL encoding changes, like the superuser's. */
const ROLE_PASSWORD = 'r0le p@ss/%x'

async function createRole(name: string, grants: string[] = []): Promise<void> {
  const client = await cluster.connect('postgres')
  try {
    await client.query(`CREATE ROLE ${client.escapeIdentifier(name)} LOGIN PASSWORD ${client.escapeLiteral(ROLE_PASSWORD)}`)
    for (const grant of grants) await client.query(grant)
  } finally {
    await client.end()
  }
}

async function dryRunAs(role: string, database: string, inputs: Record<string, string>): Promise<Plan> {
  const result = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url(database, role, ROLE_PASSWORD), ...inputs })
  if (!result.plan || result.errors.some((e) => e.code === 'CONNECTION_FAILED' || e.code === 'UNEXPECTED_ERROR')) {
    throw new Error(`dry-run as ${role} did not plan: ${result.error}`)
  }
  return result.plan
}

/**
 * Ground truth: tries the change for real as the role, inside a transaction that is rolled back,
 * and returns the SQLSTATE it failed with (undefined when PostgreSQL accepted it).
 */
async function attemptAs(role: string, database: string, sql: string): Promise<string | undefined> {
  const client = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: role, password: ROLE_PASSWORD, database })
  await client.connect()
  try {
    await client.query('BEGIN')
    await client.query(sql)
    return undefined
  } catch (error) {
    return (error as { code?: string }).code ?? 'unknown'
  } finally {
    await client.query('ROLLBACK').catch(() => undefined)
    await client.end()
  }
}

describe('privileges of real non-superuser roles', () => {
  const db = uniqueName('roles_db')
  const ownedDb = uniqueName('roles_owned')
  const stranger = uniqueName('stranger')
  const owner = uniqueName('owner')
  const creator = uniqueName('creator')
  const plain = uniqueName('plain')

  beforeAll(async () => {
    await cluster.createDatabase(db, { hstore: '1.4' })
    await cluster.createDatabase(ownedDb)
    await createRole(stranger)
    await createRole(owner, [`GRANT CREATE ON DATABASE ${ownedDb} TO ${owner}`])
    await createRole(creator, [`GRANT CREATE ON DATABASE ${db} TO ${creator}`])
    await createRole(plain)
    // hstore is trusted: a role with CREATE on the database installs it and becomes its owner.
    const client = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: owner, password: ROLE_PASSWORD, database: ownedDb })
    await client.connect()
    await client.query(`CREATE EXTENSION hstore VERSION '1.4'`)
    await client.end()
  })

  it('the server marks hstore and pgxu_trusted trusted, pgxu_fail untrusted (premise of the cases below)', async () => {
    const rows = await cluster.query<{ name: string; version: string; superuser: boolean; trusted: boolean }>(
      `SELECT name, version, superuser, trusted FROM pg_available_extension_versions
        WHERE name IN ('hstore', 'pgxu_trusted', 'pgxu_fail') ORDER BY name, version`
    )
    const byName = (name: string) => rows.filter((r) => r.name === name)
    expect(byName('hstore').length).toBeGreaterThanOrEqual(5)
    expect(byName('hstore').every((r) => r.superuser && r.trusted)).toBe(true)
    expect(byName('pgxu_trusted').every((r) => r.superuser && r.trusted)).toBe(true)
    expect(byName('pgxu_fail').every((r) => r.superuser && !r.trusted)).toBe(true)
    const [{ extowner }] = await cluster.query<{ extowner: string }>(`SELECT extowner::regrole::text AS extowner FROM pg_extension WHERE extname = 'hstore'`, ownedDb)
    expect(extowner).toBe(owner)
  })

  it('blocks a role that does not own hstore with INSUFFICIENT_PRIVILEGE, naming the owner', async () => {
    const plan = await dryRunAs(stranger, db, { extensions: 'hstore@1.8' })
    expect(plan.status).toBe('dry_run_blocked')
    // Not the owner, and (as the stranger lacks CREATE on the database) not allowed the trusted scripts either.
    expect(new Set(codes(plan.blockers))).toEqual(new Set(['INSUFFICIENT_PRIVILEGE']))
    const notOwner = plan.blockers.find((b) => b.message.includes(`owned by ${SUPERUSER}`))
    expect(notOwner).toMatchObject({ database: db, extension: 'hstore' })
    expect(notOwner?.message).toContain(stranger)
    expect(entry(plan, 'hstore')).toMatchObject({ action: 'blocked', from: '1.4', to: '1.8' })
    // PostgreSQL agrees: "must be owner of extension hstore"
    expect(await attemptAs(stranger, db, `ALTER EXTENSION hstore UPDATE TO '1.8'`)).toBe('42501')
  })

  it('lets the owner plan the update of its own extension', async () => {
    const plan = await dryRunAs(owner, ownedDb, { extensions: 'hstore@1.8' })
    expect(plan.blockers).toEqual([])
    expect(plan.status).toBe('dry_run_approved')
    expect(entry(plan, 'hstore')).toMatchObject({ action: 'update', path: ['1.4', '1.5', '1.6', '1.7', '1.8'] })
    expect(await attemptAs(owner, ownedDb, `ALTER EXTENSION hstore UPDATE TO '1.8'`)).toBeUndefined()
  })

  it('blocks the owner once it loses CREATE on the database (trusted scripts need it)', async () => {
    await cluster.query(`REVOKE CREATE ON DATABASE ${ownedDb} FROM ${owner}`)
    try {
      const plan = await dryRunAs(owner, ownedDb, { extensions: 'hstore@1.8' })
      expect(codes(plan.blockers)).toEqual(['INSUFFICIENT_PRIVILEGE'])
      expect(plan.blockers[0].message).toContain(`CREATE on database ${ownedDb}`)
      expect(await attemptAs(owner, ownedDb, `ALTER EXTENSION hstore UPDATE TO '1.8'`)).toBe('42501')
    } finally {
      await cluster.query(`GRANT CREATE ON DATABASE ${ownedDb} TO ${owner}`)
    }
  })

  it('the trusted pgxu_trusted is installable by a role with CREATE on the database', async () => {
    const plan = await dryRunAs(creator, db, { extensions: 'pgxu_trusted', 'install-missing': 'true' })
    expect(plan.blockers).toEqual([])
    expect(plan.status).toBe('dry_run_approved')
    expect(entry(plan, 'pgxu_trusted')).toMatchObject({ action: 'install', from: null, to: '1.1' })
    expect(await attemptAs(creator, db, 'CREATE EXTENSION pgxu_trusted')).toBeUndefined()
  })

  it('the trusted pgxu_trusted is blocked for a role without CREATE on the database', async () => {
    const plan = await dryRunAs(plain, db, { extensions: 'pgxu_trusted', 'install-missing': 'true' })
    expect(plan.status).toBe('dry_run_blocked')
    expect(codes(plan.blockers)).toEqual(['INSUFFICIENT_PRIVILEGE'])
    expect(plan.blockers[0].message).toContain(`CREATE on database ${db}`)
    expect(plan.blockers[0].message).toContain(plain)
    expect(await attemptAs(plain, db, 'CREATE EXTENSION pgxu_trusted')).toBe('42501')
  })

  it('an untrusted extension (pgxu_fail) is blocked for a non-superuser, even with CREATE', async () => {
    const plan = await dryRunAs(creator, db, { extensions: 'pgxu_fail', 'install-missing': 'true' })
    expect(plan.status).toBe('dry_run_blocked')
    expect(codes(plan.blockers)).toEqual(['INSUFFICIENT_PRIVILEGE'])
    expect(plan.blockers[0].message).toContain('untrusted')
    expect(await attemptAs(creator, db, 'CREATE EXTENSION pgxu_fail')).toBe('42501')
  })

  it('the superuser may install the untrusted extension', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url(db), extensions: 'pgxu_fail', 'install-missing': 'true' })
    expect(result.plan?.status).toBe('dry_run_approved')
  })

  it('a non-superuser cannot read shared_preload_libraries: a preload quirk becomes a warning that says why', async () => {
    const pss = uniqueName('roles_pss')
    await cluster.createDatabase(pss, { pg_stat_statements: '1.4' })
    await cluster.query(`GRANT CREATE ON DATABASE ${pss} TO ${stranger}`)
    const plan = await dryRunAs(stranger, pss, { extensions: 'pg_stat_statements' })
    const preload = plan.warnings.find((w) => w.code === 'PRELOAD_MISSING')
    expect(preload?.message).toContain('pg_read_all_settings')
  })
})

requires('pg_basebackup').describe('READ_ONLY_SERVER', () => {
  let standby: Cluster
  const db = uniqueName('replicated')

  beforeAll(async () => {
    await cluster.createDatabase(db, { hstore: '1.4' })
    const root = makeOwnedTempDir('pgxu-standby-')
    const dataDir = join(root, 'data')
    const backup = runAsOwner(
      join(cluster.info.binDir, 'pg_basebackup'),
      ['-D', dataDir, '-h', '127.0.0.1', '-p', String(cluster.port), '-U', SUPERUSER, '-R', '-X', 'stream', '-c', 'fast', '-w'],
      { env: { PGPASSWORD: SUPERUSER_PASSWORD } }
    )
    if (backup.status !== 0) throw new Error(`pg_basebackup failed: ${backup.stderr}`)
    const port = await freePort()
    appendFileSync(join(dataDir, 'postgresql.conf'), `\nport = ${port}\nunix_socket_directories = '${root}'\nhot_standby = on\n`)
    standby = new Cluster({ ...cluster.info, root, dataDir, port, logFile: join(root, 'server.log'), archiveDir: undefined })
    chownToOwner(root)
    standby.start()
  })

  afterAll(async () => {
    await standby?.destroy()
  })

  it('the standby is a real hot standby with the replicated database', async () => {
    const [{ recovery }] = await standby.query<{ recovery: boolean }>('SELECT pg_is_in_recovery() AS recovery')
    expect(recovery).toBe(true)
    expect(await standby.extensionVersions(db)).toEqual({ plpgsql: '1.0', hstore: '1.4' })
  })

  it('blocks an update on the hot standby, and marks the server a replica', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': standby.url(db), extensions: 'hstore@1.8' })
    const plan = result.plan!
    expect(plan.status).toBe('dry_run_blocked')
    expect(codes(plan.blockers)).toEqual(['READ_ONLY_SERVER'])
    expect(plan.blockers[0].message).toContain('replica')
    expect(plan.server.isReplica).toBe(true)
    expect(entry(plan, 'hstore')).toMatchObject({ action: 'blocked', from: '1.4', to: '1.8' })
  })

  it('the same request is approved on the primary', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url(db), extensions: 'hstore@1.8' })
    expect(result.plan?.status).toBe('dry_run_approved')
    expect(result.plan?.server.isReplica).toBe(false)
  })

  it('answers nothing_to_do on the standby when nothing needs to change', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': standby.url(db), extensions: 'plpgsql' })
    expect(result.status).toBe('nothing_to_do')
  })

  it('blocks a database with default_transaction_read_only = on', async () => {
    const readOnly = uniqueName('readonly')
    await cluster.createDatabase(readOnly, { hstore: '1.4' })
    await cluster.query(`ALTER DATABASE ${readOnly} SET default_transaction_read_only = on`)
    const result = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url(readOnly), extensions: 'hstore@1.8' })
    const plan = result.plan!
    expect(codes(plan.blockers)).toEqual(['READ_ONLY_SERVER'])
    expect(plan.blockers[0].message).toContain('default_transaction_read_only')
    expect(plan.server.isReplica).toBe(false)
    expect(await cluster.extensionVersions(readOnly)).toMatchObject({ hstore: '1.4' })
  })
})

describe('PRELOAD_MISSING on a real server', () => {
  const db = uniqueName('preload')

  beforeAll(async () => {
    await cluster.createDatabase(db, { pg_stat_statements: '1.4' })
  })

  it('the test server does not preload anything (premise)', async () => {
    const [{ setting }] = await cluster.query<{ setting: string }>(`SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'`)
    expect(setting).toBe('')
  })

  it('pg_stat_statements at 1.4 without preload: a warning only, approved', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url(db), extensions: 'pg_stat_statements' })
    const plan = result.plan!
    expect(plan.status).toBe('dry_run_approved')
    expect(plan.blockers).toEqual([])
    expect(codes(plan.warnings)).toEqual(['PRELOAD_MISSING'])
    expect(plan.warnings[0]).toMatchObject({ database: db, extension: 'pg_stat_statements' })
    expect(entry(plan, 'pg_stat_statements')).toMatchObject({ action: 'update', from: '1.4', to: '1.10' })
    expect(entry(plan, 'pg_stat_statements').path).toEqual(['1.4', '1.5', '1.6', '1.7', '1.8', '1.9', '1.10'])
  })

  requires('pg_cron').it('pg_cron with install-missing: blocked', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url(db), extensions: 'pg_cron', 'install-missing': 'true' })
    const plan = result.plan!
    expect(plan.status).toBe('dry_run_blocked')
    expect(codes(plan.blockers)).toEqual(['PRELOAD_MISSING'])
    expect(plan.blockers[0].message).toContain('shared_preload_libraries')
    expect(entry(plan, 'pg_cron')).toMatchObject({ action: 'blocked', from: null })
  })

  requires('pg_cron').it('pg_cron with install-missing on a server that preloads it: approved', async () => {
    const preloaded = await startCluster({ settings: { shared_preload_libraries: "'pg_cron'" } })
    try {
      const result = await runInProcess({ mode: 'dry-run', 'database-url': preloaded.url('postgres'), extensions: 'pg_cron', 'install-missing': 'true' })
      expect(result.plan?.blockers).toEqual([])
      expect(result.status).toBe('dry_run_approved')
      expect(entry(result.plan!, 'pg_cron')).toMatchObject({ action: 'install', to: '1.4-1' })
    } finally {
      await preloaded.destroy()
    }
  })
})

/** Every form of a password that must never be printed. */
const forms = (password: string) => [password, encodeURIComponent(password), password.slice(0, 6)]

function expectNoSecret(result: ModeResult, password: string) {
  const text = JSON.stringify(result)
  for (const form of forms(password)) expect(text).not.toContain(form)
}

describe('TLS', () => {
  let tls: Cluster
  let cert: string
  const db = uniqueName('tls')

  const sslClient = async (database = 'postgres') => tls.connect(database, { ssl: { rejectUnauthorized: false } })

  beforeAll(async () => {
    tls = await startCluster()
    await tls.createDatabase(db, { hstore: '1.4' })
    cert = join(tls.dataDir, 'server.crt')
    const key = join(tls.dataDir, 'server.key')
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', key, '-out', cert
    ], { stdio: 'pipe' })
    chownToOwner(cert)
    chownToOwner(key)
    chmodSync(key, 0o600)
    await tls.query(`ALTER SYSTEM SET ssl = on`)
    // Only TLS connections over TCP from now on: a plain connection is rejected by pg_hba.
    const hba = join(tls.dataDir, 'pg_hba.conf')
    writeFileSync(hba, `hostnossl all all 127.0.0.1/32 reject\n${readFileSync(hba, 'utf8')}`)
    tls.pgCtl(['reload'])
    for (let i = 0; i < 50; i++) {
      try {
        const client = await sslClient()
        await client.end()
        break
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
  })

  afterAll(async () => {
    await tls?.destroy()
  })

  it('the server accepts TLS only (premise)', async () => {
    const client = await sslClient()
    const { rows } = await client.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
    await client.end()
    expect(rows[0].ssl).toBe(true)
    await expect(tls.connect('postgres')).rejects.toThrow(/pg_hba.conf rejects connection|no pg_hba.conf entry/)
  })

  it('sslmode=require works', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': `${tls.url(db)}?sslmode=require`, extensions: 'hstore@1.8' })
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('dry_run_approved')
    expect(result.target).toContain('sslmode=require')
  })

  it('sslmode=disable is refused by the server (so the TLS cases above are real)', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': `${tls.url(db)}?sslmode=disable`, extensions: 'hstore@1.8' })
    expect(result.errors[0].code).toBe('CONNECTION_FAILED')
    expect(result.error).toContain('28000')
    expectNoSecret(result, SUPERUSER_PASSWORD)
  })

  it('sslmode=verify-full with sslrootcert naming the certificate for 127.0.0.1 works', async () => {
    const url = `${tls.url(db)}?sslmode=verify-full&sslrootcert=${encodeURIComponent(cert)}`
    const result = await runInProcess({ mode: 'dry-run', 'database-url': url, extensions: 'hstore@1.8' })
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('dry_run_approved')
  })

  it('the PG* variables carry TLS settings too', async () => {
    const env = { PGHOST: '127.0.0.1', PGPORT: String(tls.port), PGUSER: SUPERUSER, PGPASSWORD: SUPERUSER_PASSWORD, PGDATABASE: db, PGSSLMODE: 'verify-full', PGSSLROOTCERT: cert }
    const result = await runInProcess({ mode: 'dry-run', extensions: 'hstore@1.8' }, env)
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('dry_run_approved')
  })

  it('sslmode=verify-full without the CA fails with CONNECTION_FAILED, never showing the password', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': `${tls.url(db)}?sslmode=verify-full`, extensions: 'hstore@1.8' })
    expect(result.status).toBe('failed')
    expect(result.errors.map((e) => e.code)).toEqual(['CONNECTION_FAILED'])
    expect(result.error).toMatch(/certificate/i)
    expect(result.error).toContain(`postgresql://${SUPERUSER}:***@127.0.0.1:${tls.port}/${db}`)
    expectNoSecret(result, SUPERUSER_PASSWORD)
  })
})

describe('CONNECTION_FAILED', () => {
  it('a closed port fails at once, well within connect-timeout, with the redacted target', async () => {
    const port = await freePort()
    const url = `postgresql://${SUPERUSER}:${encodeURIComponent(SUPERUSER_PASSWORD)}@127.0.0.1:${port}/postgres`
    const started = Date.now()
    const result = await runInProcess({ mode: 'dry-run', 'database-url': url, 'connect-timeout': '5s' })
    const elapsed = Date.now() - started
    expect(elapsed).toBeLessThan(2000)
    expect(result.status).toBe('failed')
    expect(result.errors.map((e) => e.code)).toEqual(['CONNECTION_FAILED'])
    expect(result.error).toContain(`postgresql://${SUPERUSER}:***@127.0.0.1:${port}/postgres`)
    expect(result.error).toContain('ECONNREFUSED')
    expect(result.plan).toBeUndefined()
    expectNoSecret(result, SUPERUSER_PASSWORD)
  })

  describe('a server that accepts but never answers', () => {
    let silent: Server
    const sockets: Socket[] = []
    let port: number

    beforeAll(async () => {
      silent = createServer((socket) => sockets.push(socket))
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
      port = (silent.address() as { port: number }).port
    })

    afterAll(async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => silent.close(resolve))
    })

    it('gives up after connect-timeout, not later and not sooner', async () => {
      const url = `postgresql://${SUPERUSER}:${encodeURIComponent(SUPERUSER_PASSWORD)}@127.0.0.1:${port}/postgres`
      const started = Date.now()
      const result = await runInProcess({ mode: 'dry-run', 'database-url': url, 'connect-timeout': '1500ms' })
      const elapsed = Date.now() - started
      expect(result.errors.map((e) => e.code)).toEqual(['CONNECTION_FAILED'])
      expect(elapsed).toBeGreaterThanOrEqual(1400)
      expect(elapsed).toBeLessThan(4000)
      expect(result.error).toMatch(/timeout/i)
      expect(sockets.length).toBeGreaterThanOrEqual(1)
      expectNoSecret(result, SUPERUSER_PASSWORD)
    })
  })

  it('a wrong password fails with SQLSTATE 28P01, the password absent', async () => {
    const wrong = 'Wr0ng p@ss/%word'
    const result = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url('postgres', SUPERUSER, wrong) })
    expect(result.errors.map((e) => e.code)).toEqual(['CONNECTION_FAILED'])
    expect(result.error).toContain('28P01')
    expect(result.error).toContain(`postgresql://${SUPERUSER}:***@127.0.0.1:${cluster.port}/postgres`)
    expectNoSecret(result, wrong)
    expectNoSecret(result, SUPERUSER_PASSWORD)
  })

  it('a wrong password from PGPASSWORD fails the same way, the password absent', async () => {
    const wrong = 'Env p@ss/%word'
    const env = { PGHOST: '127.0.0.1', PGPORT: String(cluster.port), PGUSER: SUPERUSER, PGPASSWORD: wrong, PGDATABASE: 'postgres' }
    const result = await runInProcess({ mode: 'dry-run' }, env)
    expect(result.errors.map((e) => e.code)).toEqual(['CONNECTION_FAILED'])
    expect(result.error).toContain('28P01')
    expectNoSecret(result, wrong)
  })

  it('a connect-timeout beyond what a timer holds (30d) is refused as input or honoured, never an instant "timeout"', async () => {
    // Node clamps setTimeout delays above 2^31-1 ms to 1 ms: a validated 30d must not become "timeout expired".
    const result = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url('postgres'), 'connect-timeout': '30d' })
    if (result.errors.length > 0) {
      expect(result.errors.map((e) => e.code)).toEqual(['INVALID_INPUT'])
      expect(result.error).toContain('input "connect-timeout"')
    } else {
      expect(result.status).toBe('nothing_to_do')
    }
  })

  it('sslmode=allow connects to a server without TLS, as libpq does', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': `${cluster.url('postgres')}?sslmode=allow` })
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('nothing_to_do')
  })

  it('sslmode=prefer falls back to a plain connection on a server without TLS', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': `${cluster.url('postgres')}?sslmode=prefer` })
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('nothing_to_do')
  })

  it('sslmode=require on a server without TLS fails with CONNECTION_FAILED', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': `${cluster.url('postgres')}?sslmode=require` })
    expect(result.errors.map((e) => e.code)).toEqual(['CONNECTION_FAILED'])
    expect(result.error).toMatch(/SSL/)
  })

  it('a missing database fails with SQLSTATE 3D000', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url('no_such_db_here') })
    expect(result.errors.map((e) => e.code)).toEqual(['CONNECTION_FAILED'])
    expect(result.error).toContain('3D000')
    expectNoSecret(result, SUPERUSER_PASSWORD)
  })
})
