import { describe, expect, it } from '@jest/globals'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { SnapshotManifest } from '../src/core/recovery/manifest.js'
import type { RollbackReport } from '../src/modes/rollback.js'
import { present } from '../src/report/present.js'
import { ACTION_BUNDLE, parseOutputFile, runnerEnvironment } from './harness/action.js'
import { findPostgres, temporaryDirectory } from './harness/postgres.js'
import { codes, requires, runInProcess, testCluster, uniqueName } from './helpers.js'

/*
 * The envelope as a workflow chains it: a snapshot covers what the plan changes, a rollback fails
 * (never says nothing_to_do) when its snapshot misses a changed database, and an interrupted step
 * stops its child programs, reports, and leaves nothing that passes for a baseline.
 */

const cluster = await testCluster()
const bin = findPostgres().binDir

async function tenants(prefix: string, count: number, versions: Record<string, string>): Promise<string[]> {
  const names = Array.from({ length: count }, (_, i) => `${prefix}_${i}`)
  for (const name of names) {
    await cluster.createDatabase(name, versions)
    await cluster.query('CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 100)', name)
  }
  return names
}

async function planFor(pattern: string, extensions: string): Promise<string> {
  const dry = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url('postgres'), databases: pattern, extensions })
  expect(dry.status).toBe('dry_run_approved')
  return JSON.stringify(dry.plan)
}

requires('pg_dump', 'pg_restore').describe('a snapshot covers the plan, and a rollback says when it does not', () => {
  it('snapshot given the plan dumps exactly the databases it changes and records the plan', async () => {
    const prefix = uniqueName('cover')
    const [a, b] = await tenants(prefix, 2, { hstore: '1.4' })
    const current = `${prefix}_current`
    await cluster.createDatabase(current, { hstore: '1.8' })
    const plan = await planFor(`${prefix}_*`, 'hstore')
    const snap = await runInProcess({ mode: 'snapshot', 'database-url': cluster.url('postgres'), plan, 'snapshot-strategy': 'dump', 'snapshot-dir': temporaryDirectory('pgxu-cover-', true) })
    expect(snap.error).toBeUndefined()
    const manifest = JSON.parse(readFileSync(snap.outputs!.snapshot!, 'utf8')) as SnapshotManifest
    expect(manifest.databases.map((d) => d.name)).toEqual([a, b])
    expect(manifest.plan).toEqual({ fingerprint: (JSON.parse(plan) as { fingerprint: string }).fingerprint, databases: [a, b] })

    const both = await runInProcess({ mode: 'snapshot', 'database-url': cluster.url('postgres'), plan, databases: `${prefix}_*` })
    expect(both.status).toBe('failed')
    expect(both.error).toContain('inputs "plan" and "databases"')
  })

  it('a snapshot that missed the tenants: rollback given the plan or the report fails with ROLLBACK_INCOMPLETE naming each one', async () => {
    const prefix = uniqueName('miss')
    const names = await tenants(prefix, 3, { hstore: '1.4' })
    const plan = await planFor(`${prefix}_*`, 'hstore')
    const snapshotDir = temporaryDirectory('pgxu-miss-', true)
    // The mistake the README's workflow used to make: a snapshot of the URL's database only.
    const snap = await runInProcess({ mode: 'snapshot', 'database-url': cluster.url(names[0]), 'snapshot-strategy': 'dump', 'snapshot-dir': snapshotDir })
    expect(snap.status).toBe('snapshot_created')
    const upgrade = await runInProcess({ mode: 'execute', 'database-url': cluster.url('postgres'), plan })
    expect(upgrade.status).toBe('success')
    const report = JSON.stringify(upgrade.report)

    const withPlan = await runInProcess({ mode: 'rollback', 'database-url': cluster.url('postgres'), snapshot: snap.outputs!.snapshot!, plan, 'terminate-connections': 'true' })
    expect(withPlan.status).toBe('rollback_failed')
    const incomplete = withPlan.errors.filter((e) => e.code === 'ROLLBACK_INCOMPLETE')
    expect(incomplete.map((e) => e.database)).toEqual(names.slice(1))
    expect(incomplete[0].message).toContain('hstore 1.4 → 1.8')
    // The covered database was restored all the same.
    const back = withPlan.report as RollbackReport
    expect(back.databases.find((d) => d.name === names[0])?.outcome).toBe('rolled_back')
    expect((await cluster.extensionVersions(names[0])).hstore).toBe('1.4')

    const withReport = await runInProcess({ mode: 'rollback', 'database-url': cluster.url('postgres'), snapshot: snap.outputs!.snapshot!, report })
    expect(withReport.status).toBe('rollback_failed')
    expect(withReport.errors.filter((e) => e.code === 'ROLLBACK_INCOMPLETE').map((e) => e.database)).toEqual(names.slice(1))

    // Without plan or report it cannot know: it says so instead of passing silently.
    const blind = await runInProcess({ mode: 'rollback', 'database-url': cluster.url('postgres'), snapshot: snap.outputs!.snapshot! })
    expect(blind.status).toBe('nothing_to_do')
    expect(codes(blind.warnings)).toContain('COVERAGE_UNCHECKED')
    for (const name of names.slice(1)) expect((await cluster.extensionVersions(name)).hstore).toBe('1.8')
  })

  it('nothing_to_do only after checking the plan’s databases too', async () => {
    const prefix = uniqueName('fine')
    const names = await tenants(prefix, 2, { hstore: '1.4' })
    const plan = await planFor(`${prefix}_*`, 'hstore')
    const snap = await runInProcess({ mode: 'snapshot', 'database-url': cluster.url('postgres'), plan, 'snapshot-strategy': 'dump', 'snapshot-dir': temporaryDirectory('pgxu-fine-', true) })
    const result = await runInProcess({ mode: 'rollback', 'database-url': cluster.url('postgres'), snapshot: snap.outputs!.snapshot!, plan })
    expect(result.status).toBe('nothing_to_do')
    expect(result.warnings).toEqual([])
    expect((result.report as RollbackReport).phases.map((p) => p.detail)).toContain(`${names.length} changed database(s), all covered`)
  })
})

