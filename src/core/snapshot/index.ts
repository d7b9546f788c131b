import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { withSession } from '../connection.js'
import { CodedError } from '../errors.js'
import type { Finding } from '../plan.js'
import { findCompatibleProgram } from '../programs.js'
import { formatBytes } from '../recovery/format.js'
import { readVersions } from '../catalog.js'
import { inventoryOf, readClusterFacts, type ClusterFacts } from '../recovery/inventory.js'
import {
  fileEntry,
  generateSnapshotId,
  INCOMPLETE_MARKER,
  MANIFEST_KIND,
  restorePointProblem,
  writeManifest,
  type ManifestDatabase,
  type SnapshotManifest,
  type SnapshotStrategy
} from '../recovery/manifest.js'
import { CheckList, findingsOf, PhaseClock } from '../recovery/phases.js'
import { archiveDirectoryOf } from '../recovery/wal.js'
import { takeBaseBackup, verifyBaseBackup } from './basebackup.js'
import { dumpDatabase } from './dump.js'
import {
  archivingProblems,
  checkFreeSpace,
  checkNameUnused,
  checkOutsideDataDirectory,
  checkReplication,
  checkWritableDirectory
} from './preflight.js'
import { createRestorePoint } from './restore-point.js'
import type { SnapshotContext, SnapshotDeps, SnapshotOutcome, SnapshotPrograms, SnapshotRequest } from './types.js'
import { PRODUCT } from '../product.js'

export type { SnapshotOutcome, SnapshotRequest, SnapshotDeps, SnapshotSuccess, SnapshotFailure } from './types.js'


const serverMajor = (facts: ClusterFacts) => Math.floor(facts.versionNum / 10000)

/** The archive directory named by archive_command, when it exists on this machine. */
export function localArchiveDirectory(facts: ClusterFacts): string | null {
  if (!facts.archiveCommand.trim()) return null
  const dir = archiveDirectoryOf(facts.archiveCommand)
  return dir && existsSync(dir) ? dir : null
}

/**
 * auto: basebackup when WAL archiving works and the role may replicate (and pg_basebackup is
 * here), else dump. Returns the choice and why.
 */
async function chooseStrategy(request: SnapshotRequest, facts: ClusterFacts): Promise<{ strategy: SnapshotStrategy; reason: string }> {
  if (request.strategy !== 'auto') return { strategy: request.strategy, reason: `snapshot-strategy: ${request.strategy}` }
  const archiving = archivingProblems(facts)
  if (facts.inRecovery) return { strategy: 'dump', reason: 'auto chose dump: the server is a standby, where no restore point can be created' }
  if (archiving.length > 0) return { strategy: 'dump', reason: `auto chose dump: ${archiving[0]}` }
  if (!facts.replication) return { strategy: 'dump', reason: `auto chose dump: WAL archiving works, but role ${facts.role} may not replicate (no SUPERUSER or REPLICATION), which pg_basebackup needs` }
  try {
    await findCompatibleProgram('pg_basebackup', serverMajor(facts), { binDir: request.pgBinDir || undefined, env: request.env }, 'atLeast')
  } catch (error) {
    return { strategy: 'dump', reason: `auto chose dump: WAL archiving works, but ${(error as Error).message}` }
  }
  return {
    strategy: 'basebackup',
    reason: `auto chose basebackup: WAL archiving works (wal_level ${facts.walLevel}, archive_mode ${facts.archiveMode}, archiver healthy) and role ${facts.role} may replicate`
  }
}

