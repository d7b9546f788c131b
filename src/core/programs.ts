import { spawn } from 'node:child_process'
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs'
import { userInfo } from 'node:os'
import { delimiter, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { scrub } from './connection.js'
import { formatDuration } from './duration.js'
import { CodedError } from './errors.js'
import { interruptedBy, interruption, InterruptedError } from './interrupt.js'

/**
 * Running external programs (pg_basebackup, pg_dump, pg_ctl, cp, …): the command-line equivalent
 * of @actions/exec, shared by the action and the CLI. Failures carry the program's stderr; every run
 * reports its duration; programs that touch a data directory run as that directory's owner.
 */

/** An operating-system account, as a uid/gid pair (the name is for messages only). */
export interface OsUser {
  uid: number
  gid: number
  name: string
}

export interface ProgramOptions {
  /** The environment to start from (the mode's env); PG* variables are removed unless `keepPgEnv`. */
  env?: NodeJS.ProcessEnv
  /** Added to the environment: libpq variables (the password travels in PGPASSWORD, never in argv). */
  extraEnv?: Record<string, string>
  /** Keep inherited PG* variables (user-supplied shell commands). */
  keepPgEnv?: boolean
  /** Run as this account: directly when it is us, with uid/gid when we are root, else `sudo -n`. */
  as?: OsUser
  cwd?: string
  input?: string
  /** Killed (TERM, then KILL) when it runs longer. */
  timeoutMs?: number
  /** Values masked in the error message and in what `onOutput` sees. */
  secrets?: readonly string[]
  /** Called with each chunk of output as it arrives (progress). */
  onOutput?: (stream: 'stdout' | 'stderr', text: string) => void
  /** Exit codes that count as success (default: 0). */
  okCodes?: number[]
  /**
   * Whether an interrupted run kills it (default true). Programs that start or stop the server
   * are left to finish: killing them halfway would leave the server in an unknown state.
   */
  interruptible?: boolean
}

/** How long an interrupted program gets between SIGTERM and SIGKILL. */
const INTERRUPT_GRACE_MS = 2000

export interface ProgramResult {
  /** How it was run, for messages: the program and its arguments (never the environment). */
  commandLine: string
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  durationMs: number
}

/** A program that exited unsuccessfully: the message carries the tail of its stderr. */
export class ProgramError extends Error {
  constructor(
    message: string,
    readonly result: ProgramResult
  ) {
    super(message)
    this.name = 'ProgramError'
  }
}

const OUTPUT_LIMIT = 4 * 1024 * 1024
const STDERR_IN_MESSAGE = 2000

/** The owner of a file or directory, with the account name from /etc/passwd when it is there. */
export function ownerOf(path: string): OsUser {
  const stat = statSync(path)
  return { uid: stat.uid, gid: stat.gid, name: accountName(stat.uid) }
}

function accountName(uid: number): string {
  try {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((entry) => entry.split(':')[2] === String(uid))
    if (line) return line.split(':')[0]
  } catch {
    // no passwd file: the number will do
  }
  return `#${uid}`
}

export type RunAsMethod = 'self' | 'setuid' | 'sudo'

/** How a program would be run as `user` from here. */
export function runAsMethod(user: OsUser | undefined): RunAsMethod {
  if (!user) return 'self'
  const me = process.getuid?.() ?? userInfo().uid
  if (me === user.uid) return 'self'
  return me === 0 ? 'setuid' : 'sudo'
}

/** How a person would type the command as that user, for printed instructions. */
export function asUserPrefix(user: OsUser | undefined): string {
  const method = runAsMethod(user)
  if (method === 'self' || !user) return ''
  return `sudo -u ${user.name.startsWith('#') ? `'${user.name}'` : user.name} `
}

/** Single-quotes a word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
}

export function commandLine(file: string, args: readonly string[]): string {
  return [file, ...args].map(shellQuote).join(' ')
}

function childEnvironment(options: ProgramOptions): NodeJS.ProcessEnv {
  const base = { ...(options.env ?? process.env) }
  if (!options.keepPgEnv) {
    for (const name of Object.keys(base)) if (name.startsWith('PG')) delete base[name]
  }
  return { ...base, LC_MESSAGES: 'C', ...options.extraEnv }
}

/**
 * Runs a program and collects its output. Resolves when it exited with an accepted code; rejects
 * with a ProgramError carrying its stderr otherwise, or when it cannot be started.
 */
export function runProgram(file: string, args: readonly string[], options: ProgramOptions = {}): Promise<ProgramResult> {
  const secrets = options.secrets ?? []
  const method = runAsMethod(options.as)
  let command = file
  let argv = [...args]
  const env = childEnvironment(options)
  if (method === 'sudo') {
    if (options.extraEnv?.PGPASSWORD) throw new Error('refusing to pass a password through sudo')
    const passed = Object.entries(options.extraEnv ?? {}).map(([k, v]) => `${k}=${v}`)
    command = 'sudo'
    argv = ['-n', '-u', `#${options.as!.uid}`, '--', 'env', ...passed, file, ...args]
  }
  const shown = commandLine(file, args)
  const started = performance.now()
  const interruptible = options.interruptible ?? true
  const already = interruptedBy()
  if (interruptible && already) return Promise.reject(new InterruptedError(already, `about to run ${shown}`))
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, {
      cwd: options.cwd,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
      // Its own process group, so that an interruption stops it and everything it started.
      detached: interruptible,
      ...(method === 'setuid' ? { uid: options.as!.uid, gid: options.as!.gid } : {})
    })
    let stdout = ''
    let stderr = ''
    let settled = false
    let timedOut = false
    const collect = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const text = chunk.toString('utf8')
      if (stream === 'stdout' && stdout.length < OUTPUT_LIMIT) stdout += text
      if (stream === 'stderr' && stderr.length < OUTPUT_LIMIT) stderr += text
      options.onOutput?.(stream, scrub(text, secrets))
    }
    child.stdout!.on('data', collect('stdout'))
    child.stderr!.on('data', collect('stderr'))
    child.stdin!.on('error', () => undefined)
    child.stdin!.end(options.input ?? '')
    const timer =
      options.timeoutMs !== undefined
        ? setTimeout(() => {
            timedOut = true
            child.kill('SIGTERM')
            setTimeout(() => child.kill('SIGKILL'), 5000).unref()
          }, options.timeoutMs)
        : undefined
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, signal)
      } catch {
        // already gone
      }
    }
    const onInterrupt = () => {
      killGroup('SIGTERM')
      setTimeout(() => killGroup('SIGKILL'), INTERRUPT_GRACE_MS).unref()
    }
    if (interruptible) interruption.addEventListener('abort', onInterrupt, { once: true })
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return
      settled = true
      if (timer) clearTimeout(timer)
      interruption.removeEventListener('abort', onInterrupt)
      const stoppedBy = interruptible ? interruptedBy() : undefined
      if (stoppedBy && (signal !== null || code !== 0)) return reject(new InterruptedError(stoppedBy, `running ${shown}`))
      const result: ProgramResult = { commandLine: shown, code, signal, stdout, stderr, durationMs: performance.now() - started }
      const ok = code !== null && (options.okCodes ?? [0]).includes(code)
      if (ok) return resolve(result)
      const why = timedOut
        ? `timed out after ${formatDuration(options.timeoutMs ?? 0)}`
        : signal
          ? `was killed by ${signal}`
          : `exited with code ${code}`
      const tail = (stderr.trim() || stdout.trim()).slice(-STDERR_IN_MESSAGE)
      reject(new ProgramError(scrub(`${shown} ${why} after ${formatDuration(result.durationMs)}${tail ? `: ${tail}` : ''}`, secrets), result))
    }
    child.on('error', (error) => {
      if (settled) return
      settled = true
      if (timer) clearTimeout(timer)
      interruption.removeEventListener('abort', onInterrupt)
      const hint = method === 'sudo' ? ` (as ${options.as!.name} through sudo -n: passwordless sudo is needed when not running as root or as that user)` : ''
      const result: ProgramResult = { commandLine: shown, code: null, signal: null, stdout, stderr, durationMs: performance.now() - started }
      reject(new ProgramError(scrub(`${shown} could not be started: ${error.message}${hint}`, secrets), result))
    })
    // A program that leaves a daemon holding its pipes (a start command) must not hang us: after
    // exit, wait briefly for the streams, then settle anyway.
    let grace: NodeJS.Timeout | undefined
    child.on('exit', (code, signal) => {
      grace = setTimeout(() => {
        child.stdout?.destroy()
        child.stderr?.destroy()
        finish(code, signal)
      }, 1000)
    })
    child.on('close', (code, signal) => {
      if (grace) clearTimeout(grace)
      finish(code, signal)
    })
  })
}

