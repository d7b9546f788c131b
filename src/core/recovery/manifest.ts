import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, existsSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { dirname, isAbsolute, join, relative, resolve } from 'node:path'
import { z } from 'zod'
import { contentDigest, digestProblem } from '../digest.js'
import { CodedError, errorMessage } from '../errors.js'

/**
 * The snapshot manifest: everything a rollback needs and everything that proves it is being applied
 * to the same cluster. Written as manifest.json in the snapshot's directory; paths inside it are
 * relative to that directory, so a snapshot can be moved (or uploaded and downloaded) as a whole.
 */

export const MANIFEST_FILE = 'manifest.json'
/** Present in a snapshot directory from its creation until its manifest is written: no baseline yet. */
export const INCOMPLETE_MARKER = 'INCOMPLETE'
/** Present in a snapshot directory while a rollback from it runs; left behind by one that was interrupted. */
export const ROLLBACK_MARKER = 'rollback-in-progress.json'
export const MANIFEST_KIND = 'pg-extension-upgrade/snapshot'
export const SNAPSHOT_STRATEGIES = ['basebackup', 'restore-point', 'dump'] as const
export type SnapshotStrategy = (typeof SNAPSHOT_STRATEGIES)[number]

const extensionSchema = z.object({
  name: z.string(),
  version: z.string(),
  schema: z.string(),
  relocatable: z.boolean(),
  /** Extensions it depends on (pg_depend), all listed earlier in the database's list. */
  requires: z.array(z.string())
})

const dumpSchema = z.object({
  /** Relative to the manifest's directory. */
  file: z.string(),
  bytes: z.number(),
  sha256: z.string(),
  /** The snapshot exported by the session that counted the rows; pg_dump ran with --snapshot. */
  exportedSnapshot: z.string(),
  tocEntries: z.number(),
  /** Exact row count per user table (qualified name), counted in the dump's snapshot. */
  rowCounts: z.record(z.string(), z.number()),
  durationMs: z.number()
})

const databaseSchema = z.object({
  name: z.string(),
  owner: z.string(),
  encoding: z.string(),
  collate: z.string(),
  ctype: z.string(),
  localeProvider: z.enum(['libc', 'icu']),
  icuLocale: z.string().nullable(),
  tablespace: z.string(),
  allowConnections: z.boolean(),
  connectionLimit: z.number(),
  isTemplate: z.boolean(),
  /** In dependency order: an extension comes after those it requires. */
  extensions: z.array(extensionSchema),
  /** The schemas the extensions live in. */
  schemas: z.array(z.string()),
  dump: dumpSchema.optional()
})

const manifestSchema = z.object({
  kind: z.literal(MANIFEST_KIND),
  schemaVersion: z.literal(1),
  id: z.string(),
  strategy: z.enum(SNAPSHOT_STRATEGIES),
  /** The server's clock when the baseline was fixed (restore point, or the dumps' snapshot). */
  createdAt: z.string(),
  tool: z.object({ name: z.string(), version: z.string() }),
  server: z.object({
    systemIdentifier: z.string(),
    version: z.string(),
    versionNum: z.number(),
    /** The timeline the restore point was written on, read from pg_walfile_name(pg_current_wal_lsn()). */
    timeline: z.number(),
    walSegmentSize: z.number(),
    /** null when the role may not read data_directory. */
    dataDirectory: z.string().nullable(),
    /** Every database of the cluster at snapshot time (a PITR also rewinds these). */
    clusterDatabases: z.array(z.string()),
    /** sum(xact_commit) of pg_stat_database at snapshot time, to estimate what a PITR discards. */
    commitsAtSnapshot: z.number().nullable()
  }),
  archive: z
    .object({
      method: z.enum(['archive_command', 'archive_library']),
      /** The archive directory, when archive_command copies into a local directory. */
      directory: z.string().nullable()
    })
    .nullable(),
  restorePoint: z
    .object({
      name: z.string(),
      lsn: z.string(),
      walFile: z.string(),
      timeline: z.number(),
      createdAt: z.string(),
      archivedAt: z.string(),
      /** How the name's uniqueness was proven (pg_waldump over the archive, or not possible). */
      uniqueness: z.string()
    })
    .optional(),
  baseBackup: z
    .object({
      external: z.boolean(),
      /** Relative to the manifest's directory (plain format). */
      path: z.string().optional(),
      label: z.string().optional(),
      startLsn: z.string().optional(),
      endLsn: z.string().optional(),
      startWalFile: z.string().optional(),
      timeline: z.number().optional(),
      bytes: z.number().optional(),
      format: z.literal('plain').optional(),
      verifiedWith: z.string().optional(),
      /** For an external base backup: where it is said to come from. */
      note: z.string().optional()
    })
    .optional(),
  databases: z.array(databaseSchema),
  /** The dry-run plan the snapshot was taken for: its fingerprint and the databases it changes. */
  plan: z.object({ fingerprint: z.string(), databases: z.array(z.string()) }).optional(),
  files: z.array(z.object({ path: z.string(), bytes: z.number(), sha256: z.string() })),
  /** sha256 over every other field (src/core/digest.ts): a rollback trusts no edited manifest. */
  digest: z.string().optional()
})