/** A stand-in for a PostgreSQL program that waits before doing its work, so a test can interrupt it there. */
function slowProgram(dir: string, name: string, when: string, marker: string): string {
  const path = join(dir, name)
  writeFileSync(
    path,
    `#!/bin/sh
case "$1" in --version) exec ${join(bin, name)} --version ;; esac
if ${when}; then touch ${marker}.started; sleep 47.${process.pid}; fi
exec ${join(bin, name)} "$@"
`
  )
  chmodSync(path, 0o755)
  return path
}

const sleepers = () => spawnSync('pgrep', ['-f', `sleep 47.${process.pid}`], { encoding: 'utf8' }).stdout.trim()

async function waitFor(path: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`${path} never appeared`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

interface Interrupted {
  code: number | null
  signal: NodeJS.Signals | null
  outputs: Record<string, string>
  summary: string
  stdout: string
}

/** Starts dist/index.js as a runner does, sends `signal` once `marker` appears, and collects what it wrote. */
async function interruptAction(inputs: Record<string, string>, marker: string, signal: NodeJS.Signals): Promise<Interrupted> {
  const dir = temporaryDirectory('pgxu-interrupt-')
  const env = runnerEnvironment(dir, inputs)
  const child = spawn(process.execPath, [ACTION_BUNDLE], { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, sig) => resolve({ code, signal: sig })))
  await waitFor(`${marker}.started`)
  child.kill(signal)
  const { code, signal: by } = await exited
  return { code, signal: by, outputs: parseOutputFile(readFileSync(env.GITHUB_OUTPUT!, 'utf8')), summary: readFileSync(env.GITHUB_STEP_SUMMARY!, 'utf8'), stdout }
}

/** A dump snapshot of a fresh database, signalled while pg_dump waits. */
async function interruptedDump(signal: NodeJS.Signals): Promise<{ db: string; snapshotDir: string; step: Interrupted }> {
  const db = uniqueName('int_dump')
  await cluster.createDatabase(db, { hstore: '1.4' })
  const tools = temporaryDirectory('pgxu-slow-bin-', true)
  const marker = join(tools, 'dump')
  slowProgram(tools, 'pg_dump', 'true', marker)
  slowProgram(tools, 'pg_restore', 'false', marker)
  const snapshotDir = temporaryDirectory('pgxu-int-snap-', true)
  const step = await interruptAction({ mode: 'snapshot', 'database-url': cluster.url(db), 'snapshot-strategy': 'dump', 'snapshot-dir': snapshotDir, 'pg-bin-dir': tools }, marker, signal)
  return { db, snapshotDir, step }
}

