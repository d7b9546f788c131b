import { isAbsolute, relative, resolve, sep } from 'node:path'
import picomatch from 'picomatch'
import { isAlias, isMap, isScalar, LineCounter, parseDocument, type Document, type Node } from 'yaml'
import { z } from 'zod'
import { CodedError, errorMessage } from './errors.js'
import { parseExtensionEntry, type ExtensionRequest } from './extension-list.js'
import { InputFileError, readInputFile } from './input-files.js'
import type { Finding } from './plan.js'

/*
 * The declarative manifest (input `manifest`): desired extension versions in a YAML file kept in
 * the repository, optionally per database name or glob pattern.
 *
 *   extensions:            # every targeted database
 *     vector: 0.8.0
 *     pg_trgm: default     # default, ~, null or an empty value: the control file's default_version
 *   databases:
 *     tenant_*:            # a name or a glob pattern (picomatch, as the `databases` input)
 *       extensions: { citus: 13.2-1 }
 *     app:                 # no value: the database is targeted with the top-level extensions only
 *
 * Override rule: a database gets the top-level extensions, then every `databases` entry whose
 * pattern matches it, in file order; on the same extension the later entry wins (its version
 * replaces the earlier one). Names and versions follow the rules of the `extensions` input
 * (parseExtensionEntry). Every key keeps its 1-based line, so that a finding can be annotated on
 * the manifest line that asked for it.
 */

/** One `name: version` line of the manifest. */
export interface ManifestEntry extends ExtensionRequest {
  /** 1-based line of the entry's key. */
  line: number
}

/** One entry under `databases:`. */
export interface DatabaseRule {
  /** A database name or a glob pattern. */
  pattern: string
  /** 1-based line of the pattern's key. */
  line: number
  extensions: ManifestEntry[]
}

export interface Manifest {
  /** The file as annotations name it: relative to the repository root (the working directory), with `/`. */
  file: string
  extensions: ManifestEntry[]
  databases: DatabaseRule[]
}

export interface ManifestProblem {
  /** 1-based line, when the problem has one. */
  line?: number
  message: string
}

/**
 * An invalid manifest: an INVALID_INPUT CodedError whose message names the file and the line of
 * each problem (`extensions.yml:4: "hstore; drop" is not an extension name …`). `file` and
 * `problems` let the action annotate each problem on its line.
 */
export class ManifestError extends CodedError {
  constructor(
    readonly file: string,
    readonly problems: ManifestProblem[],
    shown = file
  ) {
    super('INVALID_INPUT', problems.map((p) => `${shown}${p.line ? `:${p.line}` : ''}: ${p.message}`).join('; '))
    this.name = 'ManifestError'
  }
}

const TOP_KEYS = ['extensions', 'databases'] as const
const RULE_KEYS = ['extensions'] as const
const DEFAULT_WORDS = new Set(['', 'default', '~', 'null'])

/** Problems shown per file; a broken file should not drown the log. */
const PROBLEM_LIMIT = 20

const VERSION_RULE = 'letters, digits, ".", "_", "+", "~" and "-", at most 63 characters; or default'

/** Why a key is not an extension name (the rules of the `extensions` input), if it is not. */
function checkName(name: string): string | undefined {
  if (name.includes('@')) {
    const at = name.indexOf('@')
    return `"${name}" is not an extension name; write the version as the value (${name.slice(0, at)}: ${name.slice(at + 1)})`
  }
  const parsed = parseExtensionEntry(name)
  return typeof parsed === 'string' ? parsed : undefined
}

/** The request of a valid `name: version` pair: the same rules as the `extensions` input. */
function requestOfPair(name: string, value: string): ExtensionRequest | string {
  const problem = checkName(name)
  if (problem) return problem
  const version = value.trim()
  if (DEFAULT_WORDS.has(version)) return { name }
  const parsed = parseExtensionEntry(`${name}@${version}`)
  return typeof parsed === 'string' ? `"${version}" is not a valid version of ${name} (${VERSION_RULE})` : parsed
}

