import { beforeAll, describe, expect, it } from '@jest/globals'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { DESCRIPTIONS_MODULE, descriptionsModule } from '../scripts/readme-tables.js'
import { CLI_INPUTS, parseArguments, usage } from '../src/cli/args.js'
import { confirm } from '../src/cli/confirm.js'
import { VERSION } from '../src/cli/descriptions.js'
import { main } from '../src/cli/main.js'
import { ACTION_ONLY, MODE_HELP } from '../src/cli/modes.js'
import { levenshtein, nearest } from '../src/cli/suggest.js'
import { CodedError } from '../src/core/errors.js'
import { INPUT_NAMES, MODES } from '../src/inputs.js'
import { CLI_BUNDLE, ROOT } from './harness/action.js'
import { SUPERUSER_PASSWORD, runProcess, temporaryDirectory } from './harness/postgres.js'
import { requires, testCluster, uniqueName } from './helpers.js'

/*
 * The CLI: parsing and help in-process; everything a user types through the bundle
 * (dist/cli/index.js; rebuild it with `npm run package`) against a real cluster; the confirmation
 * prompt on a real pseudo-terminal made by util-linux `script`.
 */

const cluster = await testCluster()
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; files: string[]; bin: Record<string, string> }
const SECRET_FORMS = [SUPERUSER_PASSWORD, encodeURIComponent(SUPERUSER_PASSWORD), 'S3cr3t']

const usageError = (argv: string[]) => {
  try {
    parseArguments(argv)
  } catch (error) {
    expect(error).toBeInstanceOf(CodedError)
    return (error as CodedError).message
  }
  throw new Error(`${argv.join(' ')} was accepted`)
}

/** The help's option names, `--name` at the start of a line (not the `--plan -` form). */
const optionsIn = (help: string) => [...help.matchAll(/^ {2}(?:-\w, )?--([a-z-]+)(?=\s|$)(?! -)/gm)].map((m) => m[1])

describe('arguments (in-process)', () => {
  it('the descriptions module is what npm run docs generates from action.yml and package.json', () => {
    expect(readFileSync(DESCRIPTIONS_MODULE, 'utf8')).toBe(descriptionsModule())
    expect(VERSION).toBe(PACKAGE.version)
  })

  it('every option a mode lists is an input, and every CLI input is listed by some mode', () => {
    const listed = new Set(Object.values(MODE_HELP).flatMap((help) => help.options))
    for (const name of listed) expect(CLI_INPUTS).toContain(name)
    expect(CLI_INPUTS.filter((name) => !listed.has(name))).toEqual([])
    expect(INPUT_NAMES.filter((name) => !CLI_INPUTS.includes(name)).sort()).toEqual(['comment-on-pr', 'github-token', 'mode'])
  })

  it('<mode> --help lists exactly that mode’s options, with descriptions and an example', () => {
    for (const mode of MODES) {
      const help = usage(mode)
      const inputs = optionsIn(help).filter((name) => (INPUT_NAMES as string[]).includes(name))
      expect({ mode, inputs }).toEqual({ mode, inputs: MODE_HELP[mode].options.filter((name, i, all) => all.indexOf(name) === i) })
      expect(help).toContain(`Usage: pg-extension-upgrade ${mode} [options]`)
      expect(help).toContain(`Example:\n  pg-extension-upgrade ${mode} `)
    }
    const drift = usage('drift')
    expect(drift).toContain('--fail-on-drift')
    expect(drift).not.toContain('--pgdata')
    expect(drift).toContain('For drift: fail the step when drift is found.')
    expect(usage('rollback')).toContain('--confirm-data-loss')
    expect(usage('rollback')).not.toContain('--canary')
    expect(usage('execute')).toContain('-y, --yes')
    expect(usage('drift')).not.toContain('--yes')
  })

  it('hides the Action-only options from every help and refuses them', () => {
    for (const help of [usage(), ...MODES.map((mode) => usage(mode))]) {
      for (const name of ACTION_ONLY) expect(help).not.toContain(`--${name}`)
    }
    expect(usageError(['dry-run', '--github-token', 'x'])).toContain('"--github-token" is an input of the GitHub Action only')
    expect(usageError(['dry-run', '--comment-on-pr'])).toContain('"--comment-on-pr" is an input of the GitHub Action only')
  })

  it('suggests the nearest mode or option within two edits', () => {
    expect(levenshtein('exceute', 'execute')).toBe(2)
    expect(nearest('dry-rn', MODES)).toBe('dry-run')
    expect(nearest('deploy', MODES)).toBeUndefined()
    expect(usageError(['exceute'])).toContain('did you mean "execute"?')
    expect(usageError(['dry-run', '--extension', 'hstore'])).toContain('unknown option "--extension"; did you mean "--extensions"?')
    expect(usageError(['dry-run', '--jsn'])).toContain('did you mean "--json"?')
    expect(usageError(['deploy'])).not.toContain('did you mean')
  })

  it('reads -h, -y, --version, --out and notes options the mode does not use', () => {
    expect(parseArguments(['execute', '-h']).help).toBe(true)
    expect(parseArguments(['execute', '-y'])).toMatchObject({ yes: true, inputs: { mode: 'execute' } })
    expect(parseArguments(['--version']).version).toBe(true)
    expect(parseArguments(['dry-run', '--out', 'p.json']).out).toBe('p.json')
    expect(parseArguments(['dry-run', '--out=p.json']).out).toBe('p.json')
    expect(parseArguments(['dry-run', '--pgdata', '/x', '--extensions', 'hstore']).unused).toEqual(['pgdata'])
  })

  it('main prints the version and exits 2 with a hint for an unknown mode', async () => {
    const stdout = new PassThrough()
    const stderr = new PassThrough()
    const streams = { stdin: new PassThrough(), stdout, stderr }
    expect(await main(['--version'], {}, streams)).toBe(0)
    expect(stdout.read()?.toString()).toBe(`pg-extension-upgrade ${PACKAGE.version}\n`)
    expect(await main(['dry-rn'], {}, streams)).toBe(2)
    expect(stderr.read()?.toString()).toContain('did you mean "dry-run"?')
  })
})