/** Every precondition of the strategy, each with its own code; nothing is written before they pass. */
async function preflight(
  request: SnapshotRequest,
  strategy: SnapshotStrategy,
  facts: ClusterFacts,
  deps: SnapshotDeps,
  id: string,
  databases: Array<Omit<ManifestDatabase, 'dump'>>,
  checks: CheckList
): Promise<{ programs: SnapshotPrograms; archiveDir: string | null; uniqueness: string }> {
  const programs: SnapshotPrograms = {}
  const search = { binDir: request.pgBinDir || undefined, env: request.env }
  const major = serverMajor(facts)
  const find = async (key: keyof SnapshotPrograms, name: string, rule: 'exact' | 'atLeast') => {
    programs[key] = await checks.attempt(() => findCompatibleProgram(name, major, search, rule))
  }
  const root = resolve(request.root)
  checkWritableDirectory(root, checks)
  checkOutsideDataDirectory(root, facts, checks)
  let archiveDir: string | null = null
  let uniqueness = 'not applicable (no restore point)'
  const wantsRestorePoint = strategy !== 'dump'
  if (wantsRestorePoint) {
    if (facts.inRecovery) checks.fail('READ_ONLY_SERVER', 'the server is a standby (in recovery): restore points can only be created on the primary; take the snapshot there')
    for (const problem of archivingProblems(facts)) checks.fail('ARCHIVING_DISABLED', problem)
    if (!facts.canCreateRestorePoint || !facts.canSwitchWal) {
      checks.fail('INSUFFICIENT_PRIVILEGE', `role ${facts.role} may not execute pg_create_restore_point(text) and pg_switch_wal() (superuser, or GRANT EXECUTE ON FUNCTION for both)`)
    }
    archiveDir = localArchiveDirectory(facts)
    if (archiveDir) await find('pgWaldump', 'pg_waldump', 'exact')
  }
  if (strategy === 'basebackup') {
    await find('pgBasebackup', 'pg_basebackup', 'atLeast')
    await find('pgVerifybackup', 'pg_verifybackup', 'exact')
    if (facts.userTablespaces.length > 0) {
      checks.fail('UNSUPPORTED_LAYOUT', `the cluster has tablespaces ${facts.userTablespaces.join(', ')}; a plain-format base backup on the same host would collide with them (use snapshot-strategy: restore-point with your backup tool, or dump)`)
    }
    await checkReplication(deps.connect, facts, checks)
    const clusterBytes = facts.databases.reduce((sum, d) => sum + (d.bytes ?? 0), 0)
    checkFreeSpace(root, Math.round(clusterBytes * 1.1) + 4 * facts.walSegmentSize, 'a base backup of the cluster', checks)
  }
  if (strategy === 'dump') {
    await find('pgDump', 'pg_dump', 'atLeast')
    await find('pgRestore', 'pg_restore', 'atLeast')
    const bytes = databases.reduce((sum, d) => sum + (facts.databases.find((x) => x.name === d.name)?.bytes ?? 0), 0)
    checkFreeSpace(root, Math.round(bytes * 0.1) + 16 * 1024 * 1024, `dumps of ${databases.length} database(s) (${formatBytes(bytes)} on the server; a compressed dump is rarely over 10 %)`, checks)
  }
  if (wantsRestorePoint) {
    const checked = await checkNameUnused(id, root, { dir: archiveDir, waldump: programs.pgWaldump, segmentSize: facts.walSegmentSize }, checks, request.env)
    uniqueness = checked.evidence
  } else {
    await checkNameUnused(id, root, { dir: null, segmentSize: facts.walSegmentSize }, checks, request.env)
  }
  if (existsSync(join(root, id)) && !checks.failures.some((f) => f.code === 'RESTORE_POINT_EXISTS')) {
    checks.fail('RESTORE_POINT_EXISTS', `${join(root, id)} already exists: a snapshot named "${id}" was taken before; choose another restore-point name`)
  }
  return { programs, archiveDir, uniqueness }
}

interface IncompleteMarker {
  pid: number
  host: string
  startedAt: string
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Snapshot directories under `root` left by a run on this host that died before its manifest was
 * written (its process is gone): they are no baseline, so the next snapshot removes them and says
 * so. A rollback refuses any of them, removed or not (SNAPSHOT_INCOMPLETE).
 */
function removeAbandoned(root: string, log: SnapshotDeps['log']): void {
  if (!existsSync(root)) return
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    const marker = join(root, entry.name, INCOMPLETE_MARKER)
    if (!entry.isDirectory() || !existsSync(marker)) continue
    let owner: IncompleteMarker | undefined
    try {
      owner = JSON.parse(readFileSync(marker, 'utf8')) as IncompleteMarker
    } catch {
      owner = undefined
    }
    // Only what this host can prove dead: another host's snapshot on shared storage may still be running.
    if (!owner || owner.host !== hostname() || alive(owner.pid)) continue
    rmSync(join(root, entry.name), { recursive: true, force: true })
    log.info(`removed ${join(root, entry.name)}: a snapshot interrupted ${owner ? `at ${owner.startedAt} ` : ''}before its manifest was written`)
  }
}

