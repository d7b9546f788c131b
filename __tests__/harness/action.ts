import { readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { runProcess, temporaryDirectory } from './postgres.js'

export const ROOT = resolve(import.meta.dirname, '..', '..')
export const ACTION_BUNDLE = join(ROOT, 'dist', 'index.js')
export const CLI_BUNDLE = join(ROOT, 'dist', 'cli', 'index.js')

export interface ActionRun {
  code: number | null
  stdout: string
  stderr: string
  outputs: Record<string, string>
  summary: string
  /** `::error …::message` and `::warning …::message` lines, as the runner turns them into annotations. */
  annotations: Array<{ kind: string; properties: string; message: string }>
}

/** Parses the GITHUB_OUTPUT file format (`name<<delimiter`, value lines, delimiter). */
export function parseOutputFile(text: string): Record<string, string> {
  const outputs: Record<string, string> = {}
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const match = /^([^<]+)<<(.+)$/.exec(lines[i])
    if (!match) continue
    const [, name, delimiter] = match
    const value: string[] = []
    for (i++; i < lines.length && lines[i] !== delimiter; i++) value.push(lines[i])
    outputs[name] = value.join('\n')
  }
  return outputs
}

/**
 * The environment a GitHub runner gives a step, in `dir`: inputs as INPUT_<NAME> variables with
 * hyphens kept, empty GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files, RUNNER_TEMP.
 */
export function runnerEnvironment(dir: string, inputs: Record<string, string>, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    GITHUB_OUTPUT: join(dir, 'output'),
    GITHUB_STEP_SUMMARY: join(dir, 'summary'),
    RUNNER_TEMP: dir,
    GITHUB_ACTIONS: 'true',
    ...extra
  }
  writeFileSync(env.GITHUB_OUTPUT as string, '')
  writeFileSync(env.GITHUB_STEP_SUMMARY as string, '')
  for (const [name, value] of Object.entries(inputs)) env[`INPUT_${name.toUpperCase()}`] = value
  return env
}

/** Runs the committed bundle exactly as a GitHub runner does (see runnerEnvironment). */
export async function runAction(inputs: Record<string, string>, options: { env?: NodeJS.ProcessEnv; node?: string } = {}): Promise<ActionRun> {
  const dir = temporaryDirectory('pgxu-runner-')
  const env = runnerEnvironment(dir, inputs, options.env)
  const outputFile = env.GITHUB_OUTPUT as string
  const summaryFile = env.GITHUB_STEP_SUMMARY as string
  const result = await runProcess(options.node ?? process.execPath, [ACTION_BUNDLE], { env, cwd: dir })
  const annotations = [...result.stdout.matchAll(/^::(error|warning|notice)( [^:]*)?::(.*)$/gm)].map((m) => ({
    kind: m[1],
    properties: (m[2] ?? '').trim(),
    message: m[3]
  }))
  return {
    ...result,
    outputs: parseOutputFile(readFileSync(outputFile, 'utf8')),
    summary: readFileSync(summaryFile, 'utf8'),
    annotations
  }
}

export async function runCli(args: string[], options: { env?: NodeJS.ProcessEnv } = {}) {
  return runProcess(process.execPath, [CLI_BUNDLE, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...options.env } })
}