function checkPattern(pattern: string): string | undefined {
  if (pattern.trim() !== pattern || pattern.length === 0) return `"${pattern}" is not a database name or pattern (no leading or trailing blanks)`
  if (pattern.length > 63 || /[\u0000-\u001f]/.test(pattern)) {
    return `"${pattern}" is not a database name or pattern (at most 63 characters, no control characters)`
  }
  if (pattern === 'all') {
    return `"all" is not a database pattern here: top-level "extensions" already apply to every targeted database (use "*" to match every database)`
  }
  return undefined
}

/** A zod string whose custom check is one of the functions above. */
const checked = (check: (value: string) => string | undefined, params?: { error: string }) =>
  z.string(params).superRefine((value, ctx) => {
    const problem = check(value)
    if (problem) ctx.addIssue({ code: 'custom', message: problem })
  })

/** Scalars become strings (failsafe schema); an empty value is "". */
const emptyAsMap = (value: unknown) => (value === '' ? {} : value)

const extensionMap = z.preprocess(
  emptyAsMap,
  z.record(
    checked(checkName),
    checked(
      (version) => {
        const trimmed = version.trim()
        if (DEFAULT_WORDS.has(trimmed)) return undefined
        return typeof parseExtensionEntry(`x@${trimmed}`) === 'string' ? `"${trimmed}" is not a valid extension version (${VERSION_RULE})` : undefined
      },
      { error: 'must be a version such as 0.8.0, or default' }
    ),
    { error: 'must be a mapping of extension names to versions, for example "vector: 0.8.0"' }
  )
)

const databaseRule = z.preprocess(
  emptyAsMap,
  z.strictObject({ extensions: extensionMap.optional() }, { error: 'must be a mapping with "extensions:" (or no value)' })
)

const databaseRules = z.preprocess(
  emptyAsMap,
  z.record(checked(checkPattern), databaseRule, { error: 'must be a mapping of database names or patterns, for example "tenant_*:"' })
)

/** The shape of a manifest; the lines come from the YAML nodes, not from this schema. */
export const manifestSchema = z.strictObject(
  { extensions: extensionMap.optional(), databases: databaseRules.optional() },
  { error: 'must be a mapping with "extensions:" and/or "databases:"' }
)

interface KeyedNode {
  key: string
  line: number
  value: Node | null
}

/** The pairs of a YAML mapping in file order, with each key's line; aliases resolved. */
function pairsOf(doc: Document, node: unknown, lines: LineCounter): KeyedNode[] {
  const resolved = isAlias(node) ? node.resolve(doc) : node
  if (!isMap(resolved)) return []
  return resolved.items.map((pair) => {
    const key = isScalar(pair.key) ? String(pair.key.value ?? '') : String(pair.key)
    const range = (pair.key as Node | null)?.range
    const value = isAlias(pair.value) ? (pair.value.resolve(doc) ?? null) : ((pair.value as Node | null) ?? null)
    return { key, line: range ? lines.linePos(range[0]).line : 0, value }
  })
}

/** The line of the key at the end of `path` (or of the deepest key found on the way). */
function lineAt(doc: Document, lines: LineCounter, path: readonly PropertyKey[]): number | undefined {
  let node: unknown = doc.contents
  let line: number | undefined
  for (const segment of path) {
    const found = pairsOf(doc, node, lines).find((pair) => pair.key === String(segment))
    if (!found) break
    line = found.line
    node = found.value
  }
  if (line === undefined && doc.contents?.range) line = lines.linePos(doc.contents.range[0]).line
  return line
}

function describeIssue(issue: z.core.$ZodIssue): Array<{ path: PropertyKey[]; message: string }> {
  if (issue.code === 'unrecognized_keys') {
    const allowed = issue.path.length === 0 ? TOP_KEYS : RULE_KEYS
    const where = issue.path.length === 0 ? 'at the top level' : `under "${issue.path.map(String).join('.')}"`
    return issue.keys.map((key) => ({
      path: [...issue.path, key],
      message: `unknown key "${key}" ${where} (allowed: ${allowed.join(', ')})`
    }))
  }
  if (issue.code === 'invalid_key') {
    return issue.issues.map((inner) => ({ path: issue.path, message: inner.message }))
  }
  const where = issue.path.length > 0 ? `"${issue.path.map(String).join('.')}" ` : ''
  return [{ path: issue.path, message: issue.code === 'custom' ? issue.message : `${where}${issue.message}` }]
}

