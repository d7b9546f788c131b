import { z } from 'zod'
import { parseDuration } from './core/duration.js'
import { secretsOf } from './core/connection.js'
import { CodedError, errorMessage } from './core/errors.js'
import { parseExtensionList, splitList } from './core/extension-list.js'
import { quoted } from './core/input-files.js'
import { restorePointProblem } from './core/recovery/manifest.js'

export const MODES = ['dry-run', 'snapshot', 'execute', 'verify', 'rollback', 'run', 'drift'] as const
export type Mode = (typeof MODES)[number]

/** Each input carries its action.yml default and its kind, for the CLI and the action.yml parity test. */
export interface InputMeta {
  default: string
  kind: 'text' | 'boolean' | 'duration' | 'integer' | 'list'
  /** A default only the runner can evaluate (an expression), declared in action.yml instead of `default`. */
  actionDefault?: string
}
const meta = (fallback: string, kind: InputMeta['kind']) => ({ input: { default: fallback, kind } })

/** A value as an error may quote it: JSON-quoted (no raw newline), at most 100 characters. */
const shown = (value: string) => quoted(value, 100)

const KiB = 1024
const CONTROL = /[\u0000-\u001f\u007f]/
const NUL = /\u0000/
/** Kernel pseudo-filesystems: never a file, directory or program this tool should use. */
const SYSTEM_PATH = /^\/+(proc|sys|dev)(\/|$)/

interface TextRule {
  /** Longest value accepted, in characters (a runner passes each input in an environment variable of at most 128 KiB). */
  max: number
  /** `line`: one line without control characters (paths, names, URLs); `multi`: any text but NUL. */
  shape: 'line' | 'multi'
  /** Never echo the value: it may hold a password or a token. */
  secret?: boolean
  /** A filesystem path: also refused under /proc, /sys and /dev. */
  path?: boolean
}

const PATH_RULE: TextRule = { max: 4 * KiB, shape: 'line', path: true }

/** Free text with limits checked at parse time, so that no value is used before it is known to be sane. */
const text = (fallback: string, rule: TextRule) =>
  z
    .string()
    .default(fallback)
    .superRefine((value, ctx) => {
      const problem = textProblem(value, rule)
      if (problem) ctx.addIssue({ code: 'custom', message: problem })
    })
    .meta(meta(fallback, 'text'))

function textProblem(value: string, rule: TextRule): string | undefined {
  const what = rule.secret ? 'the value (not shown: it may hold a secret)' : rule.shape === 'line' && value.length <= 100 ? shown(value) : 'the value'
  if (value.length > rule.max) return `${what} is ${value.length} characters long; at most ${rule.max} are allowed`
  if (rule.shape === 'line' && CONTROL.test(value)) return `${what} contains a newline or another control character, which cannot belong in it`
  if (NUL.test(value)) return `${what} contains a NUL character`
  if (rule.path && SYSTEM_PATH.test(value.trim())) return `${what} is under /proc, /sys or /dev, which are kernel pseudo-filesystems, not storage`
  return undefined
}

const bool = (fallback: 'true' | 'false') =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const normalised = value.trim().toLowerCase()
      if (normalised === 'true' || normalised === 'false') return normalised === 'true'
      ctx.addIssue({ code: 'custom', message: `${shown(value)} is not a boolean; use true or false` })
      return z.NEVER
    })
    .meta(meta(fallback, 'boolean'))

/** PostgreSQL's timeouts and Node's timers both stop at 2^31-1 milliseconds (about 24.8 days). */
const MAX_DURATION_MS = 2_147_483_647

const duration = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const ms = parseDuration(value)
      if (ms !== undefined && ms > 0 && ms <= MAX_DURATION_MS) return ms
      ctx.addIssue({
        code: 'custom',
        message: `${shown(value)} is not a positive duration up to 24d; use a number with ms, s, min, h or d (for example 5s or 15min)`
      })
      return z.NEVER
    })
    .meta(meta(fallback, 'duration'))

const integer = (fallback: string, min: number, max: number) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const trimmed = value.trim()
      const parsed = /^\d+$/.test(trimmed) ? Number(trimmed) : NaN
      if (parsed >= min && parsed <= max) return parsed
      ctx.addIssue({ code: 'custom', message: `${shown(value)} is not a whole number from ${min} to ${max}` })
      return z.NEVER
    })
    .meta(meta(fallback, 'integer'))

