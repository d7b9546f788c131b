import { chmodSync, chownSync, existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { CodedError, errorMessage } from '../errors.js'
import { asUserPrefix, commandLine, ownerOf, runAsMethod, runProgram, runShell, shellQuote, type OsUser, type ProgramResult } from '../programs.js'

/**
 * A server's data directory, handled as its owner: pg_ctl and pg_controldata run as the owner
 * (uid/gid when we are root, directly when we are the owner, else sudo -n), and files we create
 * in it end up owned by the owner with the modes PostgreSQL insists on.
 */
export class DataDirectory {
  readonly owner: OsUser
  readonly mode: number

  constructor(
    readonly path: string,
    private readonly programs: { pgCtl?: string; pgControldata?: string },
    private readonly env: NodeJS.ProcessEnv
  ) {
    this.owner = ownerOf(path)
    this.mode = statSync(path).mode & 0o777
  }

  get parent(): string {
    return dirname(this.path)
  }

  get name(): string {
    return basename(this.path)
  }

  /** A sibling path (same parent, so the same filesystem: renames are instant). */
  sibling(suffix: string): string {
    return join(this.parent, `${this.name}${suffix}`)
  }

  private get inProcess(): boolean {
    return runAsMethod(this.owner) !== 'sudo'
  }

  private asOwner(command: string, args: string[], timeoutMs?: number): Promise<ProgramResult> {
    return runProgram(command, args, { as: this.owner, env: this.env, cwd: this.parent, timeoutMs, interruptible: false })
  }

  /** Hands a file or tree we created to the owner (only needed when we are root). */
  private async give(path: string, recursive: boolean): Promise<void> {
    if (runAsMethod(this.owner) !== 'setuid') return
    if (recursive) await runProgram('chown', ['-R', `${this.owner.uid}:${this.owner.gid}`, path], { env: this.env })
    else chownSync(path, this.owner.uid, this.owner.gid)
  }

  async rename(from: string, to: string): Promise<void> {
    if (existsSync(to)) throw new CodedError('ROLLBACK_FAILED', `${to} already exists; refusing to overwrite it`)
    if (this.inProcess) renameSync(from, to)
    else await this.asOwner('mv', ['-T', from, to])
  }

  /** Copies a tree (cp -a, reflinked where the filesystem can), owned by the owner, with the data directory's mode. */
  async copyTree(from: string, to: string): Promise<void> {
    const reflink = process.platform === 'linux' ? ['--reflink=auto'] : []
    if (this.inProcess) {
      await runProgram('cp', ['-a', ...reflink, from, to], { env: this.env })
      await this.give(to, true)
    } else {
      await this.asOwner('cp', ['-R', from, to])
    }
    await this.chmod(to, this.mode)
  }

  async chmod(path: string, mode: number): Promise<void> {
    if (this.inProcess) chmodSync(path, mode)
    else await this.asOwner('chmod', [mode.toString(8), path])
  }

  async remove(path: string): Promise<void> {
    if (!existsSync(path)) return
    if (this.inProcess) rmSync(path, { recursive: true, force: true })
    else await this.asOwner('rm', ['-rf', path])
  }

  async readText(path: string): Promise<string> {
    if (this.inProcess) return existsSync(path) ? readFileSync(path, 'utf8') : ''
    const result = await runProgram('sudo', ['-n', '-u', `#${this.owner.uid}`, 'cat', path], { env: this.env, okCodes: [0, 1] })
    return result.code === 0 ? result.stdout : ''
  }

  /** Writes a file inside the data directory as the owner, mode 0600. */
  async writeText(path: string, content: string): Promise<void> {
    if (this.inProcess) {
      writeFileSync(path, content, { mode: 0o600 })
      chmodSync(path, 0o600)
      await this.give(path, false)
    } else {
      await runProgram('sudo', ['-n', '-u', `#${this.owner.uid}`, 'sh', '-c', `umask 077 && cat > ${shellQuote(path)}`], { env: this.env, input: content })
    }
  }

  /** pg_controldata of a directory (this one by default), as a name → value map. */
  async controlData(path = this.path): Promise<Record<string, string>> {
    if (!this.programs.pgControldata) throw new Error('pg_controldata was not found')
    const result = await this.asOwner(this.programs.pgControldata, [path])
    return Object.fromEntries(
      result.stdout
        .split('\n')
        .map((line) => /^([^:]+):\s*(.*)$/.exec(line))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [m[1].trim(), m[2].trim()])
    )
  }

  /** The postmaster's pid from postmaster.pid, when the file is there. */
  postmasterPid(path = this.path): number | undefined {
    const file = join(path, 'postmaster.pid')
    try {
      const pid = Number(readFileSync(file, 'utf8').split('\n')[0])
      return Number.isInteger(pid) && pid > 0 ? pid : undefined
    } catch {
      return undefined
    }
  }

  /** True while a postmaster runs on this directory (postmaster.pid names a live process). */
  isRunning(path = this.path): boolean {
    const pid = this.postmasterPid(path)
    if (pid === undefined) return false
    try {
      process.kill(pid, 0)
      return true
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'EPERM'
    }
  }

  /** pg_ctl on this directory as its owner. */
  async ctl(args: string[], timeoutMs?: number): Promise<ProgramResult> {
    if (!this.programs.pgCtl) throw new CodedError('PROGRAM_MISSING', 'pg_ctl was not found (set pg-bin-dir)')
    return this.asOwner(this.programs.pgCtl, ['-D', this.path, ...args], timeoutMs)
  }

  pgCtlCommand(args: string[]): string {
    return `${asUserPrefix(this.owner)}${commandLine(this.programs.pgCtl ?? 'pg_ctl', ['-D', this.path, ...args])}`
  }

  async stop(stopCommand: string | undefined, timeoutMs: number): Promise<void> {
    if (stopCommand) {
      await runShell(stopCommand, { env: this.env, timeoutMs })
    } else {
      if (!this.programs.pgCtl) throw new Error('pg_ctl was not found')
      await this.asOwner(this.programs.pgCtl, ['-D', this.path, '-m', 'fast', '-w', '-t', String(Math.ceil(timeoutMs / 1000)), 'stop'], timeoutMs + 10_000)
    }
    const deadline = Date.now() + 10_000
    while (this.isRunning() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
    if (this.isRunning()) throw new CodedError('ROLLBACK_FAILED', `the server on ${this.path} is still running after the stop command`)
  }

  /** Starts the server; with pg_ctl the log goes to `logFile`. Resolves when the command returned. */
  async start(startCommand: string | undefined, logFile: string, timeoutMs: number): Promise<ProgramResult> {
    if (startCommand) return runShell(startCommand, { env: this.env, timeoutMs })
    if (!this.programs.pgCtl) throw new Error('pg_ctl was not found')
    return this.asOwner(this.programs.pgCtl, ['-D', this.path, '-l', logFile, '-w', '-t', String(Math.ceil(timeoutMs / 1000)), 'start'], timeoutMs + 10_000)
  }

  /** The server log to watch: ours when we started it with pg_ctl, else the collector's current file. */
  currentLogFile(ourLog: string | undefined): string | undefined {
    if (ourLog && existsSync(ourLog)) return ourLog
    try {
      const current = readFileSync(join(this.path, 'current_logfiles'), 'utf8').split('\n').find((line) => line.startsWith('stderr '))
      if (current) {
        const file = current.slice('stderr '.length).trim()
        return file.startsWith('/') ? file : join(this.path, file)
      }
    } catch {
      // no logging collector
    }
    return undefined
  }
}

export function readLogTail(file: string | undefined, fromOffset = 0): string {
  if (!file) return ''
  try {
    return readFileSync(file).subarray(fromOffset).toString('utf8')
  } catch (error) {
    return `(cannot read ${file}: ${errorMessage(error)})`
  }
}

export function fileSize(file: string | undefined): number {
  try {
    return file ? statSync(file).size : 0
  } catch {
    return 0
  }
}

const RECOVERY_LINE = /^\s*(recovery_target\w*|restore_command)\s*=/

/**
 * postgresql.auto.conf prepared for recovery: existing recovery_target* and restore_command lines
 * are commented out (two target kinds at once are FATAL), then our block is appended between
 * markers, so it can be removed exactly after promotion.
 */
export function withRecoverySettings(original: string, settings: Record<string, string>, marker: string): string {
  const trimmed = original.replace(/\n+$/, '')
  const lines = trimmed === '' ? [] : trimmed.split('\n')
  const kept = lines.map((line) => (RECOVERY_LINE.test(line) ? `# ${marker} commented out: ${line}` : line))
  const block = [
    `# ${marker} begin: recovery settings, removed after promotion`,
    ...Object.entries(settings).map(([name, value]) => `${name} = '${value.replace(/'/g, "''")}'`),
    `# ${marker} end`
  ]
  return `${[...kept, ...block].join('\n')}\n`
}

/** Removes our block (the commented-out lines stay commented: they were stale recovery settings). */
export function withoutRecoverySettings(content: string, marker: string): string {
  const lines = content.split('\n')
  const begin = lines.findIndex((line) => line.startsWith(`# ${marker} begin`))
  const end = lines.findIndex((line) => line.startsWith(`# ${marker} end`))
  if (begin < 0 || end < begin) return content
  return [...lines.slice(0, begin), ...lines.slice(end + 1)].join('\n')
}