function removeIfEmpty(dir: string): void {
  try {
    if (existsSync(dir) && readdirSync(dir).length === 0) rmSync(dir, { recursive: true })
  } catch {
    // best effort
  }
}

/**
 * Takes a snapshot: inspects the server, resolves `auto`, checks every precondition of the
 * strategy (nothing is written before they all pass), then runs it and writes manifest.json.
 * Expected failures come back as `{ ok: false, findings }`; only bugs throw.
 */
export async function takeSnapshot(request: SnapshotRequest, deps: SnapshotDeps): Promise<SnapshotOutcome> {
  const started = performance.now()
  const phases = new PhaseClock(deps.log)
  const checks = new CheckList()
  const warnings: Finding[] = []
  const leftBehind: string[] = []
  let strategy: SnapshotStrategy | undefined
  let reason: string | undefined
  let wroteSomething = false
  let rootCreated = false
  const failure = (findings: Finding[]): SnapshotOutcome => ({
    ok: false,
    strategy,
    reason,
    findings,
    phases: phases.phases,
    warnings: [...warnings, ...checks.warnings],
    changed: wroteSomething,
    leftBehind,
    durationMs: performance.now() - started
  })

  try {
    if (request.restorePoint) {
      const problem = restorePointProblem(request.restorePoint)
      if (problem) throw new CodedError('INVALID_INPUT', `input "restore-point": ${problem}`)
    }
    if (request.databases.length === 0) throw new CodedError('INVALID_INPUT', 'input "databases": no database to snapshot')
    const facts = await phases.run('inspect the server', async (note) => {
      const read = await withSession(deps.connect, { purpose: 'snapshot-inspect' }, readClusterFacts)
      note(`PostgreSQL ${read.version}, system ${read.systemIdentifier}, timeline ${read.timeline ?? '(standby)'}, wal_level ${read.walLevel}, archive_mode ${read.archiveMode}`)
      return read
    })
    const chosen = await chooseStrategy(request, facts)
    strategy = chosen.strategy
    reason = chosen.reason
    deps.log.info(reason)
    const id = request.restorePoint || generateSnapshotId(request.env)
    const inventories = await phases.run(`record ${request.databases.length} database(s)`, async (note) => {
      const found: Array<Omit<ManifestDatabase, 'dump'>> = []
      for (const database of request.databases) {
        const inventory = await checks.attempt(() => inventoryOf(deps.connect, database, facts.versionNum), { database })
        if (inventory) found.push(inventory)
      }
      note(found.map((d) => `${d.name}: ${d.extensions.map((e) => `${e.name} ${e.version}`).join(', ') || 'no extensions'}`).join('; '))
      return found
    })
    const prepared = await phases.run('check preconditions', async (note) => {
      const result = await preflight(request, chosen.strategy, facts, deps, id, inventories, checks)
      checks.throwIfAny()
      note('all passed')
      return result
    })
    if (request.rootIsTemporary) {
      warnings.push({ code: 'SNAPSHOT_EPHEMERAL', message: `snapshot-dir was not given, so the snapshot is in ${request.root}, which the runner empties after the job: a rollback in a later job needs snapshot-dir on persistent storage` })
    }
    const root = resolve(request.root)
    rootCreated = !existsSync(root)
    removeAbandoned(root, deps.log)
    const dir = join(root, id)
    mkdirSync(dir, { recursive: true })
    wroteSomething = true
    leftBehind.push(dir)
    // Until the manifest is written, the directory says it is no baseline, even if this process is killed.
    const marker: IncompleteMarker = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString() }
    writeFileSync(join(dir, INCOMPLETE_MARKER), `${JSON.stringify(marker)}\n`)
    const ctx: SnapshotContext = { ...deps, request, phases, facts, id, dir, archiveDir: prepared.archiveDir, programs: prepared.programs, leftBehind, warnings }
    const manifest: SnapshotManifest = {
      kind: MANIFEST_KIND,
      schemaVersion: 1,
      id,
      strategy: chosen.strategy,
      createdAt: facts.now,
      tool: PRODUCT,
      server: {
        systemIdentifier: facts.systemIdentifier,
        version: facts.version,
        versionNum: facts.versionNum,
        timeline: facts.timeline ?? 0,
        walSegmentSize: facts.walSegmentSize,
        dataDirectory: facts.dataDirectory,
        clusterDatabases: facts.databases.map((d) => d.name),
        commitsAtSnapshot: facts.commits
      },
      archive:
        facts.archiveMode === 'off' || (!facts.archiveCommand && !facts.archiveLibrary)
          ? null
          : { method: facts.archiveLibrary ? 'archive_library' : 'archive_command', directory: localArchiveDirectory(facts) },
      databases: [],
      ...(request.plan ? { plan: request.plan } : {}),
      files: []
    }

    if (chosen.strategy === 'dump') {
      for (const [index, database] of request.databases.entries()) {
        const dumped = await dumpDatabase(ctx, database, index)
        manifest.databases.push(dumped.database)
        manifest.files.push(dumped.file)
        if (index === 0) manifest.createdAt = dumped.createdAt
      }
    } else {
      let afterLsn: string | undefined
      let scanFrom: string | undefined
      let verifying: Promise<number> | undefined
      if (chosen.strategy === 'basebackup') {
        const backup = await takeBaseBackup(ctx)
        manifest.baseBackup = backup
        afterLsn = backup.endLsn
        scanFrom = backup.startWalFile
        // pg_verifybackup reads the backup while the restore point is created and archived.
        const base = join(dir, 'base')
        const verifyStarted = performance.now()
        verifying = verifyBaseBackup(prepared.programs.pgVerifybackup!, base, request.env).then(
          (ms) => {
            phases.record('verify the base backup (pg_verifybackup)', ms, true, 'sizes, CRC32C checksums and WAL verified')
            deps.log.info(`✓ verify the base backup (pg_verifybackup) (${Math.round(ms)} ms)`)
            return ms
          },
          (error: unknown) => {
            phases.record('verify the base backup (pg_verifybackup)', performance.now() - verifyStarted, false, (error as Error).message)
            throw error
          }
        )
        verifying.catch(() => undefined)
      } else {
        manifest.baseBackup = {
          external: true,
          note: 'taken by the site backup tool (pgBackRest, Barman, WAL-G): restore it with that tool to this restore point'
        }
      }
      // The extensions as they are now, right before the restore point fixes the baseline.
      for (const database of request.databases) manifest.databases.push(await inventoryOf(deps.connect, database, facts.versionNum))
      manifest.restorePoint = await createRestorePoint(ctx, id, { afterLsn, scanFrom, uniqueness: prepared.uniqueness })
      manifest.createdAt = manifest.restorePoint.createdAt
      manifest.server.timeline = manifest.restorePoint.timeline
      await phases.run('check that no extension changed meanwhile', async (note) => {
        for (const database of manifest.databases) {
          const now = await withSession(deps.connect, { database: database.name, purpose: 'snapshot-inventory' }, readVersions)
          const then = Object.fromEntries(database.extensions.map((e) => [e.name, e.version]))
          const names = new Set([...Object.keys(now), ...Object.keys(then)])
          if ([...names].some((name) => now[name] !== then[name])) {
            throw new CodedError('SNAPSHOT_FAILED', `the extensions of ${database.name} changed while the snapshot was taken (${JSON.stringify(then)} → ${JSON.stringify(now)}); take it again`)
          }
        }
        note('unchanged')
      })
      if (verifying) await verifying
      if (manifest.baseBackup.path) manifest.files.push(await fileEntry(dir, join(dir, 'base', 'backup_manifest')))
    }
    const manifestPath = await phases.run('write the manifest', async (note) => {
      const path = writeManifest(dir, manifest)
      rmSync(join(dir, INCOMPLETE_MARKER))
      note(path)
      return path
    })
    return {
      ok: true,
      strategy: chosen.strategy,
      reason: chosen.reason,
      manifest,
      manifestPath,
      dir,
      phases: phases.phases,
      warnings: [...warnings, ...checks.warnings],
      durationMs: performance.now() - started
    }
  } catch (error) {
    const findings = findingsOf(error, 'SNAPSHOT_FAILED')
    // Files of a failed snapshot are no baseline: remove them, keep only what says so.
    for (const path of [...leftBehind]) {
      if (path.startsWith('restore point')) continue
      try {
        rmSync(path, { recursive: true, force: true })
        leftBehind.splice(leftBehind.indexOf(path), 1)
      } catch {
        // reported as left behind
      }
    }
    if (rootCreated) removeIfEmpty(resolve(request.root))
    return failure(findings)
  }
}
