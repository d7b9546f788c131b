import pg from 'pg'
import { parse, toClientConfig } from 'pg-connection-string'
import { CodedError, errorMessage } from './errors.js'
import { describePgError } from './pg-error.js'
import { PRODUCT } from './product.js'

export const APPLICATION_NAME = PRODUCT.name

/** Where to connect, without a database-specific part, and what must never be printed. */
export interface ConnectionTarget {
  config: pg.ClientConfig
  database: string
  sslmode?: string
  /** TLS file paths as given (sslrootcert, sslcert, sslkey), for libpq programs. */
  sslFiles: Partial<Record<'sslrootcert' | 'sslcert' | 'sslkey', string>>
  /** Values to mask everywhere: the URL, the password, and its encoded and decoded forms. */
  secrets: string[]
}

const URI = /^postgres(?:ql)?:\/\//i
const ENV_PARAMS: Array<[string, string]> = [
  ['PGSSLMODE', 'sslmode'],
  ['PGSSLROOTCERT', 'sslrootcert'],
  ['PGSSLCERT', 'sslcert'],
  ['PGSSLKEY', 'sslkey']
]

/**
 * Resolves `database-url` (or `input`, the name errors give), or the libpq `PG*` environment
 * variables when it is empty.
 */
export function resolveTarget(databaseUrl: string, env: NodeJS.ProcessEnv = process.env, input = 'database-url'): ConnectionTarget {
  const url = databaseUrl.trim() || urlFromEnvironment(env)
  const secrets = secretsOf(databaseUrl, env)
  if (!URI.test(url)) {
    throw new CodedError(
      'INVALID_INPUT',
      `input "${input}": must be a libpq connection URI such as postgresql://user:password@host:5432/dbname?sslmode=require (the value is not shown: it may hold a password)`
    )
  }
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse(url, { useLibpqCompat: true })
  } catch (error) {
    const reason = errorMessage(error).replace(url, `[${input}]`)
    throw new CodedError('INVALID_INPUT', `input "${input}": cannot be parsed (${scrub(reason, secrets)})`)
  }
  if (parsed.password) secrets.push(...passwordForms(parsed.password))
  const config = toClientConfig(parsed)
  // libpq's allow and prefer encrypt without verifying the certificate, and fall back to a plain
  // connection when the server has no TLS (see makeConnector).
  if (parsed.sslmode === 'allow' || parsed.sslmode === 'prefer') config.ssl = { rejectUnauthorized: false }
  const database = config.database || parsed.user || env.PGUSER || env.USER || 'postgres'
  delete config.database
  const sslmode = typeof parsed.sslmode === 'string' ? parsed.sslmode : undefined
  const sslFiles = Object.fromEntries(
    (['sslrootcert', 'sslcert', 'sslkey'] as const).filter((key) => typeof parsed[key] === 'string').map((key) => [key, parsed[key] as string])
  )
  return { config, database, sslmode, sslFiles, secrets: unique(secrets) }
}

function urlFromEnvironment(env: NodeJS.ProcessEnv): string {
  const params = new URLSearchParams()
  if (env.PGHOST) params.set('host', env.PGHOST)
  if (env.PGPORT) params.set('port', env.PGPORT)
  for (const [variable, param] of ENV_PARAMS) if (env[variable]) params.set(param, env[variable] as string)
  const user = env.PGUSER ? encodeURIComponent(env.PGUSER) : ''
  const password = env.PGPASSWORD ? `:${encodeURIComponent(env.PGPASSWORD)}` : ''
  const credentials = user || password ? `${user}${password}@` : ''
  const query = params.size > 0 ? `?${params.toString()}` : ''
  return `postgresql://${credentials}/${encodeURIComponent(env.PGDATABASE ?? '')}${query}`
}

/**
 * The URL's and the environment's passwords, and the URL itself when it holds one. A URL without
 * a password is no secret: masking it would turn `postgresql://app@db:5432/app` into `***`.
 */
export function secretsOf(databaseUrl: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const secrets: string[] = []
  const url = databaseUrl.trim()
  if (env.PGPASSWORD) secrets.push(...passwordForms(env.PGPASSWORD))
  if (!url) return unique(secrets)
  // Parsed as the driver parses it (WHATWG URL): an unencoded "@" in a password ends at the last "@".
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    // Not a URL (resolveTarget reports it without printing it): all of it may be a password.
    return unique([url, ...secrets])
  }
  const passwords = [parsed.password, parsed.searchParams.get('password') ?? ''].filter((password) => password.length > 0)
  if (passwords.length > 0) secrets.push(url)
  for (const password of passwords) secrets.push(...passwordForms(password))
  return unique(secrets)
}