const choice = <T extends string>(fallback: T, allowed: readonly T[]) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const normalised = value.trim().toLowerCase() as T
      if (allowed.includes(normalised)) return normalised
      ctx.addIssue({ code: 'custom', message: `${shown(value)} is not one of ${allowed.join(', ')}` })
      return z.NEVER
    })
    .meta(meta(fallback, 'text'))

/** An optional whole number: empty means "no limit". */
const optionalInteger = (min: number, max: number) =>
  z
    .string()
    .default('')
    .transform((value, ctx) => {
      const trimmed = value.trim()
      if (trimmed === '') return undefined
      const parsed = /^\d+$/.test(trimmed) ? Number(trimmed) : NaN
      if (parsed >= min && parsed <= max) return parsed
      ctx.addIssue({ code: 'custom', message: `${shown(value)} is not a whole number from ${min} to ${max} (or empty for no limit)` })
      return z.NEVER
    })
    .meta(meta('', 'integer'))

/** Lists of names: thousands of databases fit; a runner's environment caps an input at 128 KiB anyway. */
const LIST_MAX = 1024 * KiB

/** Database names and glob patterns (`tenant_*`), comma or newline separated. */
const databasePatterns = z
  .string()
  .default('')
  .transform((value, ctx) => {
    if (value.length > LIST_MAX) {
      ctx.addIssue({ code: 'custom', message: `the list is ${value.length} characters long; at most ${LIST_MAX} are allowed` })
      return z.NEVER
    }
    const patterns = splitList(value)
    const bad = patterns.filter((p) => p.length > 63 || /[\u0000-\u001f]/.test(p))
    if (bad.length === 0) return patterns
    const listed = bad.slice(0, 5).map(shown).join(', ') + (bad.length > 5 ? ` and ${bad.length - 5} more` : '')
    ctx.addIssue({ code: 'custom', message: `${listed} ${bad.length === 1 ? 'is not a database name or pattern' : 'are not database names or patterns'} (at most 63 characters, no control characters)` })
    return z.NEVER
  })
  .meta(meta('', 'list'))

const extensionRequests = z
  .string()
  .default('')
  .transform((value, ctx) => {
    if (value.length > LIST_MAX) {
      ctx.addIssue({ code: 'custom', message: `the list is ${value.length} characters long; at most ${LIST_MAX} are allowed` })
      return z.NEVER
    }
    try {
      return parseExtensionList(value)
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: errorMessage(error) })
      return z.NEVER
    }
  })
const extensionList = extensionRequests.meta(meta('', 'list'))

const extensionNames = extensionRequests
  .transform((requests, ctx) => {
    if (requests.every((request) => request.version === undefined)) return requests.map((request) => request.name)
    ctx.addIssue({ code: 'custom', message: 'takes extension names only, without @version' })
    return z.NEVER
  })
  .meta(meta('', 'list'))

/** A plan's or report's JSON (any text), or the path of its file (one line). */
const jsonOrPath = (what: 'plan' | 'report') =>
  z
    .string()
    .default('')
    .superRefine((value, ctx) => {
      const json = value.trimStart().startsWith('{')
      const problem = json ? textProblem(value, { max: 1024 * KiB, shape: 'multi' }) : textProblem(value.trim(), PATH_RULE)
      if (problem) ctx.addIssue({ code: 'custom', message: json ? problem : `${problem} (a ${what} file path; or give the ${what}'s JSON)` })
    })
    .meta(meta('', 'text'))

/** A restore point name is checked as PostgreSQL will take it, before anything connects. */
const restorePoint = z
  .string()
  .default('')
  .superRefine((value, ctx) => {
    const problem = textProblem(value, { max: 1 * KiB, shape: 'line' }) ?? (value.trim() ? restorePointProblem(value.trim()) : undefined)
    if (problem) ctx.addIssue({ code: 'custom', message: problem })
  })
  .meta(meta('', 'text'))

/**
 * The single source of truth for inputs, shared by the action and the CLI. Keys are the action's
 * kebab-case input names; `__tests__/inputs.test.ts` keeps `action.yml` identical to it.
 */
