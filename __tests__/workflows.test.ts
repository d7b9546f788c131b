import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import { accessSync, chmodSync, constants, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from 'yaml'
import { ROOT } from './harness/action.js'
import { chownToOwner, startCluster, SUPERUSER_PASSWORD, temporaryDirectory, type Cluster } from './harness/postgres.js'
import { OUR_ACTION, readmeWorkflow, runWorkflow, type JobResult, type StepResult, type WorkflowRunOptions } from './harness/workflow-runner.js'
import { requires, testCluster } from './helpers.js'

/*
 * The workflows the documentation teaches — the README's (read from README.md now, so an edit
 * that breaks it fails here) and every file in examples/workflows/ — run step by step by the test
 * runner (__tests__/harness/workflow-runner.ts) against real PostgreSQL 15 fleets: stale tenants
 * (hstore 1.4, pg_trgm 1.3, citext 1.4) with rows in a table that uses all three. The assertions
 * are about behaviour (each tenant's versions and rows, the job's conclusion, which steps ran),
 * not about the YAML's text.
 */

const README_WORKFLOW = () => readmeWorkflow(readFileSync(join(ROOT, 'README.md'), 'utf8'), '## Use it in a workflow')
const EXAMPLES = join(ROOT, 'examples', 'workflows')
const example = (file: string) => readFileSync(join(EXAMPLES, file), 'utf8')

const OLD = { citext: '1.4', hstore: '1.4', pg_trgm: '1.3' }
const NEW = { citext: '1.6', hstore: '1.8', pg_trgm: '1.6' }
const MANIFEST = `extensions:
  hstore: "1.8"
  pg_trgm: "1.6"
  citext: "1.6"
databases:
  tenant_*:
`
const PASSING_PROBES = `SELECT ('a=>1'::hstore) -> 'a'; -- expect: 1
SELECT similarity('tenant', 'tenant'); -- expect: 1
SELECT 'ABC'::citext = 'abc'; -- expect: t
`
const FAILING_PROBE = 'select 1 -- expect: 2\n'

/*
 * The README and the examples keep snapshots in /var/lib/pg-extension-upgrade/snapshots, on the
 * database host's disk. The tests run them as written: the directory is created for the file (and
 * removed after, with whatever the runs put in it). Only where it cannot be created (a CI runner
 * as a normal user) do the steps get a temporary directory instead, through the runner's
 * `substitute`, which replaces that exact input value.
 */
const SNAPSHOT_DIR = '/var/lib/pg-extension-upgrade/snapshots'
const snapshotDir = (() => {
  const before = existsSync(SNAPSHOT_DIR) ? new Set(readdirSync(SNAPSHOT_DIR)) : undefined
  try {
    const created = mkdirSync(SNAPSHOT_DIR, { recursive: true })
    accessSync(SNAPSHOT_DIR, constants.W_OK)
    afterAll(() => {
      if (created) rmSync(created, { recursive: true, force: true })
      else for (const entry of readdirSync(SNAPSHOT_DIR)) if (!before?.has(entry)) rmSync(join(SNAPSHOT_DIR, entry), { recursive: true, force: true })
    })
    return { substitute: undefined }
  } catch {
    return { substitute: { [SNAPSHOT_DIR]: temporaryDirectory('pgxu-workflow-snapshots-') } }
  }
})()

/*
 * Tenants are copies of one template database (CREATE DATABASE … TEMPLATE, FILE_COPY), kept in a
 * tablespace on tmpfs where the machine has one: hundreds of databases of ~8 MB each are then
 * created and dropped in seconds rather than minutes of disk writes.
 */
const TEMPLATE = 'fleet_template'
const FLEET_SPACE = 'fleet'
const fleetDir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'pgxu-fleet-'))
chownToOwner(fleetDir)
let cluster: Cluster
afterAll(async () => {
  // Empty the tablespace while the server runs (whichever of this and the cluster's own hook comes first).
  if (cluster?.isRunning()) {
    const inSpace = await cluster.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE dattablespace = (SELECT oid FROM pg_tablespace WHERE spcname = $1)`,
      'postgres',
      [FLEET_SPACE]
    )
    for (const { datname } of inSpace) await cluster.query(`DROP DATABASE "${datname}" WITH (FORCE)`)
    await cluster.query(`DROP TABLESPACE IF EXISTS ${FLEET_SPACE}`)
  }
  rmSync(fleetDir, { recursive: true, force: true })
})
cluster = await testCluster()

/** The template: the extensions at their old versions and a table that uses all three. */
beforeAll(async () => {
  await cluster.createDatabase(TEMPLATE, OLD)
  await cluster.query(
    `CREATE TABLE accounts (id int PRIMARY KEY, email citext NOT NULL, attrs hstore NOT NULL, note text NOT NULL);
     CREATE INDEX accounts_note_trgm ON accounts USING gin (note gin_trgm_ops);
     CREATE INDEX accounts_email ON accounts (email);`,
    TEMPLATE
  )
  await cluster.query(`CREATE TABLESPACE ${FLEET_SPACE} LOCATION '${fleetDir}'`)
  await cluster.query(`ALTER DATABASE ${TEMPLATE} SET TABLESPACE ${FLEET_SPACE}`)
})

const tenantName = (i: number, width: number) => `tenant_${String(i).padStart(width, '0')}`

/** Drops every tenant_* database, then makes `count` tenants from the template, each with `rows(i)` rows of its own. */
async function fleet(count: number, rows: (i: number) => number = () => 0): Promise<string[]> {
  const admin = await cluster.connect('postgres')
  const names = Array.from({ length: count }, (_, i) => tenantName(i + 1, String(count).length))
  try {
    const existing = await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE 'tenant\\_%'`)
    for (const { datname } of existing.rows) await admin.query(`DROP DATABASE ${admin.escapeIdentifier(datname)} WITH (FORCE)`)
    for (const name of names) await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)} TEMPLATE ${TEMPLATE} STRATEGY FILE_COPY`)
  } finally {
    await admin.end()
  }
  for (const [i, name] of names.entries()) {
    if (rows(i) === 0) continue
    await cluster.query(
      `INSERT INTO accounts SELECT g, 'User' || g || '@' || current_database(), hstore('tenant', current_database()) || hstore('n', g::text), 'note about ' || g FROM generate_series(1, $1) g`,
      name,
      [rows(i)]
    )
  }
  return names
}

interface TenantState {
  versions: Record<string, string>
  rows: number
  digest: string | null
}

async function tenantState(name: string): Promise<TenantState> {
  const versions = await cluster.extensionVersions(name)
  delete versions.plpgsql
  const [data] = await cluster.query<{ rows: number; digest: string | null }>(
    `SELECT count(*)::int AS rows, md5(string_agg(id || ':' || email || ':' || attrs::text || ':' || note, ',' ORDER BY id)) AS digest FROM accounts`,
    name
  )
  return { versions, rows: data.rows, digest: data.digest }
}

const states = async (names: string[]) => Object.fromEntries(await Promise.all(names.map(async (name) => [name, await tenantState(name)] as const)))

/** A checked-out repository: the manifest and the smoke probes. */
function workspace(probes: string, manifest = MANIFEST): string {
  const dir = temporaryDirectory('pgxu-workspace-')
  writeFileSync(join(dir, 'extensions.yml'), manifest)
  mkdirSync(join(dir, 'sql'))
  writeFileSync(join(dir, 'sql', 'smoke.sql'), probes)
  return dir
}

const run = (options: Omit<WorkflowRunOptions, 'substitute'>) => runWorkflow({ substitute: snapshotDir.substitute, ...options })

/** The steps of our action in a workflow, by the mode they run (the YAML's order). */
function actionSteps(yaml: string, result: JobResult): Record<string, StepResult> {
  const job = Object.values((parse(yaml) as { jobs: Record<string, { steps: Array<{ uses?: string; with?: { mode?: string } }> }> }).jobs)[0]
  const found: Record<string, StepResult> = {}
  job.steps.forEach((step, index) => {
    if (step.uses === OUR_ACTION && step.with?.mode) found[step.with.mode] = result.steps[index]
  })
  return found
}

/** What a failed expectation shows about a step: enough to see why without rerunning. */
const brief = (step: StepResult | undefined) =>
  step && {
    name: step.name,
    status: step.status,
    outcome: step.outcome,
    error: step.error,
    outputStatus: step.outputs.status,
    outputError: step.outputs.error,
    annotations: step.annotations.map((a) => `${a.kind}: ${a.message}`.slice(0, 400))
  }
/** A green job has no failed step; when it is not green, the failed steps say why. */
const verdict = (result: JobResult) => ({ conclusion: result.conclusion, failedSteps: result.steps.filter((s) => s.outcome === 'failure').map(brief) })
const GREEN = { conclusion: 'success', failedSteps: [] }

function noSecrets(result: JobResult): void {
  for (const step of result.steps) {
    const printed = [step.stdout.split('\n').filter((line) => !line.startsWith('::add-mask::')).join('\n'), step.stderr, step.summary, JSON.stringify(step.outputs)].join('\n')
    for (const form of [SUPERUSER_PASSWORD, encodeURIComponent(SUPERUSER_PASSWORD)]) expect(printed).not.toContain(form)
  }
}

const secrets = () => ({ DATABASE_URL: cluster.url('postgres') })

requires('pg_dump', 'pg_restore').describe("the README's workflow, run as written", () => {
  it('upgrades every tenant when the smoke probes pass; the job is green and the rollback never runs', async () => {
    const tenants = await fleet(3, (i) => 20 + i)
    const before = await states(tenants)
    const yaml = README_WORKFLOW()
    const result = await run({ workflow: yaml, workspace: workspace(PASSING_PROBES), secrets: secrets(), event: { name: 'push' } })
    const steps = actionSteps(yaml, result)

    expect(brief(steps['dry-run'])).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'dry_run_approved' })
    expect(brief(steps.snapshot)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'snapshot_created' })
    expect(brief(steps.execute)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'success' })
    expect(brief(steps.verify)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'verified' })
    expect(brief(steps.rollback)).toMatchObject({ status: 'skipped', outcome: 'skipped' })
    expect(verdict(result)).toEqual(GREEN)
    // The "nothing to apply" step is for a plan that is not approved.
    expect(result.steps.filter((s) => s.kind === 'run').map((s) => s.status)).toEqual(['skipped'])
    expect(result.steps.filter((s) => s.kind === 'external').map((s) => s.status)).toEqual(['skipped-external'])

    const after = await states(tenants)
    for (const name of tenants) expect({ name, ...after[name] }).toEqual({ name, ...before[name], versions: NEW })
    noSecrets(result)
  })

  it('restores every tenant to its old versions with all its rows when a smoke probe fails; the job is red', async () => {
    const tenants = await fleet(3, (i) => 30 + 7 * i)
    const before = await states(tenants)
    for (const name of tenants) expect(before[name].versions).toEqual(OLD)
    const yaml = README_WORKFLOW()
    const result = await run({ workflow: yaml, workspace: workspace(FAILING_PROBE), secrets: secrets(), event: { name: 'push' } })
    const steps = actionSteps(yaml, result)

    expect(brief(steps.execute)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'success' })
    expect(brief(steps.verify)).toMatchObject({ status: 'ran', outcome: 'failure', outputStatus: 'verify_failed' })
    expect(brief(steps.rollback)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'rolled_back' })
    expect(result.conclusion).toBe('failure')
    expect(await states(tenants)).toEqual(before)
    noSecrets(result)
  })
})

requires('pg_dump', 'pg_restore').describe('examples/workflows/upgrade.yml, then rollback.yml dispatched with its snapshot', () => {
  it('upgrades every tenant; the manual rollback restores each to its old versions with all its rows', async () => {
    const tenants = await fleet(3, (i) => 11 + 5 * i)
    const before = await states(tenants)
    const upgradeYaml = example('upgrade.yml')
    const upgrade = await run({ workflow: upgradeYaml, workspace: workspace(PASSING_PROBES), secrets: secrets(), inputs: { environment: 'staging' } })
    const steps = actionSteps(upgradeYaml, upgrade)

    expect(upgrade.name).toBe('upgrade staging')
    expect(brief(steps['dry-run'])).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'dry_run_approved' })
    expect(brief(steps.snapshot)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'snapshot_created' })
    expect(brief(steps.execute)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'success' })
    expect(brief(steps.verify)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'verified' })
    expect(brief(steps.rollback)).toMatchObject({ status: 'skipped' })
    expect(brief(upgrade.step('Nothing to apply'))).toMatchObject({ status: 'skipped' })
    expect(verdict(upgrade)).toEqual(GREEN)
    // The artifact step runs (as a no-op here) whatever happened, with its path resolved.
    const artifact = upgrade.step('Keep the plan and the reports')
    expect(artifact.status).toBe('skipped-external')
    expect(artifact.inputs.path).toBe(`${upgrade.runnerTemp}/pg-extension-upgrade/*/*.json`)
    for (const name of tenants) expect((await tenantState(name)).versions).toEqual(NEW)

    // Hours later, by hand: rollback.yml with the snapshot the upgrade recorded.
    const snapshot = steps.snapshot.outputs.snapshot
    expect(snapshot).toMatch(/manifest\.json$/)
    const rollbackYaml = example('rollback.yml')
    const rollback = await run({
      workflow: rollbackYaml,
      workspace: workspace(PASSING_PROBES),
      secrets: secrets(),
      vars: { PGDATA: cluster.dataDir, PG_SERVICE: 'postgresql@15-main' },
      inputs: { environment: 'staging', snapshot }
    })
    expect(verdict(rollback)).toEqual(GREEN)
    expect(rollback.name).toBe('rollback staging (auto)')
    expect(brief(rollback.step('Check the request'))).toMatchObject({ status: 'ran', outcome: 'success' })
    expect(brief(rollback.step('rollback'))).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'rolled_back' })
    expect(rollback.step('Report').stdout).toContain('rollback status: rolled_back')
    expect(await states(tenants)).toEqual(before)
    noSecrets(upgrade)
    noSecrets(rollback)
  })

  it('rollback.yml refuses a request with neither snapshot nor restore point, before touching anything', async () => {
    const rollback = await run({ workflow: example('rollback.yml'), workspace: workspace(PASSING_PROBES), secrets: secrets(), inputs: { environment: 'staging' } })
    expect(rollback.conclusion).toBe('failure')
    const check = rollback.step('Check the request')
    expect(check).toMatchObject({ status: 'ran', outcome: 'failure', exitCode: 1 })
    expect(check.annotations).toEqual([{ kind: 'error', properties: '', message: expect.stringContaining('Give the snapshot manifest path or the restore point') }])
    expect(rollback.step('rollback').status).toBe('skipped')
    expect(rollback.step('Report')).toMatchObject({ status: 'ran', outcome: 'success' })
    expect(rollback.step('Report').stdout).toContain('rollback status: not run')
  })
})

/** The README workflow over a fleet of `count` tenants: the plan goes from step to step through environment variables. */
async function handOff(count: number): Promise<void> {
  const tenants = await fleet(count)
  const yaml = README_WORKFLOW()
  const result = await run({ workflow: yaml, workspace: workspace(PASSING_PROBES), secrets: secrets(), event: { name: 'push' } })
  const steps = actionSteps(yaml, result)
  const plan = steps['dry-run']
  expect(brief(plan)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'dry_run_approved' })
  expect(brief(steps.snapshot)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'snapshot_created' })
  expect(brief(steps.execute)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'success' })
  expect(brief(steps.verify)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'verified' })
  // What the docs hand to the next step stays far below Linux's 128 KiB per variable.
  expect(Buffer.byteLength(plan.outputs.plan)).toBeLessThan(64 * 1024)
  expect(verdict(result)).toEqual(GREEN)
  // One at a time: the cluster allows 100 connections, the fleet is larger.
  const versions: Array<{ name: string; versions: unknown }> = []
  for (const name of tenants) versions.push({ name, versions: (await tenantState(name)).versions })
  expect(versions.filter((t) => JSON.stringify(t.versions) !== JSON.stringify(NEW))).toEqual([])
}