describe('the confirmation (injected streams)', () => {
  const ask = async (typed: string | null) => {
    const input = new PassThrough()
    const output = new PassThrough()
    const answer = confirm('Proceed?', input, output)
    if (typed === null) input.end()
    else input.write(typed)
    const result = await answer
    return { result, shown: output.read()?.toString() }
  }

  it.each([
    ['y\n', true],
    ['yes\n', true],
    [' Y \n', true],
    ['n\n', false],
    ['\n', false],
    ['yep\n', false],
    [null, false]
  ])('%j → %s', async (typed, expected) => {
    const { result, shown } = await ask(typed)
    expect(result).toBe(expected)
    expect(shown).toBe('Proceed? [y/N] ')
  })

  it('an interrupt while waiting is no', async () => {
    const stop = new AbortController()
    const answer = confirm('Proceed?', new PassThrough(), new PassThrough(), stop.signal)
    stop.abort('SIGINT')
    expect(await answer).toBe(false)
    expect(await confirm('Proceed?', new PassThrough(), new PassThrough(), stop.signal)).toBe(false)
  })
})

describe('the CLI bundle against a real cluster', () => {
  const work = temporaryDirectory('pgxu-cli-')
  const dbs = { roundTrip: uniqueName('pgxu_cli_rt'), stdin: uniqueName('pgxu_cli_stdin'), prompt: uniqueName('pgxu_cli_prompt'), snap: uniqueName('pgxu_cli_snap') }

  beforeAll(async () => {
    expect(existsSync(CLI_BUNDLE)).toBe(true)
    for (const db of Object.values(dbs)) await cluster.createDatabase(db, { hstore: '1.4' })
  })

  const cli = async (args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}) => {
    const result = await runProcess(process.execPath, [CLI_BUNDLE, ...args], {
      cwd: work,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...options.env },
      input: options.input
    })
    for (const form of SECRET_FORMS) expect(`${result.stdout}${result.stderr}`).not.toContain(form)
    return result
  }

  /** The CLI on a pseudo-terminal (stdin and stdout are a tty); `typed` is typed once the question shows. */
  const onTerminal = (args: string[], typed: string, env: NodeJS.ProcessEnv) =>
    new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      const command = [process.execPath, CLI_BUNDLE, ...args].join(' ')
      const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd: work, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } })
      let stdout = ''
      let asked = false
      child.stdout.on('data', (chunk) => {
        stdout += chunk
        if (!asked && stdout.includes('Proceed? [y/N]')) {
          asked = true
          child.stdin.write(typed)
        }
      })
      if (typed === '') child.stdin.end()
      child.on('error', reject)
      child.on('close', (code) => {
        for (const form of SECRET_FORMS) expect(stdout).not.toContain(form)
        resolve({ code, stdout })
      })
    })

  const hstoreIn = async (database: string) => {
    const client = await cluster.connect(database)
    try {
      return (await client.query<{ extversion: string }>(`SELECT extversion FROM pg_extension WHERE extname = 'hstore'`)).rows[0].extversion
    } finally {
      await client.end()
    }
  }

  it('--version and per-mode help', async () => {
    expect((await cli(['--version'])).stdout).toBe(`pg-extension-upgrade ${PACKAGE.version}\n`)
    const help = await cli(['verify', '--help'])
    expect(help.code).toBe(0)
    expect(optionsIn(help.stdout)).toContain('verify-sql')
    expect(optionsIn(help.stdout)).not.toContain('snapshot-strategy')
    const typo = await cli(['dry-run', '--databse-url', 'x'])
    expect(typo.code).toBe(2)
    expect(typo.stderr).toContain('did you mean "--database-url"?')
  })

  it('round trip: dry-run --json > plan.json, then execute --plan plan.json (no prompt when not a terminal)', async () => {
    const url = cluster.url(dbs.roundTrip)
    const dryRun = await cli(['dry-run', '--database-url', url, '--extensions', 'hstore@1.8', '--json'])
    expect(dryRun.code).toBe(0)
    const planFile = join(work, 'plan.json')
    writeFileSync(planFile, dryRun.stdout)
    const execute = await cli(['execute', '--database-url', url, '--plan', planFile, '--json'])
    expect(execute.stderr).not.toContain('Proceed?')
    expect(JSON.parse(execute.stdout).status).toBe('success')
    expect(execute.code).toBe(0)
    expect(await hstoreIn(dbs.roundTrip)).toBe('1.8')
  })

  it('--out writes the bare plan; --plan - reads a plan (or the --json output) from stdin; DATABASE_URL is read', async () => {
    const env = { DATABASE_URL: cluster.url(dbs.stdin) }
    const out = join(work, 'bare-plan.json')
    const dryRun = await cli(['dry-run', '--extensions', 'hstore@1.6', '--out', out, '--json'], { env })
    expect(dryRun.code).toBe(0)
    const bare = JSON.parse(readFileSync(out, 'utf8'))
    expect(bare).toMatchObject({ schemaVersion: 1, status: 'dry_run_approved' })
    expect(bare).toEqual(JSON.parse(dryRun.stdout).plan)
    const fromBare = await cli(['execute', '--plan', '-', '--json'], { env, input: readFileSync(out, 'utf8') })
    expect(JSON.parse(fromBare.stdout).status).toBe('success')
    expect(await hstoreIn(dbs.stdin)).toBe('1.6')

    const again = await cli(['dry-run', '--extensions', 'hstore@1.8', '--json'], { env })
    const fromWrapper = await cli(['execute', '--plan', '-'], { env, input: again.stdout })
    expect(fromWrapper.code).toBe(0)
    expect(await hstoreIn(dbs.stdin)).toBe('1.8')

    const empty = await cli(['execute', '--plan', '-'], { env, input: '' })
    expect(empty.code).toBe(2)
    expect(empty.stderr).toContain('stdin was empty')
  })

  it('--color colours output even when piped; without it a pipe gets none', async () => {
    const env = { DATABASE_URL: cluster.url(dbs.roundTrip) }
    expect((await cli(['drift', '--extensions', 'hstore', '--color'], { env })).stdout).toContain('\u001b[')
    expect((await cli(['drift', '--extensions', 'hstore'], { env })).stdout).not.toContain('\u001b[')
  })

  it('on a terminal, execute shows the changes and asks; "n" or Ctrl-C changes nothing, "y" applies what was shown', async () => {
    const env = { DATABASE_URL: cluster.url(dbs.prompt) }
    const no = await onTerminal(['execute', '--extensions', 'hstore@1.8'], 'n\n', env)
    expect(no.stdout).toContain('execute will change 1 database(s):')
    expect(no.stdout).toContain(`${dbs.prompt}: hstore 1.4 → 1.8`)
    expect(no.stdout).toContain('Proceed? [y/N]')
    expect(no.stdout).toContain('Cancelled: nothing was changed.')
    expect(no.code).toBe(1)
    expect(await hstoreIn(dbs.prompt)).toBe('1.4')

    const interrupted = await onTerminal(['execute', '--extensions', 'hstore@1.8'], '\u0003', env)
    expect(interrupted.stdout).toContain('Proceed? [y/N]')
    expect(interrupted.stdout).toContain('Cancelled: nothing was changed.')
    expect(interrupted.code).toBe(130)
    expect(await hstoreIn(dbs.prompt)).toBe('1.4')

    const yes = await onTerminal(['execute', '--extensions', 'hstore@1.8'], 'y\n', env)
    expect(yes.stdout).toContain('Proceed? [y/N]')
    expect(yes.stdout).toContain('success')
    expect(yes.code).toBe(0)
    expect(await hstoreIn(dbs.prompt)).toBe('1.8')

    const skip = await onTerminal(['execute', '--extensions', 'hstore@1.8', '--yes'], '', env)
    expect(skip.stdout).not.toContain('Proceed?')
    expect(skip.code).toBe(0)
  })

  requires('pg_dump', 'pg_restore').it('snapshot hints a rollback command, not a workflow step; rollback on a terminal shows the snapshot and asks', async () => {
    const env = { DATABASE_URL: cluster.url(dbs.snap) }
    const snapshot = await cli(['snapshot', '--snapshot-strategy', 'dump', '--snapshot-dir', join(work, 'snapshots'), '--json'], { env })
    expect(JSON.parse(snapshot.stdout).status).toBe('snapshot_created')
    const manifest = JSON.parse(snapshot.stdout).snapshot as string
    const text = await cli(['snapshot', '--snapshot-strategy', 'dump', '--snapshot-dir', join(work, 'snapshots-2')], { env })
    expect(text.stdout).toContain('How to roll back to this snapshot')
    expect(text.stdout).toMatch(/^ {2}pg-extension-upgrade rollback --snapshot \S+manifest\.json/m)
    expect(text.stdout).not.toContain('uses:')

    const no = await onTerminal(['rollback', '--snapshot', manifest], 'n\n', env)
    expect(no.stdout).toContain('rollback will restore:')
    expect(no.stdout).toContain(`${dbs.snap}: hstore 1.4`)
    expect(no.stdout).toContain('Cancelled: nothing was changed.')
    expect(no.code).toBe(1)
  })
})