function passwordForms(password: string): string[] {
  const forms = [password, encodeURIComponent(password)]
  try {
    forms.push(decodeURIComponent(password))
  } catch {
    // not percent-encoded: the raw form is already listed
  }
  return forms.filter((form) => form.length > 0)
}

const unique = (values: string[]) => [...new Set(values)]

const jsonEscaped = (text: string) => JSON.stringify(text).slice(1, -1)

/**
 * The base64 text of a secret wherever it sits in a longer byte string: for each of the three
 * alignments, the characters that only the secret's bits decide (shorter runs are too common
 * to mask). Both the standard and the URL-safe alphabet.
 */
function base64Forms(secret: string): string[] {
  const bytes = Buffer.from(secret, 'utf8')
  const forms = [bytes.toString('base64'), bytes.toString('base64url')]
  for (const shift of [0, 1, 2]) {
    const encoded = Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64')
    const core = encoded.slice(Math.ceil((8 * shift) / 6), Math.floor((8 * (shift + bytes.length)) / 6))
    if (core.length >= 8) forms.push(core, core.replace(/\+/g, '-').replace(/\//g, '_'))
  }
  return forms
}

const formsCache = new Map<string, string[]>()

/**
 * Every form in which a secret can end up in text this tool writes: raw, URL-encoded (both
 * percent and form encoding), JSON-escaped (once, and twice for JSON inside a JSON string) and
 * base64. Masking only the raw form let a password with `"` or `\` through in JSON outputs.
 */
export function secretForms(secret: string): string[] {
  let forms = formsCache.get(secret)
  if (!forms) {
    const encoded = [secret, encodeURIComponent(secret), new URLSearchParams({ s: secret }).toString().slice(2)]
    forms = unique([...encoded, ...encoded.map(jsonEscaped), ...encoded.map((form) => jsonEscaped(jsonEscaped(form))), ...base64Forms(secret)]).filter((form) => form.length > 0)
    formsCache.set(secret, forms)
  }
  return forms
}

const matchers = new Map<string, RegExp>()

/** One pattern for every form of every secret, longest first, compiled once per list of secrets. */
function matcherOf(secrets: readonly string[]): RegExp {
  const key = secrets.join('\u0000')
  let matcher = matchers.get(key)
  if (!matcher) {
    const forms = unique(secrets.flatMap(secretForms)).sort((a, b) => b.length - a.length)
    matcher = new RegExp(forms.map((form) => form.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g')
    matchers.set(key, matcher)
  }
  return matcher
}

/** Replaces every form of every secret in `text`, longest first, so that a URL is masked whole before its password. */
export function scrub(text: string, secrets: readonly string[]): string {
  if (secrets.length === 0 || text.length === 0) return text
  return text.replace(matcherOf(secrets), '***')
}

/**
 * A copy of `value` with every string in it (keys included) scrubbed: applied to a result before
 * it is serialised, so that no encoding of the output can carry a secret past the mask.
 */
export function scrubValues<T>(value: T, secrets: readonly string[]): T {
  if (secrets.length === 0) return value
  const walk = (item: unknown): unknown => {
    if (typeof item === 'string') return scrub(item, secrets)
    if (Array.isArray(item)) return item.map(walk)
    if (item !== null && typeof item === 'object' && Object.getPrototypeOf(item) === Object.prototype) {
      return Object.fromEntries(Object.entries(item).map(([key, entry]) => [scrub(key, secrets), walk(entry)]))
    }
    return item
  }
  return walk(value) as T
}

/** The target as it may be printed: never a password. */
export function redact(target: ConnectionTarget, database = target.database): string {
  const { host, port, user, password } = target.config
  const socket = typeof host === 'string' && host.startsWith('/')
  const credentials = user ? `${encodeURIComponent(user)}${password ? ':***' : ''}@` : ''
  const address = socket || !host ? '' : `${host}${port ? `:${port}` : ''}`
  const params = new URLSearchParams()
  if (socket) params.set('host', host as string)
  if (target.sslmode) params.set('sslmode', target.sslmode)
  const query = params.size > 0 ? `?${decodeURIComponent(params.toString())}` : ''
  return `postgresql://${credentials}${address}/${encodeURIComponent(database)}${query}`
}

/**
 * The target as libpq environment variables, for programs such as pg_dump and pg_basebackup:
 * the password travels in PGPASSWORD, never on a command line where `ps` would show it.
 */
export function libpqEnvironment(target: ConnectionTarget, database = target.database): Record<string, string> {
  const { host, port, user, password } = target.config
  const env: Record<string, string> = { PGDATABASE: database, PGAPPNAME: APPLICATION_NAME }
  if (typeof host === 'string' && host) env.PGHOST = host
  if (port) env.PGPORT = String(port)
  if (user) env.PGUSER = user
  if (typeof password === 'string' && password) env.PGPASSWORD = password
  if (target.sslmode) env.PGSSLMODE = target.sslmode
  if (target.sslFiles.sslrootcert) env.PGSSLROOTCERT = target.sslFiles.sslrootcert
  if (target.sslFiles.sslcert) env.PGSSLCERT = target.sslFiles.sslcert
  if (target.sslFiles.sslkey) env.PGSSLKEY = target.sslFiles.sslkey
  return env
}

export interface SessionSpec {
  database?: string
  /** Appended to the application_name, so that every session says what it is for. */
  purpose: string
  /** Sent as startup `options` (`-c name=value`), never as SET: the first statement stays ours. */
  settings?: Record<string, string | number>
  /** A physical replication (walsender) connection, for probing what pg_basebackup will need. */
  replication?: boolean
}

export type Connector = (spec: SessionSpec) => Promise<pg.Client>

export function startupOptions(settings: Record<string, string | number>): string {
  const escape = (value: string) => value.replace(/\\/g, '\\\\').replace(/ /g, '\\ ')
  return Object.entries(settings)
    .map(([name, value]) => `-c ${name}=${escape(String(value))}`)
    .join(' ')
}

/** A connection factory: one fresh, unpooled session per call. */
export function makeConnector(target: ConnectionTarget, connectTimeoutMs: number): Connector {
  return async (spec) => {
    const database = spec.database ?? target.database
    const config: pg.ClientConfig = {
      ...target.config,
      database,
      application_name: `${APPLICATION_NAME}/${spec.purpose}`,
      connectionTimeoutMillis: connectTimeoutMs,
      keepAlive: true,
      options: spec.settings ? startupOptions(spec.settings) : undefined,
      ...(spec.replication ? { replication: 'true' } : {})
    } as pg.ClientConfig
    try {
      return await open(config)
    } catch (error) {
      if ((target.sslmode === 'prefer' || target.sslmode === 'allow') && /does not support SSL/i.test(errorMessage(error))) {
        try {
          return await open({ ...config, ssl: false })
        } catch (retryError) {
          throw connectionFailed(target, database, retryError)
        }
      }
      throw connectionFailed(target, database, error)
    }
  }
}

async function open(config: pg.ClientConfig): Promise<pg.Client> {
  const client = new pg.Client(config)
  // A backend terminated while idle emits 'error'; the next query reports it instead of a crash.
  client.on('error', () => undefined)
  try {
    await client.connect()
  } catch (error) {
    // A refused handshake (no password for SCRAM) leaves the socket open until the server's
    // authentication_timeout: the process would linger a minute after failing.
    await closeQuietly(client)
    throw error
  }
  return client
}

function connectionFailed(target: ConnectionTarget, database: string, error: unknown): CodedError {
  const reason = scrub(describePgError(error), target.secrets)
  return new CodedError('CONNECTION_FAILED', `cannot connect to ${redact(target, database)}: ${reason}`)
}

/** The backend pid of a session (pg keeps it from BackendKeyData). */
export function backendPid(client: pg.Client): number {
  return (client as unknown as { processID: number }).processID
}

/** Opens a session, runs the work, and always closes it. */
export async function withSession<T>(connect: Connector, spec: SessionSpec, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connect(spec)
  try {
    return await work(client)
  } finally {
    await closeQuietly(client)
  }
}

export async function closeQuietly(client: pg.Client | undefined): Promise<void> {
  if (!client) return
  try {
    await client.end()
  } catch {
    // already gone
  }
}