export type SnapshotManifest = z.infer<typeof manifestSchema>
export type ManifestDatabase = z.infer<typeof databaseSchema>
export type ManifestExtension = z.infer<typeof extensionSchema>
export type ManifestDump = z.infer<typeof dumpSchema>

const NAME = /^[A-Za-z0-9_.-]+$/

/** A restore point name as the action accepts it: at most 63 bytes of [A-Za-z0-9_.-]. */
export function restorePointProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty'
  if (Buffer.byteLength(name) > 63) return `"${name}" is ${Buffer.byteLength(name)} bytes; PostgreSQL allows at most 63`
  if (!NAME.test(name)) return `"${name}" has characters outside A-Z, a-z, 0-9, "_", "." and "-"`
  return undefined
}

const stamp = (date: Date) => date.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')

/**
 * A unique name from the repository, run id and attempt (GitHub), the time and 16 random bits:
 * `pgxu_<repo>_<run>_<attempt>_<yyyymmddThhmmssZ>_<hex>`, at most 63 bytes.
 */
export function generateSnapshotId(env: NodeJS.ProcessEnv, now = new Date()): string {
  const random = randomBytes(2).toString('hex')
  const run = env.GITHUB_RUN_ID ? `${env.GITHUB_RUN_ID}_${env.GITHUB_RUN_ATTEMPT || '1'}` : 'local'
  const tail = `_${run}_${stamp(now)}_${random}`
  const repo = (env.GITHUB_REPOSITORY ?? '').split('/').pop()!.replace(/[^A-Za-z0-9_.-]/g, '-')
  const room = 63 - 'pgxu_'.length - tail.length
  const middle = repo && room > 0 ? `_${repo.slice(0, room - 1)}` : ''
  return `pgxu${middle}${tail}`.slice(0, 63)
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  await new Promise<void>((resolvePromise, reject) => {
    createReadStream(path, { highWaterMark: 1024 * 1024 })
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolvePromise())
  })
  return hash.digest('hex')
}

/** A file entry of the manifest: its path relative to the snapshot directory, size and sha256. */
export async function fileEntry(snapshotDir: string, path: string): Promise<SnapshotManifest['files'][number]> {
  return { path: relative(snapshotDir, path), bytes: statSync(path).size, sha256: await sha256File(path) }
}

