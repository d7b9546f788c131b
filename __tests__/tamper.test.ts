import { describe, expect, it } from '@jest/globals'
import { readFileSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { contentDigest } from '../src/core/digest.js'
import type { Plan } from '../src/core/plan.js'
import { readManifest } from '../src/core/recovery/manifest.js'
import type { RawInputs } from '../src/inputs.js'
import type { ExecuteReport } from '../src/modes/execute.js'
import type { ModeResult } from '../src/modes/types.js'
import { temporaryDirectory } from './harness/postgres.js'
import { dryRun, requires, runInProcess, testCluster, uniqueName } from './helpers.js'

/**
 * Plans and snapshot manifests edited after they were written, field by field, on a real server:
 * each is refused with its code before anything changes. Where an attacker also recomputes the
 * digest, the independent cross-checks (re-planning under the lock, the dump's own archive header,
 * the installed versions) still refuse.
 */
const cluster = await testCluster()

/** A plan or manifest as parsed JSON, edited freely by the tests. */
type Json = Record<string, any>

const copy = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T
/** What an attacker who knows the digest's algorithm does after editing. */
const resealed = <T extends object>(document: T): T => ({ ...document, digest: contentDigest(document) })
const databaseNames = async () => (await cluster.query<{ datname: string }>('SELECT datname FROM pg_database ORDER BY 1')).map((r) => r.datname)

function expectRefused(result: ModeResult, code: string, says: string | RegExp): void {
  expect(result.status).toMatch(/failed/)
  expect(result.changed).toBe(false)
  expect(result.errors.map((e) => e.code)).toContain(code)
  expect(result.errors.find((e) => e.code === code)?.message).toMatch(says)
}

describe('the digest', () => {
  it('is over the canonical content: key order does not matter, every nested field and every added field does, the digest itself does not', () => {
    const document = { b: 1, a: { y: [1, { q: 'x', p: null }], x: 'text' }, skipped: undefined }
    const digest = contentDigest(document)
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(contentDigest({ a: { x: 'text', y: [1, { p: null, q: 'x' }] }, b: 1 })).toBe(digest)
    expect(contentDigest({ ...document, digest: 'sha256:anything' })).toBe(digest)
    expect(contentDigest({ ...document, a: { ...document.a, y: [1, { q: 'x', p: 0 }] } })).not.toBe(digest)
    expect(contentDigest({ ...document, a: { ...document.a, y: [{ q: 'x', p: null }, 1] } })).not.toBe(digest)
    expect(contentDigest({ ...document, added: false })).not.toBe(digest)
  })
})

describe('a tampered plan', () => {
  const db = uniqueName('tamper_plan')
  const dir = temporaryDirectory('pgxu-tamper-plan-')
  let plan: Plan
  const execute = (planInput: string, inputs: RawInputs = {}) => runInProcess({ mode: 'execute', 'database-url': cluster.url(db), plan: planInput, ...inputs })
  const unchanged = async () => expect((await cluster.extensionVersions(db)).hstore).toBe('1.4')
  const edited = (edit: (p: Json) => void): string => {
    const value = copy(plan) as Json
    edit(value)
    return JSON.stringify(value)
  }

  it('is made by a dry-run with a digest over its content', async () => {
    await cluster.createDatabase(db, { hstore: '1.4' })
    plan = await dryRun(cluster, db, { extensions: 'hstore' })
    expect(plan.status).toBe('dry_run_approved')
    expect(plan.digest).toBe(contentDigest(plan))
    expect(plan.databases[0].extensions[0]).toMatchObject({ name: 'hstore', from: '1.4', to: '1.8', action: 'update', defaultTarget: true })
  })

  it.each<[string, (p: Json) => void, string | RegExp]>([
    ['top-level fingerprint zeroed', (p) => (p.fingerprint = `sha256:${'0'.repeat(64)}`), /fingerprint sha256:0+ is not the fingerprint of its databases/],
    ["an entry's action set to blocked", (p) => (p.databases[0].extensions[0].action = 'blocked'), /status is dry_run_approved, but .* it is dry_run_blocked/],
    ["an entry's to lowered to the installed version", (p) => (p.databases[0].extensions[0].to = '1.4'), /hstore: action update from 1\.4 to 1\.4 does not match its path/],
    ['status set to dry_run_blocked', (p) => (p.status = 'dry_run_blocked'), /status is dry_run_blocked/],
    ["an entry's path shortened", (p) => (p.databases[0].extensions[0].path = ['1.4', '1.5']), /does not match its path 1\.4 → 1\.5/],
    ['the request pinned to another version', (p) => (p.request.extensions = [{ name: 'hstore', version: '1.5' }]), /the request asks for 1\.5, the entry says to 1\.8/],
    ['allow-downgrade turned on', (p) => (p.request.allowDowngrade = true), /does not match its "digest"/],
    ['staged-extensions added', (p) => (p.request.stagedExtensions = ['hstore']), /does not match its "digest"/],
    ['the unplanned extensions emptied', (p) => (p.databases[0].unplanned = []), /does not match its "digest"/],
    ['the member list emptied', (p) => (p.members = {}), /does not match its "digest"/],
    ['createdAt moved', (p) => (p.createdAt = '2001-01-01T00:00:00.000Z'), /does not match its "digest"/],
    ['a field added', (p) => (p.note = 'approved by me'), /does not match its "digest"/],
    ['the digest removed', (p) => delete p.digest, /carries no "digest"/],
    ['the digest altered', (p) => (p.digest = `sha256:${'f'.repeat(64)}`), /does not match its "digest"/]
  ])('%s: INVALID_INPUT naming what, nothing changed', async (_what, edit, says) => {
    const result = await execute(edited(edit))
    expectRefused(result, 'INVALID_INPUT', says)
    expect(result.errors[0].message).toContain('input "plan"')
    await unchanged()
  })

  it('re-sealed after lowering the target to the installed version: re-planning under the lock refuses it (PLAN_STALE)', async () => {
    const value = copy(plan) as Json
    Object.assign(value.databases[0].extensions[0], { to: '1.4', path: ['1.4'], action: 'none' })
    value.status = 'nothing_to_do'
    const result = await execute(JSON.stringify(resealed(value)))
    expectRefused(result, 'PLAN_STALE', /hstore: the plan says to 1\.4, re-planning the request gives 1\.8/)
    await unchanged()
  })

  it('re-sealed after dropping the target below its request: re-planning under the lock refuses it (PLAN_STALE)', async () => {
    const explicit = await dryRun(cluster, db, { extensions: 'hstore@1.6' })
    const value = copy(explicit) as Json
    // An entry that claims the default while its request named 1.6.
    Object.assign(value.databases[0].extensions[0], { defaultTarget: true })
    value.request.extensions = [{ name: 'hstore' }]
    const result = await execute(JSON.stringify(resealed(value)))
    expectRefused(result, 'PLAN_STALE', /hstore: the plan says to 1\.6, re-planning the request gives 1\.8/)
    await unchanged()
  })

  it('a blocked plan given to execute is INVALID_INPUT, never UNEXPECTED_ERROR', async () => {
    const blocked = await dryRun(cluster, db, { extensions: 'hstore, pgxu_tamper_no_such_extension' })
    expect(blocked.status).toBe('dry_run_blocked')
    const result = await execute(JSON.stringify(blocked))
    expectRefused(result, 'INVALID_INPUT', /the plan is blocked \(1 blocker\(s\)\).*EXTENSION_NOT_AVAILABLE/)
    await unchanged()
  })

  it('a compacted plan whose planFile points at itself, or at another compacted plan, is INVALID_INPUT', async () => {
    const self = join(dir, 'self.json')
    writeFileSync(self, JSON.stringify({ ...plan, databases: [], truncated: { planFile: self, reason: 'too large' } }))
    expectRefused(await execute(self), 'INVALID_INPUT', /points at .*self\.json, which is itself a compacted plan/)

    const full = join(dir, 'full.json')
    const middle = join(dir, 'middle.json')
    writeFileSync(full, JSON.stringify(plan))
    writeFileSync(middle, JSON.stringify({ ...plan, databases: [], truncated: { planFile: full, reason: 'too large' } }))
    const chained = JSON.stringify({ ...plan, databases: [], truncated: { planFile: middle, reason: 'too large' } })
    expectRefused(await execute(chained), 'INVALID_INPUT', /itself a compacted plan/)

    // A compacted plan must also agree with the full plan it names.
    const other = JSON.stringify({ ...plan, fingerprint: `sha256:${'1'.repeat(64)}`, databases: [], truncated: { planFile: full, reason: 'too large' } })
    expectRefused(await execute(other), 'INVALID_INPUT', /disagree/)
    await unchanged()
  })

  it('a directory, a file over 64 MiB, or a file that is not a plan is INVALID_INPUT', async () => {
    expectRefused(await execute(dir), 'INVALID_INPUT', /is a directory/)
    const huge = join(dir, 'huge.json')
    writeFileSync(huge, '{')
    truncateSync(huge, 65 * 1024 * 1024)
    expectRefused(await execute(huge), 'INVALID_INPUT', /is 68157440 bytes, more than the 67108864 allowed/)
    const notJson = join(dir, 'not-json.json')
    writeFileSync(notJson, 'status: approved')
    expectRefused(await execute(notJson), 'INVALID_INPUT', /is not valid JSON/)
    await unchanged()
  })

  it('re-planning under the lock accepts a resumed run: an install pulled in by a requirement already done', async () => {
    const resumed = uniqueName('tamper_resume')
    await cluster.createDatabase(resumed)
    const pulled = await dryRun(cluster, resumed, { extensions: 'earthdistance', 'install-missing': 'true' })
    expect(pulled.databases[0].extensions.map((e) => [e.name, e.action, e.requiredBy ?? null])).toEqual([
      ['cube', 'install', 'earthdistance'],
      ['earthdistance', 'install', null]
    ])
    // What a run stopped after its first install leaves behind.
    await cluster.query(`CREATE EXTENSION cube VERSION '${pulled.databases[0].extensions[0].to}'`, resumed)
    const result = await runInProcess({ mode: 'execute', 'database-url': cluster.url(resumed), plan: JSON.stringify(pulled) })
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('success')
    expect(Object.keys(await cluster.extensionVersions(resumed))).toEqual(expect.arrayContaining(['cube', 'earthdistance']))
  })

  it('the untouched plan, inline, from its file, or through a compacted plan, still executes', async () => {
    const full = join(dir, 'plan.json')
    writeFileSync(full, `${JSON.stringify(plan, null, 2)}\n`)
    const compacted = JSON.stringify({ ...plan, databases: [], truncated: { planFile: full, reason: 'too large' } })
    const result = await execute(compacted)
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('success')
    expect((result.report as ExecuteReport).databases[0].extensions[0]).toMatchObject({ name: 'hstore', outcome: 'updated', finalVersion: '1.8' })
    const again = await execute(full)
    expect(again.status).toBe('nothing_to_do')
  })
})

requires('pg_dump', 'pg_restore').describe('a tampered snapshot manifest', () => {
  const app = uniqueName('tamper_app')
  let snapshot = ''
  let manifest: Json
  const rollback = (inputs: RawInputs = {}) => runInProcess({ mode: 'rollback', 'database-url': cluster.url(app), snapshot, 'rollback-strategy': 'dump', ...inputs })
  const write = (value: Json) => writeFileSync(snapshot, `${JSON.stringify(value, null, 2)}\n`)
  const unchanged = async () => {
    expect((await cluster.extensionVersions(app)).hstore).toBe('1.8')
    expect((await cluster.query<{ n: string }>('SELECT count(*) AS n FROM items', app))[0].n).toBe('3')
    expect((await databaseNames()).filter((name) => name.includes('__pre_rollback_'))).toEqual([])
  }

  it('is written with a digest over its content', async () => {
    await cluster.createDatabase(app, { hstore: '1.7' })
    await cluster.query('CREATE TABLE items (id int); INSERT INTO items VALUES (1), (2)', app)
    const taken = await runInProcess({ mode: 'snapshot', 'database-url': cluster.url(app), 'snapshot-strategy': 'dump', 'snapshot-dir': temporaryDirectory('pgxu-tamper-snap-') })
    expect(taken.error).toBeUndefined()
    snapshot = taken.outputs!.snapshot!
    manifest = JSON.parse(readFileSync(snapshot, 'utf8')) as Json
    expect(manifest.digest).toBe(contentDigest(manifest))
    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'; INSERT INTO items VALUES (3)`, app)
  })

  it.each<[string, (m: Json) => void]>([
    ['a database renamed to postgres', (m) => (m.databases[0].name = 'postgres')],
    ['a recorded version changed', (m) => (m.databases[0].extensions.find((e: Json) => e.name === 'hstore').version = '1.6')],
    ['the recorded owner changed', (m) => (m.databases[0].owner = 'pg_monitor')],
    ["a dump's sha256 replaced", (m) => (m.databases[0].dump.sha256 = 'a'.repeat(64))],
    ['a file entry replaced', (m) => (m.files[0].sha256 = 'b'.repeat(64))],
    ['the row counts changed', (m) => (m.databases[0].dump.rowCounts = {})],
    ['the system identifier changed', (m) => (m.server.systemIdentifier = '1')],
    ['the strategy changed', (m) => (m.strategy = 'basebackup')],
    ['a field added', (m) => (m.note = 'trust me')],
    ['the digest removed', (m) => delete m.digest],
    ['the digest altered', (m) => (m.digest = `sha256:${'e'.repeat(64)}`)]
  ])('%s: SNAPSHOT_CORRUPT naming the manifest, nothing changed', async (_what, edit) => {
    const value = copy(manifest)
    edit(value)
    write(value)
    try {
      for (const strategy of ['dump', 'auto']) {
        const result = await rollback({ 'rollback-strategy': strategy })
        expectRefused(result, 'SNAPSHOT_CORRUPT', /manifest\.json cannot be trusted: (its content does not match|it carries no) .*"digest"/)
      }
      await unchanged()
    } finally {
      write(manifest)
    }
  })

  it("re-sealed with another database's name: the dump's archive header names the real one, and nothing is replaced", async () => {
    const value = copy(manifest)
    value.databases[0].name = 'postgres'
    write(resealed(value))
    try {
      const result = await rollback()
      expectRefused(result, 'SNAPSHOT_CORRUPT', new RegExp(`the manifest says .* is the dump of postgres, but its archive header says it is the dump of ${app}`))
      await unchanged()
    } finally {
      write(manifest)
    }
  })

  it('re-sealed with a recorded version newer than the installed one: a rollback never moves an extension forward', async () => {
    const fresh = uniqueName('tamper_forward')
    await cluster.createDatabase(fresh, { hstore: '1.6' })
    const taken = await runInProcess({ mode: 'snapshot', 'database-url': cluster.url(fresh), 'snapshot-strategy': 'dump', 'snapshot-dir': temporaryDirectory('pgxu-tamper-snap-') })
    expect(taken.error).toBeUndefined()
    const path = taken.outputs!.snapshot!
    const value = JSON.parse(readFileSync(path, 'utf8')) as Json
    value.databases[0].extensions.find((e: Json) => e.name === 'hstore').version = '1.8'
    writeFileSync(path, JSON.stringify(resealed(value)))
    for (const strategy of ['auto', 'downgrade', 'dump']) {
      const result = await runInProcess({ mode: 'rollback', 'database-url': cluster.url(fresh), snapshot: path, 'rollback-strategy': strategy })
      expectRefused(result, 'NO_ROLLBACK_PATH', /records hstore 1\.8, newer than the installed 1\.6; a rollback never moves an extension forward/)
    }
    expect((await cluster.extensionVersions(fresh)).hstore).toBe('1.6')
  })

  it('a field a later version adds is covered by the digest without any change to it', async () => {
    const later = { ...copy(manifest), plan: { fingerprint: `sha256:${'2'.repeat(64)}`, databases: [app] } }
    write(resealed(later))
    try {
      expect(readManifest(snapshot).manifest.id).toBe(manifest.id)
      write({ ...later, plan: { ...later.plan, databases: ['postgres'] } })
      expect(() => readManifest(snapshot)).toThrow(/SNAPSHOT_CORRUPT|cannot be trusted/)
    } finally {
      write(manifest)
    }
  })

  it('the untouched manifest still rolls back', async () => {
    const result = await rollback()
    expect(result.error).toBeUndefined()
    expect(result.status).toBe('rolled_back')
    expect((await cluster.extensionVersions(app)).hstore).toBe('1.7')
  })
})

requires('pg_dump', 'pg_restore').describe('a tampered manifest found by restore-point under snapshot-dir', () => {
  it('is named as SNAPSHOT_CORRUPT, not passed over as if no such snapshot existed', async () => {
    const root = temporaryDirectory('pgxu-tamper-root-')
    const db = uniqueName('tamper_named')
    await cluster.createDatabase(db, { hstore: '1.7' })
    const taken = await runInProcess({ mode: 'snapshot', 'database-url': cluster.url(db), 'snapshot-strategy': 'dump', 'snapshot-dir': root })
    expect(taken.error).toBeUndefined()
    const path = taken.outputs!.snapshot!
    const value = JSON.parse(readFileSync(path, 'utf8')) as Json
    value.databases[0].extensions.find((e: Json) => e.name === 'hstore').version = '1.6'
    writeFileSync(path, JSON.stringify(value))
    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'`, db)
    const result = await runInProcess({ mode: 'rollback', 'database-url': cluster.url(db), 'snapshot-dir': root, 'restore-point': value.id as string })
    expectRefused(result, 'SNAPSHOT_CORRUPT', /manifest\.json cannot be trusted: its content does not match its "digest"/)
    expect((await cluster.extensionVersions(db)).hstore).toBe('1.8')
  })
})