/** Runs a user-supplied shell command (stop-command, start-command) with `sh -c`. */
export function runShell(command: string, options: ProgramOptions = {}): Promise<ProgramResult> {
  return runProgram('/bin/sh', ['-c', command], { keepPgEnv: true, interruptible: false, ...options })
}

const isExecutable = (path: string) => {
  try {
    accessSync(path, constants.X_OK)
    return statSync(path).isFile()
  } catch {
    return false
  }
}

export interface ProgramSearch {
  /** `pg-bin-dir`: looked in first. */
  binDir?: string
  /** The server's major version: /usr/lib/postgresql/<major>/bin and /usr/pgsql-<major>/bin come next. */
  serverMajor?: number
  env?: NodeJS.ProcessEnv
}

/** Where a PostgreSQL program would be looked for, in order. */
export function programCandidates(name: string, search: ProgramSearch): string[] {
  const dirs: string[] = []
  if (search.binDir) dirs.push(search.binDir)
  if (search.serverMajor) dirs.push(`/usr/lib/postgresql/${search.serverMajor}/bin`, `/usr/pgsql-${search.serverMajor}/bin`)
  const path = (search.env ?? process.env).PATH ?? ''
  dirs.push(...path.split(delimiter).filter(Boolean))
  return [...new Set(dirs.map((dir) => join(dir, name)))]
}

