import { describe, expect, it, jest } from '@jest/globals'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { actionLogger } from '../src/action/main.js'
import { INPUT_NAMES, type InputName, type RawInputs } from '../src/inputs.js'
import { runMode } from '../src/modes/index.js'
import type { ModeResult } from '../src/modes/types.js'
import { ROOT, runAction } from './harness/action.js'
import { temporaryDirectory } from './harness/postgres.js'
import { testCluster, uniqueName } from './helpers.js'

/**
 * Every input of action.yml gets hostile values (line breaks carrying workflow commands, quotes,
 * backslashes, NUL, 200 kB, paths outside the workspace, `../`, unicode, SQL) through the same
 * code the action runs (runMode with the action's logger), and a sample through dist/index.js.
 * Each run ends either in one INVALID_INPUT naming that input or in a result the mode can give
 * anyway (never UNEXPECTED_ERROR, never a stack trace, never a bounded error echoing 200 kB); no
 * line printed is a workflow command; the server is the same afterwards.
 */

const INJECTED = ['::warning title=INJECTED::owned', '::error::INJECTED', '::add-mask::INJECTED', '##[warning]INJECTED']

const HOSTILE: Array<[string, string]> = [
  ['a newline then a workflow command', `x\n${INJECTED[0]}`],
  ['a carriage return then a command', `x\r${INJECTED[1]}`],
  ['a command at the start', INJECTED[2]],
  ['a legacy ##[ command', `x ${INJECTED[3]}`],
  ['double quotes', 'a"b"'],
  ['a single quote and SQL', "x'; DROP DATABASE postgres; --"],
  ['backslashes', 'a\\b\\'],
  ['NUL', 'a\u0000b'],
  ['200 kB on one line', 'a'.repeat(200_000)],
  ['200 kB of lines', `${'y'.repeat(99)}\n`.repeat(2000)],
  ['a path outside the workspace', '/etc/passwd'],
  ['/proc/self/environ', '/proc/self/environ'],
  ['../ out of the workspace', '../../../../../etc/passwd'],
  ['unicode, right-to-left override', 'ünïcødé-😀-\u202e-名前'],
  ['blanks', '  \t '],
  ['percent escapes', '%0A::warning::INJECTED%0D']
]

const cluster = await testCluster()
const db = uniqueName('fuzz')
await cluster.createDatabase(db, { hstore: '1.7' })
const url = cluster.url(db)
const workspace = temporaryDirectory('pgxu-fuzz-ws-')
const runnerTemp = temporaryDirectory('pgxu-fuzz-tmp-')
const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, GITHUB_WORKSPACE: workspace, RUNNER_TEMP: runnerTemp }

/**
 * The mode that exercises an input, with companions that keep the run from changing anything:
 * snapshots need WAL archiving this cluster lacks (restore-point), rollbacks get no snapshot,
 * execute asks for the version that is already installed.
 */
function scenario(name: InputName): RawInputs {
  const base: RawInputs = { 'database-url': url }
  if (['snapshot-strategy', 'snapshot-dir', 'restore-point', 'wait-timeout', 'pg-bin-dir'].includes(name)) return { ...base, mode: 'snapshot', 'snapshot-strategy': 'restore-point' }
  if (['rollback-strategy', 'snapshot', 'pgdata', 'stop-command', 'start-command', 'restore-command', 'confirm-data-loss', 'keep-previous', 'terminate-connections'].includes(name)) {
    return { ...base, mode: 'rollback', snapshot: join(runnerTemp, 'no-snapshot', 'manifest.json') }
  }
  if (['fail-on-drift', 'reference-database-url'].includes(name)) return { ...base, mode: 'drift' }
  if (['concurrency', 'canary', 'on-failure', 'max-failures', 'max-retries', 'lock-timeout', 'statement-timeout'].includes(name)) return { ...base, mode: 'execute', extensions: 'hstore@1.7' }
  if (name === 'verify-sql' || name === 'plan') return { ...base, mode: 'verify' }
  return { ...base, mode: 'dry-run', extensions: name === 'extensions' || name === 'manifest' ? '' : 'hstore@1.7' }
}

/** Runs `work` (modes in-process with the action's logger), collecting what it prints to stdout. */
async function capturing<T>(work: () => Promise<T>): Promise<{ value: T; printed: string }> {
  const chunks: string[] = []
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    chunks.push(String(chunk))
    return true
  })
  try {
    const value = await work()
    return { value, printed: chunks.join('') }
  } finally {
    spy.mockRestore()
  }
}

const runAsAction = (raw: RawInputs) => runMode(raw, actionLogger([]), env)

/** Lines a runner would take as a command that this tool did not issue itself through @actions/core. */
function commandLines(printed: string): string[] {
  return printed.split(/\r\n|\r|\n/).filter((line) => (/^\s*::/.test(line) && !/^::(debug|group|endgroup)::/.test(line)) || line.includes('##['))
}