describe('the dry-run → execute hand-off at fleet scale, through environment variables', () => {
  requires('pg_dump', 'pg_restore').it('300 tenants', async () => {
    await handOff(300)
  }, 900_000)

  it('1,000 tenants: the plan output stays a compact form that execute follows to the plan file', async () => {
    const tenants = await fleet(1000)
    const yaml = `jobs:
  upgrade:
    runs-on: ubuntu-latest
    steps:
      - id: plan
        uses: ${OUR_ACTION}
        with:
          mode: dry-run
          database-url: \${{ secrets.DATABASE_URL }}
          databases: tenant_*
          extensions: hstore, pg_trgm, citext
          concurrency: 8
      - id: upgrade
        if: fromJSON(steps.plan.outputs.plan).status == 'dry_run_approved'
        uses: ${OUR_ACTION}
        with:
          mode: execute
          database-url: \${{ secrets.DATABASE_URL }}
          plan: \${{ steps.plan.outputs.plan }}
          concurrency: 8
`
    const result = await run({ workflow: yaml, workspace: workspace(PASSING_PROBES), secrets: secrets(), event: { name: 'push' } })
    const [plan, upgrade] = result.steps
    expect(brief(plan)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'dry_run_approved' })
    expect(Buffer.byteLength(plan.outputs.plan)).toBeLessThan(64 * 1024)
    expect(JSON.parse(plan.outputs.plan)).toMatchObject({ status: 'dry_run_approved', counts: { databases: 1000, changes: 3000 } })
    expect(brief(upgrade)).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'success' })
    expect(JSON.parse(upgrade.outputs.report)).toMatchObject({ status: 'success', counts: { updated: 1000, failed: 0, notStarted: 0 } })
    for (const name of [tenants[0], tenants[499], tenants[999]]) expect((await tenantState(name)).versions).toEqual(NEW)
  }, 1_800_000)
})

