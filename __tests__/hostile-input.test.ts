import { describe, expect, it, jest } from '@jest/globals'
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { redact, resolveTarget, scrub, scrubValues, secretsOf } from '../src/core/connection.js'
import { CodedError } from '../src/core/errors.js'
import { readInputFile, resolveInputFile } from '../src/core/input-files.js'
import { findProgram } from '../src/core/programs.js'
import { loadPlan } from '../src/core/plan-input.js'
import { parseInputs, type RawInputs } from '../src/inputs.js'
import { inertText } from '../src/report/log-safety.js'
import { actionLogger } from '../src/action/main.js'
import { cliLogger } from '../src/cli/main.js'
import { runAction } from './harness/action.js'
import { temporaryDirectory } from './harness/postgres.js'
import { runInProcess, testCluster, uniqueName } from './helpers.js'

/**
 * Hostile input (issue 10, items 5–8): file inputs stay inside the workspace or the runner's temp
 * directory, secrets are masked on values in every encoding, nothing a user controls becomes a
 * workflow command, and every input error names its own input.
 */

/** A password with every character that changes between encodings: " \ % @ : / and a space. */
const PASSWORD = 'Hx"7\\q%41@db:5/Z w'

function refusal(work: () => unknown): CodedError {
  try {
    work()
  } catch (error) {
    expect(error).toBeInstanceOf(CodedError)
    return error as CodedError
  }
  throw new Error('accepted')
}

describe('secrets are masked in every encoding', () => {
  const url = `postgresql://app:${encodeURIComponent(PASSWORD)}@db.internal:5432/app`
  const secrets = secretsOf(url, {})
  const forms = [
    PASSWORD,
    encodeURIComponent(PASSWORD),
    JSON.stringify(PASSWORD).slice(1, -1),
    JSON.stringify(JSON.stringify(PASSWORD)).slice(1, -1),
    Buffer.from(PASSWORD).toString('base64'),
    Buffer.from(PASSWORD).toString('base64url')
  ]

  it('a JSON serialisation of reported data carries no form of the password (it did, JSON-escaped)', () => {
    const report = { probe: { sql: `SELECT '${PASSWORD}'`, message: `returned ${JSON.stringify(PASSWORD)}` } }
    const serialised = scrub(JSON.stringify(report), secrets)
    for (const form of forms) expect(serialised).not.toContain(form)
  })

  it('scrubValues masks every string of an object before it is serialised, keys included', () => {
    const value = { [PASSWORD]: [{ query: `select '${PASSWORD}'`, n: 1 }], nested: { ok: true, when: null } }
    const clean = scrubValues(value, secrets)
    expect(clean).toEqual({ '***': [{ query: "select '***'", n: 1 }], nested: { ok: true, when: null } })
    for (const form of forms) expect(JSON.stringify(clean)).not.toContain(form)
  })

  it('base64 of a longer text that contains the password is masked at every alignment', () => {
    for (const prefix of ['', 'a', 'ab', 'abc']) {
      const encoded = Buffer.from(`${prefix}password=${PASSWORD};`).toString('base64')
      const scrubbed = scrub(encoded, secrets)
      expect(scrubbed).toContain('***')
      expect(Buffer.from(scrubbed.replace(/\*\*\*/g, ''), 'base64').toString('latin1')).not.toContain(PASSWORD)
    }
  })

  it('a URL without a password is shown as it is, not as *** (only real secrets are masked)', () => {
    const plain = 'postgresql://app@db.internal:5432/app'
    expect(secretsOf(plain, {})).toEqual([])
    expect(scrub(`target ${redact(resolveTarget(plain, {}))}`, secretsOf(plain, {}))).toBe(`target ${plain}`)
  })
})

describe('no value becomes a workflow command', () => {
  const injected = '/tmp/x\n::warning title=INJECTED::owned\r::error::again ##[add-mask]y'

  it('inertText breaks up :: line starts (after any line break) and ##[ anywhere', () => {
    const lines = inertText(injected).split('\n')
    expect(lines).toHaveLength(3)
    for (const line of lines) {
      expect(line.trimStart().startsWith('::')).toBe(false)
      expect(line).not.toContain('##[')
    }
  })

  it('the action logger and the CLI logger print no command line, whatever a message holds', async () => {
    const written: string[] = []
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk))
      return true
    })
    try {
      const log = actionLogger([])
      log.info(`snapshot-dir ${injected}`)
      log.warn(injected)
      await log.group(injected, async () => undefined)
    } finally {
      spy.mockRestore()
    }
    const stderr: string[] = []
    const cli = cliLogger({ write: (chunk: string) => stderr.push(chunk) } as unknown as NodeJS.WritableStream, [])
    cli.info(injected)
    for (const line of [...written, ...stderr].join('').split(/\r\n|\r|\n/)) {
      if (/^::(group|endgroup)::/.test(line)) continue
      expect(line).not.toMatch(/^\s*::/)
      expect(line).not.toContain('##[')
    }
  })
})