const messages = (result: ModeResult) => [result.error ?? '', ...result.errors.map((e) => e.message), ...result.warnings.map((w) => w.message)]

async function serverState(): Promise<string> {
  const databases = await cluster.query('SELECT datname FROM pg_database ORDER BY 1')
  const roles = await cluster.query('SELECT rolname, rolsuper FROM pg_roles ORDER BY 1')
  const extensions = await cluster.query('SELECT extname, extversion FROM pg_extension ORDER BY 1', db)
  return JSON.stringify({ databases, roles, extensions })
}

describe('fuzz: every input of action.yml with hostile values', () => {
  it('covers exactly the inputs of action.yml', () => {
    const action = parse(readFileSync(join(ROOT, 'action.yml'), 'utf8')) as { inputs: Record<string, unknown> }
    expect([...INPUT_NAMES].sort()).toEqual(Object.keys(action.inputs).sort())
  })

  it('each hostile value ends in INVALID_INPUT naming its input or in a normal result, nothing printed becomes a command, the server is unchanged', async () => {
    const before = await serverState()
    const baselines = new Map<string, ModeResult>()
    const problems: string[] = []
    const started = Date.now()
    for (const name of INPUT_NAMES) {
      const scenarioInputs = scenario(name)
      const key = JSON.stringify(scenarioInputs)
      if (!baselines.has(key)) baselines.set(key, (await capturing(() => runAsAction(scenarioInputs))).value)
      const baseline = baselines.get(key)!
      // The values of one input run side by side; what they print is checked together.
      const { value: results, printed } = await capturing(() =>
        Promise.all(HOSTILE.map(([, value]) => runAsAction(name === 'mode' ? { ...scenarioInputs, mode: value } : { ...scenarioInputs, [name]: value })))
      )
      for (const line of commandLines(printed)) problems.push(`${name}: printed a command line: ${line.slice(0, 200)}`)
      for (const [index, result] of results.entries()) {
        const where = `${name} = ${HOSTILE[index][0]}`
        const codes = result.errors.map((e) => e.code)
        if (codes.includes('UNEXPECTED_ERROR')) problems.push(`${where}: UNEXPECTED_ERROR ${result.error}`)
        if (messages(result).some((m) => /\n\s+at .+:\d+:\d+/.test(m))) problems.push(`${where}: a stack trace in a message`)
        if (messages(result).some((m) => m.length > 10_000)) problems.push(`${where}: a message of more than 10,000 characters`)
        const invalid = result.errors.filter((e) => e.code === 'INVALID_INPUT')
        const ownError = (message: string) => message.includes(`"${name}"`) || (name === 'mode' && message.includes('input "mode"'))
        const inBaseline = (message: string) => baseline.errors.some((e) => e.message === message)
        for (const error of invalid) if (!ownError(error.message) && !inBaseline(error.message)) problems.push(`${where}: INVALID_INPUT not naming the input: ${error.message.slice(0, 300)}`)
      }
    }
    expect(problems).toEqual([])
    expect(await serverState()).toBe(before)
    expect(Date.now() - started).toBeLessThan(60_000)
  }, 120_000)

  it('a sample through dist/index.js, as a runner runs it: no injected command, each refusal names its input', async () => {
    const payload = `x\n${INJECTED.join('\n')}`
    const samples: Array<[InputName, RawInputs]> = [
      ['snapshot-dir', { mode: 'snapshot', 'snapshot-strategy': 'dump' }],
      ['pg-bin-dir', { mode: 'snapshot', 'snapshot-strategy': 'dump' }],
      ['databases', { mode: 'dry-run' }],
      ['verify-sql', { mode: 'verify' }],
      ['restore-point', { mode: 'snapshot' }],
      ['extensions', { mode: 'dry-run' }]
    ]
    for (const [name, inputs] of samples) {
      const run = await runAction({ 'database-url': url, ...inputs, [name]: payload } as Record<string, string>, { env: { GITHUB_WORKSPACE: workspace } })
      const printed = `${run.stdout}\n${run.stderr}`
      expect(printed).not.toMatch(/^\s*::(warning title=INJECTED|error::INJECTED|add-mask::INJECTED)/m)
      expect(printed).not.toContain('##[warning]INJECTED')
      expect(run.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/)
      expect(run.outputs.error ?? '').not.toContain('UNEXPECTED_ERROR')
      // verify-sql may be multi-line SQL: it runs and fails as SQL; the others are refused by name.
      if (name !== 'verify-sql') expect(run.outputs.error).toMatch(new RegExp(`^INVALID_INPUT: .*"${name}"`))
    }
  }, 120_000)
})