describe('examples/workflows/pr-gate.yml', () => {
  const api = { comments: [] as Array<{ id: number; body: string }>, requests: [] as string[] }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = ''
    req.on('data', (chunk: Buffer) => (raw += chunk.toString('utf8')))
    req.on('end', () => {
      api.requests.push(`${req.method} ${req.url?.split('?')[0]} ${req.headers.authorization ?? ''}`)
      const reply = (status: number, data: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify(data))
      }
      if (req.method === 'GET' && req.url?.startsWith('/repos/our-org/app/issues/7/comments')) return reply(200, api.comments)
      if (req.method === 'POST' && req.url === '/repos/our-org/app/issues/7/comments') {
        const comment = { id: 500 + api.comments.length, body: (JSON.parse(raw) as { body: string }).body, html_url: 'https://github.example/c' }
        api.comments.push(comment)
        return reply(201, comment)
      }
      const patch = /^\/repos\/our-org\/app\/issues\/comments\/(\d+)$/.exec(req.url ?? '')
      if (req.method === 'PATCH' && patch) {
        const comment = api.comments.find((c) => c.id === Number(patch[1]))
        if (comment) comment.body = (JSON.parse(raw) as { body: string }).body
        return reply(comment ? 200 : 404, comment ?? { message: 'Not Found' })
      }
      return reply(404, { message: `no route for ${req.method} ${req.url}` })
    })
  })
  beforeAll(() => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)))
  afterAll(() => new Promise((resolve) => server.close(resolve)))

  const TOKEN = 'ghs_workflowRunnerToken0123456789'
  const pullRequest = (headRepo: string) => ({
    name: 'pull_request',
    payload: {
      action: 'synchronize',
      number: 7,
      pull_request: { number: 7, head: { ref: 'feature', repo: { full_name: headRepo } }, base: { ref: 'main', repo: { full_name: 'our-org/app' } } },
      repository: { full_name: 'our-org/app' }
    }
  })
  const gate = (manifest: string, headRepo = 'our-org/app') =>
    run({
      workflow: example('pr-gate.yml'),
      workspace: workspace(PASSING_PROBES, manifest),
      secrets: { STAGING_DATABASE_URL: cluster.url('postgres') },
      event: pullRequest(headRepo),
      github: { token: TOKEN, apiUrl: `http://127.0.0.1:${(server.address() as { port: number }).port}` }
    })

  it('plans the manifest read-only, keeps one sticky comment with the plan, and annotates blockers on the manifest lines', async () => {
    const tenants = await fleet(3)
    api.comments = []
    const approved = await gate(MANIFEST)
    expect(verdict(approved)).toEqual(GREEN)
    expect(brief(approved.step('plan'))).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'dry_run_approved' })
    expect(approved.step('plan').inputs['github-token']).toBe(TOKEN)
    expect(api.comments).toHaveLength(1)
    expect(api.comments[0].body).toContain('dry_run_approved')
    for (const name of tenants) expect(api.comments[0].body).toContain(name)
    expect(api.requests).toContain(`POST /repos/our-org/app/issues/7/comments token ${TOKEN}`)
    for (const name of tenants) expect((await tenantState(name)).versions).toEqual(OLD)

    const blocked = await gate(MANIFEST.replace('hstore: "1.8"', 'hstore: "9.9"'))
    expect(blocked.conclusion).toBe('failure')
    expect(brief(blocked.step('plan'))).toMatchObject({ status: 'ran', outcome: 'failure', outputStatus: 'dry_run_blocked' })
    const lines = blocked.step('plan').annotations.filter((a) => a.kind === 'error').map((a) => a.properties)
    expect(lines.length).toBeGreaterThan(0)
    for (const properties of lines) expect(properties).toContain('file=extensions.yml,line=2')
    expect(api.comments).toHaveLength(1)
    expect(api.comments[0].body).toContain('dry_run_blocked')
    noSecrets(approved)
    noSecrets(blocked)
  })

  it('skips pull requests from forks: the job does not run', async () => {
    api.requests = []
    const fork = await gate(MANIFEST, 'someone/app')
    expect(fork.conclusion).toBe('skipped')
    expect(fork.steps).toEqual([])
    expect(api.requests).toEqual([])
  })
})