describe('the packed package', () => {
  it('npm pack ships the CLI bundle, and the installed bin runs', async () => {
    expect(PACKAGE.files).toContain('dist/cli/')
    expect(PACKAGE.bin['pg-extension-upgrade']).toBe('dist/cli/index.js')
    const packDir = temporaryDirectory('pgxu-pack-')
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, npm_config_cache: join(packDir, 'cache') }
    const pack = await runProcess('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: ROOT, env })
    expect(pack.code).toBe(0)
    const [{ filename, files }] = JSON.parse(pack.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>
    const shipped = files.map((f) => f.path)
    expect(shipped).toEqual(expect.arrayContaining(['dist/cli/index.js', 'dist/cli/licenses.txt', 'LICENSE', 'package.json', 'action.yml']))
    expect(shipped.filter((path) => path.startsWith('src/') || path.startsWith('__tests__/'))).toEqual([])
    // The bundle carries every dependency: the tarball installs with no registry at all.
    const installDir = temporaryDirectory('pgxu-install-')
    const install = await runProcess('npm', ['install', '--offline', '--no-audit', '--no-fund', join(packDir, filename)], { cwd: installDir, env })
    expect(install.stderr).not.toContain('ERR')
    expect(install.code).toBe(0)
    const version = await runProcess(join(installDir, 'node_modules', '.bin', 'pg-extension-upgrade'), ['--version'], { env })
    expect(version.stdout).toBe(`pg-extension-upgrade ${PACKAGE.version}\n`)
  })
})