requires('pg_dump', 'pg_restore').describe('an interrupted step leaves a known state', () => {
  it('SIGINT mid-dump: pg_dump and its children are stopped, the summary and outputs are written, no directory passes for a snapshot, exit 130', async () => {
    const { snapshotDir, step: run } = await interruptedDump('SIGINT')
    expect(run.code).toBe(130)
    expect(run.outputs.status).toBe('failed')
    expect(run.outputs.error).toMatch(/^INTERRUPTED: interrupted by SIGINT/)
    expect(run.summary).toContain('INTERRUPTED')
    expect(readdirSync(snapshotDir)).toEqual([])
    expect(sleepers()).toBe('')
  })

  it('kill -9 mid-dump: the directory left behind is refused by rollback and removed by the next snapshot', async () => {
    const { db, snapshotDir, step: killed } = await interruptedDump('SIGKILL')
    expect(killed.signal).toBe('SIGKILL')
    spawnSync('pkill', ['-f', `sleep 47.${process.pid}`])
    const [left] = readdirSync(snapshotDir)
    expect(readdirSync(join(snapshotDir, left))).toContain('INCOMPLETE')
    expect(existsSync(join(snapshotDir, left, 'manifest.json'))).toBe(false)

    const refused = await runInProcess({ mode: 'rollback', 'database-url': cluster.url(db), snapshot: join(snapshotDir, left) })
    expect(refused.status).toBe('rollback_failed')
    expect(codes(refused.errors)).toEqual(['SNAPSHOT_INCOMPLETE'])

    const next = await runInProcess({ mode: 'snapshot', 'database-url': cluster.url(db), 'snapshot-strategy': 'dump', 'snapshot-dir': snapshotDir })
    expect(next.status).toBe('snapshot_created')
    expect(readdirSync(snapshotDir)).toHaveLength(1)
    expect(readdirSync(snapshotDir)).not.toContain(left)
  })

  it('a dump rollback interrupted: SIGINT puts the database back; kill -9 leaves a marker that the next rollback refuses', async () => {
    const db = uniqueName('int_back')
    await cluster.createDatabase(db, { hstore: '1.4' })
    await cluster.query('CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 10)', db)
    const snapshotDir = temporaryDirectory('pgxu-int-back-', true)
    const snap = await runInProcess({ mode: 'snapshot', 'database-url': cluster.url(db), 'snapshot-strategy': 'dump', 'snapshot-dir': snapshotDir })
    expect(snap.status).toBe('snapshot_created')
    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'; INSERT INTO orders VALUES (11)`, db)
    const tools = temporaryDirectory('pgxu-slow-bin-', true)
    const inputs = { mode: 'rollback', 'database-url': cluster.url(db), snapshot: snap.outputs!.snapshot!, 'rollback-strategy': 'dump', 'terminate-connections': 'true', 'pg-bin-dir': tools }

    const intMarker = join(tools, 'restore-int')
    slowProgram(tools, 'pg_restore', 'echo "$*" | grep -q -- "-d "', intMarker)
    const interrupted = await interruptAction(inputs, intMarker, 'SIGINT')
    expect(interrupted.code).toBe(130)
    expect(interrupted.outputs.status).toBe('rollback_failed')
    expect(interrupted.outputs.error).toContain('INTERRUPTED')
    expect(interrupted.summary).toContain('INTERRUPTED')
    // Put back as it was before the rollback started: upgraded, with every row.
    expect((await cluster.extensionVersions(db)).hstore).toBe('1.8')
    expect((await cluster.query<{ n: number }>('SELECT count(*)::int AS n FROM orders', db))[0].n).toBe(11)
    expect(sleepers()).toBe('')

    const killMarker = join(tools, 'restore-kill')
    slowProgram(tools, 'pg_restore', 'echo "$*" | grep -q -- "-d "', killMarker)
    const killed = await interruptAction(inputs, killMarker, 'SIGKILL')
    expect(killed.signal).toBe('SIGKILL')
    spawnSync('pkill', ['-f', `sleep 47.${process.pid}`])
    const again = await runInProcess({ ...inputs, 'pg-bin-dir': '' })
    expect(again.status).toBe('rollback_failed')
    expect(codes(again.errors)).toEqual(['ROLLBACK_INTERRUPTED'])
    expect(again.error).toContain('rollback-in-progress.json')
  })
})

requires('pg_dump', 'pg_restore').describe('summaries lead with what failed', () => {
  it('errors first, passing checks folded, a codes link, and no "how to roll back" once run rolled back', async () => {
    const db = uniqueName('summary')
    await cluster.createDatabase(db, { pgxu_down: '1.0' })
    const result = await runInProcess({ mode: 'run', 'database-url': cluster.url(db), extensions: 'pgxu_down', 'snapshot-strategy': 'dump', 'snapshot-dir': temporaryDirectory('pgxu-summary-', true), 'verify-sql': 'SELECT 1; -- expect: 2' })
    expect(result.status).toBe('rolled_back')
    const document = present(result, 'action', 'https://github.com/o/r/blob/v1/docs/reference.md#codes')
    expect(document.sections[0].heading).toMatch(/^Errors \(\d+\)$/)
    expect(document.sections[0].text).toContain('(https://github.com/o/r/blob/v1/docs/reference.md#codes)')
    const headings = document.sections.map((s) => s.heading)
    expect(headings).toContain('Failed checks')
    expect(document.sections.find((s) => s.heading.startsWith('Passed checks'))?.folded).toBe(true)
    expect(headings).not.toContain('How to roll back to this snapshot')
  })
})

describe('honest summaries', () => {
  it('a bad input or an unreachable server is failed with its code, never a plan verdict', async () => {
    const bad = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url('postgres'), concurrency: 'abc' })
    expect(bad.status).toBe('failed')
    expect(bad.plan).toBeUndefined()
    expect(bad.error).toMatch(/^INVALID_INPUT: input "concurrency"/)
  })
})