/** The path annotations use: relative to the repository root (the working directory) when inside it. */
function annotationPath(path: string, root: string): string {
  const absolute = resolve(root, path)
  const inside = relative(root, absolute)
  const chosen = inside && !inside.startsWith('..') && !isAbsolute(inside) ? inside : path
  return chosen.split(sep).join('/').replace(/^\.\//, '')
}

export interface LoadOptions {
  /** The repository root that relative paths start from (default: the working directory). */
  root?: string
  /** For RUNNER_TEMP, the other place a manifest may be read from (default: process.env). */
  env?: NodeJS.ProcessEnv
}

/**
 * Reads (unless `text` is given), parses and validates a manifest. Every problem is reported at
 * once as a ManifestError (INVALID_INPUT) naming the file and the line.
 */
export function loadManifest(path: string, text?: string, options: LoadOptions = {}): Manifest {
  const root = options.root ?? process.cwd()
  const file = annotationPath(path, root)
  const fail = (problems: ManifestProblem[]): never => {
    const shown = problems.slice(0, PROBLEM_LIMIT)
    if (problems.length > PROBLEM_LIMIT) shown.push({ message: `and ${problems.length - PROBLEM_LIMIT} more problem(s)` })
    throw new ManifestError(file, shown, path)
  }

  let source = text
  if (source === undefined) {
    try {
      source = readInputFile('manifest', path, options.env ?? process.env, { workspace: root })
    } catch (error) {
      const problem = error instanceof InputFileError ? error.problem : undefined
      const reason =
        problem === 'missing'
          ? 'no such file (the path is relative to the repository root; check the repository out first with actions/checkout)'
          : problem === 'directory'
            ? 'it is a directory, not a YAML file'
            : errorMessage(error).replace(/^input "manifest": /, '')
      throw new ManifestError(file, [{ message: `input "manifest": cannot read ${path}: ${reason}` }], path)
    }
  }
  source = source.replace(/^\uFEFF/, '')

  const lines = new LineCounter()
  // failsafe: every scalar stays a string, so `hstore: 1.10` is "1.10" and not the number 1.1.
  const doc = parseDocument(source, { lineCounter: lines, schema: 'failsafe', uniqueKeys: true, prettyErrors: true })
  if (doc.errors.length > 0) {
    fail(
      doc.errors.map((error) => ({
        line: error.linePos?.[0].line,
        message:
          error.code === 'DUPLICATE_KEY'
            ? 'a key is listed twice in the same mapping (each extension or database once; later databases entries override earlier ones)'
            : error.code === 'MULTIPLE_DOCS'
              ? 'the manifest must be a single YAML document (remove the second "---")'
              : (error.message.split('\n')[0] ?? error.message).replace(/ at line \d+, column \d+:?$/, '')
      }))
    )
  }
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === '')) {
    fail([{ message: 'the manifest is empty; declare "extensions:" and/or "databases:"' }])
  }

  let plain: unknown
  try {
    plain = doc.toJS({ maxAliasCount: 1000 })
  } catch (error) {
    fail([{ message: `cannot be read as data: ${errorMessage(error)}` }])
  }
  const parsed = manifestSchema.safeParse(plain)
  if (!parsed.success) {
    const problems = parsed.error.issues
      .flatMap(describeIssue)
      .map(({ path: issuePath, message }) => ({ line: lineAt(doc, lines, issuePath), message }))
      .sort((a, b) => (a.line ?? 0) - (b.line ?? 0))
    fail(problems)
  }

  // Valid: read the entries again from the nodes, for file order and lines.
  const entriesOf = (node: Node | null): ManifestEntry[] =>
    pairsOf(doc, node, lines).map(({ key, line, value }) => {
      const request = requestOfPair(key, isScalar(value) ? String(value.value ?? '') : '') as ExtensionRequest
      return { ...request, line }
    })
  const top = pairsOf(doc, doc.contents, lines)
  const extensions = entriesOf(top.find((pair) => pair.key === 'extensions')?.value ?? null)
  const databases = pairsOf(doc, top.find((pair) => pair.key === 'databases')?.value ?? null, lines).map(({ key, line, value }) => ({
    pattern: key,
    line,
    extensions: entriesOf(pairsOf(doc, value, lines).find((pair) => pair.key === 'extensions')?.value ?? null)
  }))
  if (extensions.length === 0 && databases.every((rule) => rule.extensions.length === 0)) {
    fail([{ line: lineAt(doc, lines, []), message: 'the manifest declares no extension; list at least one under "extensions:"' }])
  }
  return { file, extensions, databases }
}

