import { closeSync, fstatSync, openSync, readSync, realpathSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { isAbsolute, relative, resolve } from 'node:path'
import { CodedError } from './errors.js'

/*
 * Inputs that name a file the tool reads (`verify-sql`, `manifest`, `plan`, a compacted plan's
 * `planFile`) may only point inside the workspace or the runner's temp directory. A workflow
 * input can come from a pull request, and what is read may be echoed into errors, summaries and
 * outputs: `/proc/self/environ` or `/etc/passwd` must never be one of them.
 */

/** Pseudo-filesystems that are never file inputs, whatever the roots are. */
const SYSTEM_ROOTS = ['/proc', '/sys', '/dev']

/** File inputs are small: the largest is a plan of thousands of databases. */
export const MAX_INPUT_FILE_BYTES = 64 * 1024 * 1024

/**
 * Where file inputs may live: the workspace (GITHUB_WORKSPACE; the current directory for the
 * CLI) and the directory this tool writes its own files to (RUNNER_TEMP, else the system's).
 */
export function inputFileRoots(env: NodeJS.ProcessEnv, workspace?: string): string[] {
  const roots = [workspace ?? (env.GITHUB_WORKSPACE || process.cwd()), env.RUNNER_TEMP || tmpdir()]
  return roots.map((root) => realOrResolved(root))
}

function realOrResolved(path: string): string {
  try {
    return realpathSync(path)
  } catch {
    return resolve(path)
  }
}

export function isInside(child: string, parent: string): boolean {
  const path = relative(parent, child)
  return path === '' || (!path.startsWith('..') && !isAbsolute(path))
}

const isSystemPath = (path: string) => SYSTEM_ROOTS.some((root) => isInside(path, root))

/** A value as an error may quote it: one line, at most 200 characters. */
export function quoted(value: string, max = 200): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value)
}

export type InputFileProblem = 'system' | 'missing' | 'unreadable' | 'outside' | 'directory' | 'not-a-file' | 'too-large'

/** A file input refused: INVALID_INPUT naming the input, with what was wrong for callers to word. */
export class InputFileError extends CodedError {
  constructor(
    readonly problem: InputFileProblem,
    message: string
  ) {
    super('INVALID_INPUT', message)
  }
}

/**
 * The real path of a file input, after checking that it exists, is a regular file and, once
 * every symlink is resolved, lies inside one of the roots and outside /proc, /sys and /dev.
 * Relative paths start from the workspace. Every refusal is INVALID_INPUT naming the input.
 */
export function resolveInputFile(input: string, path: string, env: NodeJS.ProcessEnv, workspace?: string): string {
  const roots = inputFileRoots(env, workspace)
  const absolute = resolve(roots[0], path)
  const where = `file inputs must be inside the workspace (${roots[0]}) or the runner's temp directory (${roots[1]})`
  if (isSystemPath(absolute)) throw new InputFileError('system', `input "${input}": ${quoted(path)} is under /proc, /sys or /dev; ${where}`)
  let real: string
  try {
    real = realpathSync(absolute)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    const missing = code === 'ENOENT' || code === 'ENOTDIR'
    const reason = missing ? 'does not exist' : code === 'EACCES' ? 'is not readable by this process' : `cannot be read (${code ?? 'unknown error'})`
    throw new InputFileError(missing ? 'missing' : 'unreadable', `input "${input}": ${quoted(path)} ${reason}`)
  }
  if (isSystemPath(real) || !roots.some((root) => isInside(real, root))) {
    const via = real === absolute ? '' : ` (it resolves to ${quoted(real)})`
    throw new InputFileError('outside', `input "${input}": ${quoted(path)} is outside the allowed directories${via}; ${where}`)
  }
  const stats = statSync(real)
  if (stats.isDirectory()) throw new InputFileError('directory', `input "${input}": ${quoted(path)} is a directory, not a file`)
  if (!stats.isFile()) throw new InputFileError('not-a-file', `input "${input}": ${quoted(path)} is not a regular file`)
  return real
}

/** Reads a file input (see resolveInputFile), refusing one larger than `maxBytes`. */
export function readInputFile(input: string, path: string, env: NodeJS.ProcessEnv, options: { workspace?: string; maxBytes?: number } = {}): string {
  const real = resolveInputFile(input, path, env, options.workspace)
  const maxBytes = options.maxBytes ?? MAX_INPUT_FILE_BYTES
  let fd: number
  try {
    fd = openSync(real, 'r')
  } catch (error) {
    throw new InputFileError('unreadable', `input "${input}": ${quoted(path)} cannot be opened (${(error as NodeJS.ErrnoException).code ?? 'unknown error'})`)
  }
  try {
    const size = fstatSync(fd).size
    if (size > maxBytes) throw new InputFileError('too-large', `input "${input}": ${quoted(path)} is ${size} bytes, more than the ${maxBytes} allowed`)
    const buffer = Buffer.alloc(size)
    let read = 0
    while (read < size) {
      const n = readSync(fd, buffer, read, size - read, read)
      if (n === 0) break
      read += n
    }
    return buffer.subarray(0, read).toString('utf8')
  } finally {
    closeSync(fd)
  }
}