/** Finds a program: pg-bin-dir, then the server's versioned directory, then PATH. */
export function findProgram(name: string, search: ProgramSearch): string {
  if (search.binDir) {
    const given = join(search.binDir, name)
    if (isExecutable(given)) return given
    const directory = existsSync(search.binDir) ? (statSync(search.binDir).isDirectory() ? undefined : 'is not a directory') : 'does not exist'
    if (directory) throw new CodedError('INVALID_INPUT', `input "pg-bin-dir": ${search.binDir} ${directory}; give the directory of the PostgreSQL client programs`)
    throw new CodedError('PROGRAM_MISSING', `${name} is not in pg-bin-dir (${search.binDir}); install the PostgreSQL client programs there or fix pg-bin-dir`)
  }
  const found = programCandidates(name, search).find(isExecutable)
  if (found) return found
  const where = search.serverMajor ? `/usr/lib/postgresql/${search.serverMajor}/bin, /usr/pgsql-${search.serverMajor}/bin or PATH` : 'PATH'
  throw new CodedError('PROGRAM_MISSING', `${name} was not found in ${where}; install the PostgreSQL ${search.serverMajor ?? ''} client programs or set pg-bin-dir`.replace('  ', ' '))
}

const majors = new Map<string, number>()

/** The major version a PostgreSQL program belongs to (`pg_dump --version`). */
export async function programMajor(path: string, env?: NodeJS.ProcessEnv): Promise<number> {
  const known = majors.get(path)
  if (known !== undefined) return known
  const result = await runProgram(path, ['--version'], { env, timeoutMs: 30_000 })
  const match = /\(PostgreSQL\)\s+(\d+)/.exec(result.stdout) ?? /(\d+)(?:\.\d+)?/.exec(result.stdout)
  if (!match) throw new CodedError('PROGRAM_MISSING', `cannot tell the version of ${path} from "${result.stdout.trim()}"`)
  const major = Number(match[1])
  majors.set(path, major)
  return major
}

export interface VersionRule {
  /** `exact`: the same major as the server (pg_verifybackup, pg_waldump); `atLeast`: the same or newer (pg_dump). */
  rule: 'exact' | 'atLeast'
}

/**
 * Finds a program and checks that its major version can work with the server's; a mismatch is
 * PROGRAM_MISSING with both versions named.
 */
export async function findCompatibleProgram(name: string, serverMajor: number, search: ProgramSearch, rule: VersionRule['rule']): Promise<string> {
  const path = findProgram(name, { ...search, serverMajor })
  const major = await programMajor(path, search.env)
  const ok = rule === 'exact' ? major === serverMajor : major >= serverMajor
  if (!ok) {
    const need = rule === 'exact' ? `version ${serverMajor} exactly` : `version ${serverMajor} or newer`
    throw new CodedError('PROGRAM_MISSING', `${path} is PostgreSQL ${major}, but the server is ${serverMajor}: ${name} must be ${need} (set pg-bin-dir to the right one)`)
  }
  return path
}
