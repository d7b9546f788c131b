import { afterAll, describe, expect, it } from '@jest/globals'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type pg from 'pg'
import { runAction, type ActionRun } from './harness/action.js'
import { temporaryDirectory } from './harness/postgres.js'
import { requires, testCluster, uniqueName } from './helpers.js'

/**
 * A password with `" \ % @ : /` (and a space, and `%41`, which URL-decoding would change) goes
 * through every mode of the bundled action, failing runs included, while it also appears in
 * reported data: the query of a long-running transaction (dry-run, execute, run report it) and a
 * probe's text and result (verify, run). No form of it may reach stdout, stderr, GITHUB_OUTPUT,
 * GITHUB_STEP_SUMMARY or any file under RUNNER_TEMP. Before values were masked, it leaked
 * JSON-escaped (`\"`, `\\`) into the plan and report outputs and files.
 */
const PASSWORD = 'Hx"7\\q%41@db:5/Z w'
const ROLE = 'pgxu_hostile_admin'

const FORMS: Record<string, string> = {
  raw: PASSWORD,
  'URL-encoded': encodeURIComponent(PASSWORD),
  'form-encoded': new URLSearchParams({ p: PASSWORD }).toString().slice(2),
  'JSON-escaped': JSON.stringify(PASSWORD).slice(1, -1),
  'JSON-escaped twice': JSON.stringify(JSON.stringify(PASSWORD)).slice(1, -1),
  base64: Buffer.from(PASSWORD).toString('base64'),
  base64url: Buffer.from(PASSWORD).toString('base64url')
}

const cluster = await testCluster()
await cluster.query(`CREATE ROLE ${ROLE} LOGIN SUPERUSER PASSWORD '${PASSWORD}'`)
const db = uniqueName('hostile_secrets')
await cluster.createDatabase(db, { hstore: '1.7' })
const url = cluster.url(db, ROLE, PASSWORD)

/** One RUNNER_TEMP for the whole job, as a runner gives every step of a job the same one. */
const runnerTemp = temporaryDirectory('pgxu-hostile-job-')

/** A session that shows the password in pg_stat_activity.query while its transaction stays open. */
let holder: pg.Client | undefined
async function holdLongTransaction(): Promise<void> {
  holder = await cluster.connect(db)
  await holder.query('BEGIN')
  await holder.query(`SELECT '${PASSWORD}' AS leaked_if_unmasked`)
}
afterAll(async () => {
  await holder?.end().catch(() => undefined)
})

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    return entry.isDirectory() ? filesUnder(path) : entry.isFile() ? [path] : []
  })
}

/** Every place a step writes, each with what it holds: masking commands (::add-mask::) excepted. */
function everythingWritten(run: ActionRun): Array<[string, string]> {
  const stdout = run.stdout
    .split('\n')
    .filter((line) => !line.startsWith('::add-mask::'))
    .join('\n')
  const files = filesUnder(runnerTemp).filter((path) => statSync(path).size < 64 * 1024 * 1024)
  return [['stdout', stdout], ['stderr', run.stderr], ['outputs', JSON.stringify(run.outputs)], ['summary', run.summary], ...files.map((path): [string, string] => [path, readFileSync(path, 'latin1')])]
}

function expectNoPassword(step: string, run: ActionRun): void {
  const leaks: string[] = []
  for (const [where, text] of everythingWritten(run)) {
    for (const [form, value] of Object.entries(FORMS)) if (text.includes(value)) leaks.push(`${step}: ${form} form in ${where}`)
  }
  expect(leaks).toEqual([])
}

const step = (inputs: Record<string, string>) => runAction({ 'database-url': url, ...inputs }, { env: { RUNNER_TEMP: runnerTemp } })

requires('pg_dump', 'pg_restore').describe('no form of a hostile password reaches any output, in any mode', () => {
  it('dry-run, snapshot, execute, verify (failing), rollback, run (failing), drift and failures: every output is clean', async () => {
    await holdLongTransaction()
    const probe = `SELECT '${PASSWORD}' AS echoed; -- expect: something else`

    const plan = await step({ mode: 'dry-run', extensions: 'hstore@1.8', 'long-transaction-threshold': '1ms' })
    expect(plan.outputs.status).toBe('dry_run_approved')
    // The secret was in the reported data and was masked there, not just absent.
    expect(plan.outputs.plan).toContain("SELECT '***' AS leaked_if_unmasked")
    expectNoPassword('dry-run', plan)

    const snap = await step({ mode: 'snapshot', 'snapshot-strategy': 'dump' })
    expect(snap.outputs.status).toBe('snapshot_created')
    expectNoPassword('snapshot', snap)

    const execute = await step({ mode: 'execute', plan: plan.outputs.plan })
    expect(execute.outputs.status).toBe('success')
    expectNoPassword('execute', execute)

    const verify = await step({ mode: 'verify', extensions: 'hstore@1.8', 'verify-sql': probe })
    expect(verify.code).toBe(1)
    expect(verify.outputs.status).toBe('verify_failed')
    expect(verify.outputs.report).toContain('***')
    expectNoPassword('verify', verify)

    await holder?.end()
    holder = undefined
    const rollback = await step({ mode: 'rollback', snapshot: snap.outputs.snapshot, 'rollback-strategy': 'dump', 'terminate-connections': 'true' })
    expect(rollback.outputs.status).toBe('rolled_back')
    expectNoPassword('rollback', rollback)

    await holdLongTransaction()
    const run = await step({ mode: 'run', extensions: 'hstore@1.8', 'snapshot-strategy': 'dump', 'verify-sql': probe, 'long-transaction-threshold': '1ms', 'terminate-connections': 'true' })
    expect(run.code).toBe(1)
    expectNoPassword('run', run)

    const drift = await step({ mode: 'drift', 'reference-database-url': url, 'fail-on-drift': 'false' })
    expect(['no_drift', 'drift_detected']).toContain(drift.outputs.status)
    expectNoPassword('drift', drift)

    const failures = [
      await step({ mode: 'dry-run', extensions: 'pgxu_hostile_no_such_extension' }),
      await runAction({ mode: 'verify', 'database-url': cluster.url('pgxu_hostile_no_such_db', ROLE, PASSWORD) }, { env: { RUNNER_TEMP: runnerTemp } }),
      await step({ mode: 'rollback', snapshot: join(runnerTemp, 'no-such-snapshot', 'manifest.json') }),
      await step({ mode: 'drift', 'reference-database-url': `${url}x`, 'connect-timeout': '2s' }),
      await step({ mode: 'execute', plan: `{"schemaVersion": 1, "note": "${FORMS['JSON-escaped']}"}` })
    ]
    for (const [index, failed] of failures.entries()) {
      expect(failed.code).not.toBe(0)
      expectNoPassword(`failure ${index + 1}`, failed)
    }
  }, 240_000)
})