/** Writes the manifest atomically (a temporary file renamed into place), sealed with its digest. */
export function writeManifest(snapshotDir: string, manifest: SnapshotManifest): string {
  const path = join(snapshotDir, MANIFEST_FILE)
  const temporary = `${path}.tmp-${process.pid}`
  manifest.digest = contentDigest(manifest)
  writeFileSync(temporary, `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 })
  renameSync(temporary, path)
  return path
}

/** `snapshot` is the manifest's path or its directory. */
export function manifestPathOf(input: string): string {
  const path = resolve(input.trim())
  if (existsSync(path) && statSync(path).isDirectory()) return join(path, MANIFEST_FILE)
  return path
}

/** Reads a manifest and checks its schema; a file that is not one is INVALID_INPUT naming `snapshot`. */
function parseManifest(input: string): { manifest: SnapshotManifest; raw: unknown; path: string } {
  const path = manifestPathOf(input)
  if (existsSync(join(dirname(path), INCOMPLETE_MARKER))) {
    throw new CodedError('SNAPSHOT_INCOMPLETE', `input "snapshot": ${dirname(path)} holds a snapshot that was interrupted before it was complete (${INCOMPLETE_MARKER} is there); it is no baseline: take a new snapshot`)
  }
  if (!existsSync(path)) throw new CodedError('INVALID_INPUT', `input "snapshot": ${path} does not exist (give the manifest.json written by the snapshot step, steps.<id>.outputs.snapshot)`)
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'))
  } catch (error) {
    throw new CodedError('INVALID_INPUT', `input "snapshot": ${path} is not JSON (${errorMessage(error)})`)
  }
  const result = manifestSchema.safeParse(raw)
  if (!result.success) {
    const first = result.error.issues[0]
    throw new CodedError('INVALID_INPUT', `input "snapshot": ${path} is not a snapshot manifest of this tool (${first.path.join('.') || 'root'}: ${first.message})`)
  }
  return { manifest: result.data, raw, path }
}

/**
 * Reads and validates a manifest; a file that is not one is INVALID_INPUT naming `snapshot`, one
 * whose content no longer matches its digest (edited by hand, damaged) is SNAPSHOT_CORRUPT.
 */
export function readManifest(input: string): { manifest: SnapshotManifest; path: string; dir: string } {
  const { manifest, raw, path } = parseManifest(input)
  const tampered = digestProblem(raw)
  if (tampered) throw new CodedError('SNAPSHOT_CORRUPT', `the snapshot manifest ${path} cannot be trusted: ${tampered}; nothing was changed`)
  return { manifest, path, dir: dirname(path) }
}

/** Absolute path of a manifest-relative path. */
export function inSnapshot(dir: string, path: string): string {
  return isAbsolute(path) ? path : join(dir, path)
}

/**
 * Re-computes the checksum of every file the manifest lists. A rollback uses no file that fails:
 * SNAPSHOT_CORRUPT names each one.
 */
export async function verifyFiles(dir: string, manifest: SnapshotManifest, only?: (path: string) => boolean): Promise<void> {
  const problems: string[] = []
  for (const file of manifest.files) {
    if (only && !only(file.path)) continue
    const path = inSnapshot(dir, file.path)
    if (!existsSync(path)) {
      problems.push(`${file.path} is missing`)
      continue
    }
    const size = statSync(path).size
    if (size !== file.bytes) {
      problems.push(`${file.path} is ${size} bytes, the manifest says ${file.bytes}`)
      continue
    }
    const sum = await sha256File(path)
    if (sum !== file.sha256) problems.push(`${file.path} has sha256 ${sum.slice(0, 12)}…, the manifest says ${file.sha256.slice(0, 12)}…`)
  }
  if (problems.length > 0) throw new CodedError('SNAPSHOT_CORRUPT', `the snapshot in ${dir} fails its checksums: ${problems.join('; ')}`)
}

/**
 * Manifests found in a snapshot directory: the directory itself and its immediate subdirectories.
 * One that fails its digest is listed too (its name is taken; a rollback that picks it is refused
 * by readManifest, naming it, rather than told no such snapshot exists).
 */
export function manifestsUnder(root: string): Array<{ path: string; manifest: SnapshotManifest }> {
  if (!root || !existsSync(root)) return []
  const candidates = [join(root, MANIFEST_FILE)]
  try {
    for (const entry of readdirSync(root, { withFileTypes: true })) if (entry.isDirectory()) candidates.push(join(root, entry.name, MANIFEST_FILE))
  } catch {
    return []
  }
  const found: Array<{ path: string; manifest: SnapshotManifest }> = []
  for (const path of candidates) {
    if (!existsSync(path)) continue
    try {
      found.push({ path, manifest: parseManifest(path).manifest })
    } catch {
      // not ours, or unreadable: ignored
    }
  }
  return found
}