const matchers = new Map<string, (name: string) => boolean>()

/** Whether a `databases` key names the database: exact for a plain name, picomatch for a glob (as fleet.ts). */
export function patternMatches(pattern: string, database: string): boolean {
  let matcher = matchers.get(pattern)
  if (!matcher) {
    matcher = picomatch.scan(pattern).isGlob ? picomatch(pattern, { dot: true }) : (name: string) => name === pattern
    matchers.set(pattern, matcher)
  }
  return matcher(database)
}

const requestOf = ({ name, version }: ManifestEntry): ExtensionRequest => (version === undefined ? { name } : { name, version })

/**
 * What the manifest asks of one database: the top-level extensions, then those of every matching
 * `databases` entry in file order, a later entry replacing an earlier one's version of the same
 * extension (keeping its position). An empty list means the manifest asks nothing of this
 * database: the caller must plan nothing there, NOT read it as "every installed extension" (which
 * is what an empty `extensions` input means).
 */
export function requestsFor(manifest: Manifest, database: string): ExtensionRequest[] {
  const byName = new Map<string, ExtensionRequest>()
  for (const entry of manifest.extensions) byName.set(entry.name, requestOf(entry))
  for (const rule of manifest.databases) {
    if (!patternMatches(rule.pattern, database)) continue
    for (const entry of rule.extensions) byName.set(entry.name, requestOf(entry))
  }
  return [...byName.values()]
}

/**
 * The manifest line a finding belongs to, for an annotation in the pull request's diff: the entry
 * that decided the finding's extension in the finding's database (the last matching `databases`
 * entry that lists it, else the top-level entry); for an extension the manifest does not list
 * (a required extension, say) or a finding without extension, the last matching `databases` key;
 * otherwise nothing.
 */
export function locateFinding(manifest: Manifest, finding: Pick<Finding, 'database' | 'extension'>): { file: string; startLine: number } | undefined {
  const at = (line: number | undefined) => (line ? { file: manifest.file, startLine: line } : undefined)
  const rules = finding.database === undefined ? [] : manifest.databases.filter((rule) => patternMatches(rule.pattern, finding.database!))
  if (finding.extension !== undefined) {
    const name = finding.extension
    for (const rule of [...rules].reverse()) {
      const entry = rule.extensions.find((e) => e.name === name)
      if (entry) return at(entry.line)
    }
    const top = manifest.extensions.find((e) => e.name === name)
    if (top) return at(top.line)
    if (finding.database === undefined) {
      const anywhere = manifest.databases.flatMap((rule) => rule.extensions).find((e) => e.name === name)
      if (anywhere) return at(anywhere.line)
    }
  }
  return at(rules.at(-1)?.line)
}

/**
 * The databases the manifest names, in file order (names and glob patterns, as the `databases`
 * input takes them). Semantics: when the `databases` input is empty and this list is not, the run
 * targets exactly these databases (top-level `extensions` then apply to each of them); to include
 * the connection's own database as well, the manifest names it (`app:` with no value). When this
 * list is empty, the usual default applies: the database of the connection URL.
 */
export function databasePatterns(manifest: Manifest): string[] {
  return [...new Set(manifest.databases.map((rule) => rule.pattern))]
}