export const inputSchema = z.object({
  mode: z.enum(MODES, { error: () => `must be one of ${MODES.join(', ')}` }),
  'database-url': text('', { max: 8 * KiB, shape: 'line', secret: true }),
  extensions: extensionList,
  'allow-downgrade': bool('false'),
  'install-missing': bool('false'),
  'lock-timeout': duration('5s'),
  'statement-timeout': duration('15min'),
  'connect-timeout': duration('10s'),
  'long-transaction-threshold': duration('5min'),
  'max-retries': integer('3', 0, 20),
  'staged-extensions': extensionNames,
  'first-statement-extensions': extensionNames,
  plan: jsonOrPath('plan'),
  'verify-sql': text('', { max: 1024 * KiB, shape: 'multi' }),
  databases: databasePatterns,
  'exclude-databases': databasePatterns,
  concurrency: integer('8', 1, 64),
  canary: integer('0', 0, 10_000),
  'on-failure': choice('stop', ['stop', 'continue'] as const),
  'max-failures': optionalInteger(1, 100_000),
  'fail-on-drift': bool('true'),
  'reference-database-url': text('', { max: 8 * KiB, shape: 'line', secret: true }),
  'snapshot-strategy': choice('auto', ['auto', 'basebackup', 'restore-point', 'dump', 'none'] as const),
  'snapshot-dir': text('', PATH_RULE),
  'restore-point': restorePoint,
  'rollback-strategy': choice('auto', ['auto', 'downgrade', 'dump', 'pitr'] as const),
  snapshot: text('', PATH_RULE),
  report: jsonOrPath('report'),
  pgdata: text('', PATH_RULE),
  'pg-bin-dir': text('', PATH_RULE),
  'stop-command': text('', { max: 16 * KiB, shape: 'multi' }),
  'start-command': text('', { max: 16 * KiB, shape: 'multi' }),
  'restore-command': text('', { max: 16 * KiB, shape: 'line' }),
  'confirm-data-loss': bool('false'),
  'keep-previous': bool('true'),
  'terminate-connections': bool('false'),
  'wait-timeout': duration('10min'),
  manifest: text('', PATH_RULE),
  'comment-on-pr': bool('true'),
  'github-token': z
    .string()
    .default('')
    .superRefine((value, ctx) => {
      const problem = textProblem(value, { max: 4 * KiB, shape: 'line', secret: true })
      if (problem) ctx.addIssue({ code: 'custom', message: problem })
    })
    .meta({ input: { default: '', kind: 'text', actionDefault: '${{ github.token }}' } })
})

export type InputName = keyof z.input<typeof inputSchema>
export const INPUT_NAMES = Object.keys(inputSchema.shape) as InputName[]

/** The default and kind of an input; `mode` has neither (it is required). */
export function inputMeta(name: InputName): InputMeta | undefined {
  return (inputSchema.shape[name].meta() as { input?: InputMeta } | undefined)?.input
}

type Camel<S extends string> = S extends `${infer Head}-${infer Tail}` ? `${Head}${Capitalize<Camel<Tail>>}` : S
type CamelKeys<T> = { [K in keyof T as Camel<K & string>]: T[K] }
export type Inputs = CamelKeys<z.output<typeof inputSchema>>

/** Raw values as strings; an empty string counts as "not given" so that defaults apply. */
export type RawInputs = Partial<Record<InputName, string>>

export function parseInputs(raw: RawInputs): Inputs {
  const given = Object.fromEntries(Object.entries(raw).filter(([, value]) => value !== undefined && value !== ''))
  const result = inputSchema.safeParse(given)
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? '')
      const missing = name === 'mode' && given.mode === undefined
      return missing ? `input "mode" is required: ${issue.message}` : `input "${name}": ${issue.message}`
    })
    throw new CodedError('INVALID_INPUT', problems.join('; '))
  }
  return Object.fromEntries(
    Object.entries(result.data).map(([key, value]) => [key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()), value])
  ) as Inputs
}

/** Everything that must be masked before anything is printed: both URLs' passwords and the token. */
export function inputSecrets(raw: RawInputs, env: NodeJS.ProcessEnv): string[] {
  const token = raw['github-token']?.trim()
  return [...new Set([...secretsOf(raw['database-url'] ?? '', env), ...secretsOf(raw['reference-database-url'] ?? '', {}), ...(token ? [token] : [])])]
}