describe('examples/workflows/drift.yml', () => {
  it('fails on drift and files the issue with gh; after the upgrade it is green and files nothing', async () => {
    const own = await startCluster()
    try {
      await driftChecks(own)
    } finally {
      await own.destroy()
    }
  })
})

/** drift.yml on a cluster of its own, where `databases: all` sees only two stale tenants. */
async function driftChecks(own: Cluster): Promise<void> {
  const tenants = ['tenant_x', 'tenant_y']
  for (const name of tenants) await own.createDatabase(name, OLD)
  // gh as the runner image has it, standing in: it records its calls and finds no open issue.
  const bin = temporaryDirectory('pgxu-gh-')
  const log = join(bin, 'calls.log')
  writeFileSync(join(bin, 'gh'), `#!/bin/bash\n{ printf 'GH_REPO=%s GH_TOKEN=%s |' "$GH_REPO" "$GH_TOKEN"; printf ' [%s]' "$@"; echo; } >> "${log}"\n`)
  chmodSync(join(bin, 'gh'), 0o755)
  const drift = (c: Cluster) =>
    run({
      workflow: example('drift.yml'),
      workspace: workspace(PASSING_PROBES),
      secrets: { DATABASE_URL: c.url('postgres') },
      event: { name: 'schedule', payload: { schedule: '17 6 * * *' } },
      github: { token: 'ghs_driftToken', runId: '777', serverUrl: 'https://github.example' },
      env: { PATH: `${bin}:${process.env.PATH}` }
    })

  const drifted = await drift(own)
  expect(drifted.conclusion).toBe('failure')
  expect(brief(drifted.step('drift'))).toMatchObject({ status: 'ran', outcome: 'failure', outputStatus: 'drift_detected' })
  const report = JSON.parse(drifted.step('drift').outputs.drift) as unknown
  for (const name of tenants) expect(JSON.stringify(report)).toContain(name)
  expect(brief(drifted.step('Open or update the drift issue'))).toMatchObject({ status: 'ran', outcome: 'success' })
  const calls = readFileSync(log, 'utf8').trim().split('\n')
  expect(calls[0]).toMatch(/^GH_REPO=our-org\/app GH_TOKEN=ghs_driftToken \| \[issue\] \[list\]/)
  expect(calls[1]).toContain('[issue] [create] [--title] [PostgreSQL extension drift detected] [--body]')
  expect(calls[1]).toContain('Details: https://github.example/our-org/app/actions/runs/777]')
  expect(calls).toHaveLength(2)

  for (const name of tenants) for (const [extension, version] of Object.entries(NEW)) await own.query(`ALTER EXTENSION ${extension} UPDATE TO '${version}'`, name)
  const clean = await drift(own)
  expect(verdict(clean)).toEqual(GREEN)
  expect(brief(clean.step('drift'))).toMatchObject({ status: 'ran', outcome: 'success', error: undefined, outputStatus: 'no_drift' })
  expect(clean.step('Open or update the drift issue').status).toBe('skipped')
  expect(readFileSync(log, 'utf8').trim().split('\n')).toHaveLength(2)
}