describe('every input error names its own input, at parse time', () => {
  const invalid = (raw: RawInputs) => refusal(() => parseInputs({ mode: 'dry-run', ...raw }))

  it.each(['snapshot-dir', 'pg-bin-dir', 'pgdata', 'snapshot', 'manifest', 'restore-point', 'restore-command', 'plan'] as const)(
    '%s with a newline is refused, naming it',
    (name) => {
      const error = invalid({ [name]: '/tmp/x\n::warning title=INJECTED::owned' })
      expect(error.code).toBe('INVALID_INPUT')
      expect(error.message).toMatch(new RegExp(`^input "${name}": `))
      expect(error.message).not.toContain('\n')
    }
  )

  it('a 100 kB snapshot-dir is refused before connecting, naming it, without echoing it', () => {
    const error = invalid({ 'snapshot-dir': `/tmp/${'a'.repeat(100_000)}` })
    expect(error.message).toMatch(/^input "snapshot-dir": the value is 100005 characters long; at most 4096/)
    expect(error.message.length).toBeLessThan(300)
  })

  it('snapshot-dir under /sys is refused as a pseudo-filesystem, not reported as INSUFFICIENT_SPACE', () => {
    expect(invalid({ 'snapshot-dir': '/sys/kernel/snapshots' }).message).toMatch(/^input "snapshot-dir": .* under \/proc, \/sys or \/dev/)
  })

  it('reference-database-url errors name reference-database-url, and never echo the value', () => {
    const error = refusal(() => resolveTarget('mysql://u:hunter2@h/db', {}, 'reference-database-url'))
    expect(error.message).toMatch(/^input "reference-database-url": /)
    expect(error.message).not.toContain('hunter2')
    const newline = invalid({ 'reference-database-url': 'postgresql://u:hunter2@h/db\nx' })
    expect(newline.message).toMatch(/^input "reference-database-url": the value \(not shown/)
    expect(newline.message).not.toContain('hunter2')
  })

  it('pg-bin-dir that is missing or not a directory says so, naming pg-bin-dir', () => {
    const dir = temporaryDirectory('pgxu-hostile-bin-')
    writeFileSync(join(dir, 'file'), '')
    expect(refusal(() => findProgram('pg_dump', { binDir: join(dir, 'missing') })).message).toMatch(/^input "pg-bin-dir": .* does not exist/)
    expect(refusal(() => findProgram('pg_dump', { binDir: join(dir, 'file') })).message).toMatch(/^input "pg-bin-dir": .* is not a directory/)
    expect(refusal(() => findProgram('pg_dump', { binDir: dir })).code).toBe('PROGRAM_MISSING')
  })

  it('a github-token with a newline is refused without being shown', () => {
    const error = invalid({ 'github-token': 'ghs_secret\n::add-mask::x' })
    expect(error.message).toMatch(/^input "github-token": /)
    expect(error.message).not.toContain('ghs_secret')
  })
})

describe('file inputs stay inside the workspace or the runner temp directory', () => {
  const workspace = temporaryDirectory('pgxu-hostile-ws-')
  const runnerTemp = temporaryDirectory('pgxu-hostile-tmp-')
  const outside = temporaryDirectory('pgxu-hostile-out-')
  const env = { GITHUB_WORKSPACE: workspace, RUNNER_TEMP: runnerTemp }
  writeFileSync(join(workspace, 'smoke.sql'), 'SELECT 1;\n')
  writeFileSync(join(runnerTemp, 'plan.json'), '{}')
  writeFileSync(join(outside, 'secret.txt'), 'TOKEN=ghs_outside\n')
  symlinkSync(join(outside, 'secret.txt'), join(workspace, 'link.sql'))
  symlinkSync('/etc', join(workspace, 'etc'))
  mkdirSync(join(workspace, 'dir.sql'))

  it('reads files inside the workspace (relative or absolute) and RUNNER_TEMP', () => {
    expect(readInputFile('verify-sql', 'smoke.sql', env)).toBe('SELECT 1;\n')
    expect(readInputFile('plan', join(runnerTemp, 'plan.json'), env)).toBe('{}')
  })

  it.each([
    ['/proc/self/environ', /under \/proc, \/sys or \/dev/],
    ['/etc/passwd', /outside the allowed directories/],
    ['../../../../etc/passwd', /outside the allowed directories/],
    ['link.sql', /outside the allowed directories \(it resolves to/],
    ['etc/passwd', /outside the allowed directories \(it resolves to "\/etc\/passwd"\)/],
    ['dir.sql', /is a directory, not a file/],
    ['missing.sql', /"missing.sql" does not exist/]
  ])('%s is refused: %s', (path, reason) => {
    const error = refusal(() => resolveInputFile('verify-sql', path, env))
    expect(error.code).toBe('INVALID_INPUT')
    expect(error.message).toMatch(/^input "verify-sql": /)
    expect(error.message).toMatch(reason)
    expect(error.message).not.toContain('ghs_outside')
  })

  it('plan: a path outside, and a compacted plan whose planFile is outside, are refused naming "plan"', () => {
    writeFileSync(join(outside, 'plan.json'), '{}')
    expect(refusal(() => loadPlan(join(outside, 'plan.json'), env)).message).toMatch(/^input "plan": .*outside the allowed directories/)
    expect(refusal(() => loadPlan('/proc/self/environ', env)).message).toMatch(/^input "plan": .*under \/proc/)
  })
})

const cluster = await testCluster()

describe('against a real server', () => {
  it('verify-sql: /proc/self/environ is refused, and no runner token reaches any output (it was echoed)', async () => {
    const db = uniqueName('hostile_environ')
    await cluster.createDatabase(db, { hstore: '1.8' })
    const token = 'ghs_RunnerTokenNeverShown42'
    for (const path of ['/proc/self/environ', '/etc/passwd']) {
      const run = await runAction({ mode: 'verify', 'database-url': cluster.url(db), 'verify-sql': path }, { env: { ACTIONS_RUNTIME_TOKEN: token } })
      expect(run.code).toBe(1)
      expect(run.outputs.error).toMatch(/^INVALID_INPUT: input "verify-sql": /)
      const everything = [run.stdout, run.stderr, run.summary, JSON.stringify(run.outputs)].join('\n')
      expect(everything).not.toContain(token)
      expect(everything).not.toContain('root:x:0:0')
    }
  })

  it('manifest: a path outside the workspace is refused before connecting', async () => {
    const result = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url('postgres'), manifest: '/etc/passwd' }, { GITHUB_WORKSPACE: temporaryDirectory('pgxu-hostile-ws-') })
    expect(result.error).toMatch(/^INVALID_INPUT: .*input "manifest": .*outside the allowed directories/)
    expect(result.error).not.toContain('root:x:0:0')
  })

  it('a newline in snapshot-dir or pg-bin-dir injects no workflow command through the bundled action (it did)', async () => {
    for (const name of ['snapshot-dir', 'pg-bin-dir']) {
      const run = await runAction({ mode: 'snapshot', 'database-url': cluster.url('postgres'), 'snapshot-strategy': 'dump', [name]: '/tmp/x\n::warning title=INJECTED::owned' })
      expect(run.code).toBe(1)
      expect(run.outputs.error).toMatch(new RegExp(`^INVALID_INPUT: input "${name}": `))
      expect(run.annotations.filter((a) => a.properties.includes('INJECTED'))).toEqual([])
      expect(`${run.stdout}\n${run.stderr}`).not.toMatch(/^\s*::warning title=INJECTED/m)
    }
  })

  it('a summary shows a URL without a password as postgresql://user@host:port/db', async () => {
    const db = uniqueName('hostile_nopw')
    await cluster.createDatabase(db, { hstore: '1.8' })
    const url = cluster.url(db, 'postgres', null)
    const started = Date.now()
    const run = await runAction({ mode: 'dry-run', 'database-url': url, extensions: 'hstore' })
    // A refused SCRAM handshake used to keep the socket, and the process, alive for the server's
    // authentication_timeout (60 s).
    expect(Date.now() - started).toBeLessThan(30_000)
    const shown = `postgresql://postgres@127.0.0.1:${cluster.port}/${db}`
    // Password authentication fails without one; the target is named all the same.
    expect(`${run.summary}\n${run.outputs.error ?? ''}`).toContain(shown)
    expect(run.summary).not.toContain('***')
  })
})
