import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { ROOT } from './action.js'
import { temporaryDirectory } from './postgres.js'
import { evaluateCondition, ExpressionError, interpolate, type ExpressionContext, type JobStatus, type Value } from './workflow-expressions.js'

/*
 * A small GitHub runner: runs one job of a workflow step by step, as a hosted runner does.
 * Steps that use a local JavaScript action start `node <runs.main>` with the inputs as
 * INPUT_<NAME> variables (action.yml defaults filled in), a fresh GITHUB_OUTPUT, GITHUB_ENV and
 * GITHUB_STEP_SUMMARY per step, RUNNER_TEMP shared by the job and the workspace as working
 * directory; `run:` steps run with `bash --noprofile --norc -eo pipefail`; other actions
 * (checkout, upload-artifact) are recorded and not run. Linux's limits are enforced before a
 * process starts: one environment string (NAME=value and its NUL) over 128 KiB is E2BIG. The job's
 * step outputs together may not exceed 1 MiB.
 */

/** Linux MAX_ARG_STRLEN: 32 pages of 4 KiB, counting the terminating NUL. */
export const MAX_ENV_STRING = 131072
/** GitHub's limit on the outputs of one job. */
export const MAX_JOB_OUTPUTS = 1024 * 1024
/** GitHub's limit on one step's summary; beyond it the summary is dropped with an error. */
export const MAX_STEP_SUMMARY = 1024 * 1024

/** Our action, as the workflows in the README and examples/ reference it. */
export const OUR_ACTION = 'our-org/pg-extension-upgrade@v1'

export interface Annotation {
  kind: 'error' | 'warning' | 'notice'
  properties: string
  message: string
}

export interface StepResult {
  index: number
  id: string | undefined
  name: string
  kind: 'action' | 'run' | 'external'
  /** Whether a process was started (external actions never are; a step refused with E2BIG neither). */
  ran: boolean
  /** ran · skipped (its if was false) · skipped-external (an action this runner does not run) · not-started (E2BIG, an expression error). */
  status: 'ran' | 'skipped' | 'skipped-external' | 'not-started'
  outcome: 'success' | 'failure' | 'skipped'
  conclusion: 'success' | 'failure' | 'skipped'
  exitCode: number | null
  /** Wall time of the process, 0 when none was started. */
  durationMs: number
  /** The evaluated `with:` of an action step, defaults included. */
  inputs: Record<string, string>
  outputs: Record<string, string>
  summary: string
  annotations: Annotation[]
  stdout: string
  stderr: string
  /** Why the runner failed the step itself: an expression error, E2BIG, the output limit. */
  error?: string
}

export interface JobResult {
  job: string
  name: string
  /** success · failure · skipped (the job's if was false). */
  conclusion: 'success' | 'failure' | 'skipped'
  steps: StepResult[]
  /** Bytes of all step outputs (names and values). */
  outputBytes: number
  runnerTemp: string
  /** A step by id, or by name for steps without id. */
  step(idOrName: string): StepResult
}

export interface WorkflowRunOptions {
  /** The workflow, as YAML text. */
  workflow: string
  /** Which job; default the only one. */
  job?: string
  /** GITHUB_WORKSPACE and the working directory of every step. */
  workspace: string
  event?: { name: string; payload?: Record<string, unknown> }
  /** workflow_dispatch inputs; the workflow's defaults fill the rest. */
  inputs?: Record<string, string | boolean | number>
  secrets?: Record<string, string>
  vars?: Record<string, string>
  github?: { token?: string; repository?: string; runId?: string; runAttempt?: string; serverUrl?: string; apiUrl?: string; sha?: string; ref?: string }
  /** Variables every process gets on top of the runner's own (a PATH with stand-in tools, …). */
  env?: Record<string, string>
  /** `uses:` references run from a local directory holding action.yml (default: ours, from this repository). */
  actions?: Record<string, string>
  /**
   * Evaluated input values replaced before a step starts ({ '/var/lib/x': '/tmp/y' }): for paths
   * that a workflow hard-codes and this machine cannot provide. Prefer none.
   */
  substitute?: Record<string, string>
}

type Scalar = string
interface StepDefinition {
  id?: Scalar
  name?: Scalar
  if?: Scalar
  uses?: Scalar
  run?: Scalar
  shell?: Scalar
  with?: Record<string, Scalar>
  env?: Record<string, Scalar>
  'working-directory'?: Scalar
  'continue-on-error'?: Scalar
  'timeout-minutes'?: Scalar
}
interface JobDefinition {
  name?: Scalar
  if?: Scalar
  env?: Record<string, Scalar>
  steps: StepDefinition[]
}
interface WorkflowDefinition {
  name?: Scalar
  on?: unknown
  env?: Record<string, Scalar>
  jobs: Record<string, JobDefinition>
}
interface ActionDefinition {
  inputs?: Record<string, { default?: Scalar } | null>
  runs: { using: string; main: string }
}

/** YAML read as a runner reads a workflow: every scalar a string (`8`, `true`, `1.10` as written). */
const readYaml = <T>(text: string): T => parseYaml(text, { schema: 'failsafe' }) as T

let runCounter = 0

/** Parses `::error file=x,line=1::message` workflow commands from a step's stdout. */
export function workflowCommands(stdout: string): { annotations: Annotation[]; masks: string[] } {
  const annotations = [...stdout.matchAll(/^::(error|warning|notice)( [^:]*)?::(.*)$/gm)].map((m) => ({ kind: m[1] as Annotation['kind'], properties: (m[2] ?? '').trim(), message: m[3] }))
  const masks = [...stdout.matchAll(/^::add-mask::(.*)$/gm)].map((m) => m[1])
  return { annotations, masks }
}

/** Why Linux would refuse to start a process with this environment, or undefined. */
export function environmentTooBig(env: Record<string, string>): string | undefined {
  for (const [name, value] of Object.entries(env)) {
    const bytes = Buffer.byteLength(`${name}=${value}`) + 1
    if (bytes > MAX_ENV_STRING) return `E2BIG: Argument list too long (the environment variable ${name} is ${bytes} bytes; Linux allows ${MAX_ENV_STRING} per variable)`
  }
  return undefined
}

/** Parses a GITHUB_OUTPUT or GITHUB_ENV file: `NAME=value` lines and `NAME<<delimiter` blocks. */
export function parseFileCommand(text: string): Record<string, string> {
  const env: Record<string, string> = {}
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const heredoc = /^([^=<]+)<<(.+)$/.exec(lines[i])
    if (heredoc) {
      const value: string[] = []
      for (i++; i < lines.length && lines[i] !== heredoc[2]; i++) value.push(lines[i])
      env[heredoc[1]] = value.join('\n')
      continue
    }
    const pair = /^([^=]+)=(.*)$/.exec(lines[i])
    if (pair) env[pair[1]] = pair[2]
  }
  return env
}

function start(command: string, args: string[], env: Record<string, string>, cwd: string, timeoutMs: number | undefined): Promise<{ code: number | null; stdout: string; stderr: string; error?: string }> {
  return new Promise((done) => {
    const child = spawn(command, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGTERM' })
    let stdout = ''
    let stderr = ''
    let error: string | undefined
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    child.on('error', (e) => (error = e.message))
    child.on('close', (code) => done({ code, stdout, stderr, error }))
  })
}

function workflowDispatchInputs(workflow: WorkflowDefinition, given: Record<string, string | boolean | number>): Record<string, Value> {
  const on = workflow.on
  const declared =
    on && typeof on === 'object' && !Array.isArray(on) ? ((on as Record<string, { inputs?: Record<string, { type?: string; default?: string }> } | null>).workflow_dispatch?.inputs ?? {}) : {}
  const inputs: Record<string, Value> = {}
  for (const [name, spec] of Object.entries(declared)) {
    if (!(name in given) && spec?.default === undefined) continue
    const raw = name in given ? String(given[name]) : (spec?.default ?? '')
    inputs[name] = spec?.type === 'boolean' ? raw === 'true' : spec?.type === 'number' ? Number(raw) : raw
  }
  for (const [name, value] of Object.entries(given)) if (!(name in inputs)) inputs[name] = value
  return inputs
}

const stringMap = (map: Record<string, Scalar> | undefined): Record<string, string> => Object.fromEntries(Object.entries(map ?? {}).map(([k, v]) => [k, v ?? '']))

/** Runs one job of a workflow to its end and says what each step did. */
export async function runWorkflow(options: WorkflowRunOptions): Promise<JobResult> {
  const workflow = readYaml<WorkflowDefinition>(options.workflow)
  const jobIds = Object.keys(workflow.jobs ?? {})
  const jobId = options.job ?? (jobIds.length === 1 ? jobIds[0] : undefined)
  if (!jobId || !workflow.jobs[jobId]) throw new Error(`pick a job: ${jobIds.join(', ')}`)
  const job = workflow.jobs[jobId]
  const actions = options.actions ?? { [OUR_ACTION]: ROOT }

  const root = temporaryDirectory('pgxu-workflow-')
  const runnerTemp = join(root, 'temp')
  const commandsDir = join(root, 'file-commands')
  mkdirSync(runnerTemp)
  mkdirSync(commandsDir)
  const eventName = options.event?.name ?? 'workflow_dispatch'
  const inputs = workflowDispatchInputs(workflow, options.inputs ?? {})
  const payload = options.event?.payload ?? (eventName === 'workflow_dispatch' ? { inputs } : {})
  const eventPath = join(root, 'event.json')
  writeFileSync(eventPath, JSON.stringify(payload))

  const g = options.github ?? {}
  const github = {
    token: g.token ?? '',
    repository: g.repository ?? 'our-org/app',
    repository_owner: (g.repository ?? 'our-org/app').split('/')[0],
    run_id: g.runId ?? `${process.pid}${++runCounter}${Date.now() % 100000}`,
    run_number: '1',
    run_attempt: g.runAttempt ?? '1',
    server_url: g.serverUrl ?? 'https://github.com',
    api_url: g.apiUrl ?? 'https://api.github.com',
    sha: g.sha ?? '0'.repeat(40),
    ref: g.ref ?? 'refs/heads/main',
    event_name: eventName,
    event: payload as Value,
    workspace: options.workspace,
    workflow: workflow.name ?? 'workflow',
    job: jobId,
    actor: 'tester'
  }
  const runnerEnv: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? root,
    CI: 'true',
    GITHUB_ACTIONS: 'true',
    GITHUB_WORKSPACE: options.workspace,
    GITHUB_EVENT_NAME: eventName,
    GITHUB_EVENT_PATH: eventPath,
    GITHUB_REPOSITORY: github.repository,
    GITHUB_REPOSITORY_OWNER: github.repository_owner,
    GITHUB_RUN_ID: github.run_id,
    GITHUB_RUN_NUMBER: github.run_number,
    GITHUB_RUN_ATTEMPT: github.run_attempt,
    GITHUB_SERVER_URL: github.server_url,
    GITHUB_API_URL: github.api_url,
    GITHUB_SHA: github.sha,
    GITHUB_REF: github.ref,
    GITHUB_WORKFLOW: github.workflow,
    GITHUB_JOB: jobId,
    GITHUB_ACTOR: github.actor,
    RUNNER_OS: 'Linux',
    RUNNER_ARCH: 'X64',
    RUNNER_TEMP: runnerTemp,
    ...options.env
  }

  const steps: StepResult[] = []
  const stepsContext: Record<string, Value> = {}
  const status: JobStatus = { failed: false, cancelled: false }
  const exported: Record<string, string> = {}
  let outputBytes = 0
  const context = (env: Record<string, string>): ExpressionContext => ({
    contexts: {
      github,
      env,
      vars: options.vars ?? {},
      secrets: { GITHUB_TOKEN: github.token, ...options.secrets },
      inputs,
      steps: stepsContext,
      runner: { os: 'Linux', arch: 'X64', temp: runnerTemp, name: 'workflow-runner' },
      job: { status: status.failed ? 'failure' : 'success' }
    },
    status
  })
  const evaluateMap = (map: Record<string, Scalar> | undefined, env: Record<string, string>) => {
    const out: Record<string, string> = {}
    for (const [name, value] of Object.entries(stringMap(map))) out[name] = interpolate(value, context(env))
    return out
  }

  let jobEnv: Record<string, string>
  let jobName: string
  let runs: boolean
  try {
    jobEnv = evaluateMap(workflow.env, {})
    jobEnv = { ...jobEnv, ...evaluateMap(job.env, jobEnv) }
    jobName = job.name === undefined ? jobId : interpolate(job.name, context(jobEnv))
    runs = evaluateCondition(job.if, context(jobEnv))
  } catch (error) {
    throw new Error(`the job cannot start: ${(error as Error).message}`)
  }
  const result = (conclusion: JobResult['conclusion']): JobResult => ({
    job: jobId,
    name: jobName,
    conclusion,
    steps,
    outputBytes,
    runnerTemp,
    step(idOrName: string) {
      const found = steps.find((s) => s.id === idOrName) ?? steps.find((s) => s.name === idOrName)
      if (!found) throw new Error(`no step ${idOrName}: ${steps.map((s) => s.id ?? s.name).join(', ')}`)
      return found
    }
  })
  if (!runs) return result('skipped')

  for (const [index, definition] of (job.steps ?? []).entries()) {
    const kind: StepResult['kind'] = definition.run !== undefined ? 'run' : definition.uses && actions[definition.uses] ? 'action' : 'external'
    const step: StepResult = {
      index,
      id: definition.id,
      name: definition.name ?? (definition.run !== undefined ? `Run ${definition.run.split('\n')[0]}` : `Run ${definition.uses}`),
      kind,
      ran: false,
      status: 'skipped',
      outcome: 'skipped',
      conclusion: 'skipped',
      exitCode: null,
      durationMs: 0,
      inputs: {},
      outputs: {},
      summary: '',
      annotations: [],
      stdout: '',
      stderr: ''
    }
    steps.push(step)
    const baseEnv = { ...jobEnv, ...exported }
    const fail = (message: string) => {
      step.error = message
      step.outcome = 'failure'
    }
    try {
      if (definition.name !== undefined) step.name = interpolate(definition.name, context(baseEnv))
      if (evaluateCondition(definition.if, context(baseEnv))) {
        const stepEnv = { ...baseEnv, ...evaluateMap(definition.env, baseEnv) }
        await runStep(definition, step, stepEnv)
      }
    } catch (error) {
      if (!(error instanceof ExpressionError)) throw error
      step.status = 'not-started'
      fail(`expression: ${error.message}`)
    }
    step.conclusion = step.outcome === 'failure' && definition['continue-on-error'] === 'true' ? 'success' : step.outcome
    if (step.conclusion === 'failure') status.failed = true
    if (definition.id) stepsContext[definition.id] = { outputs: step.outputs, outcome: step.outcome, conclusion: step.conclusion }
  }
  return result(status.failed ? 'failure' : 'success')

  async function runStep(definition: StepDefinition, step: StepResult, stepEnv: Record<string, string>): Promise<void> {
    const n = String(step.index).padStart(2, '0')
    const files = {
      GITHUB_OUTPUT: join(commandsDir, `${n}-output`),
      GITHUB_ENV: join(commandsDir, `${n}-env`),
      GITHUB_PATH: join(commandsDir, `${n}-path`),
      GITHUB_STEP_SUMMARY: join(commandsDir, `${n}-summary`)
    }
    for (const file of Object.values(files)) writeFileSync(file, '')
    const cwd = definition['working-directory'] ? resolve(options.workspace, interpolate(definition['working-directory'], context(stepEnv))) : options.workspace
    const timeoutMs = definition['timeout-minutes'] ? Number(definition['timeout-minutes']) * 60_000 : undefined
    const processEnv: Record<string, string> = { ...runnerEnv, ...stepEnv, ...files, GITHUB_ACTION: definition.id ?? `__step${step.index}` }

    let command: string
    let args: string[]
    if (step.kind === 'run') {
      const shell = definition.shell ?? 'bash'
      if (shell !== 'bash') throw new ExpressionError(`shell ${shell} is not supported by this runner`)
      const script = join(commandsDir, `${n}-script.sh`)
      writeFileSync(script, interpolate(definition.run ?? '', context(stepEnv)))
      command = 'bash'
      args = ['--noprofile', '--norc', '-eo', 'pipefail', script]
    } else {
      step.inputs = actionInputs(definition, stepEnv)
      if (step.kind === 'external') {
        step.status = 'skipped-external'
        step.outcome = 'success'
        return
      }
      const action = readAction(actions[definition.uses as string])
      for (const [name, value] of Object.entries(step.inputs)) processEnv[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] = value
      command = process.execPath
      args = [join(actions[definition.uses as string], action.runs.main)]
    }

    const tooBig = environmentTooBig(processEnv)
    if (tooBig) {
      step.status = 'not-started'
      step.error = tooBig
      step.outcome = 'failure'
      return
    }
    const started = Date.now()
    const outcome = await start(command, args, processEnv, cwd, timeoutMs)
    step.durationMs = Date.now() - started
    step.ran = true
    step.status = 'ran'
    step.exitCode = outcome.code
    step.stdout = outcome.stdout
    step.stderr = outcome.stderr
    step.annotations = workflowCommands(outcome.stdout).annotations
    step.outputs = existsSync(files.GITHUB_OUTPUT) ? parseFileCommand(readFileSync(files.GITHUB_OUTPUT, 'utf8')) : {}
    step.summary = existsSync(files.GITHUB_STEP_SUMMARY) ? readFileSync(files.GITHUB_STEP_SUMMARY, 'utf8') : ''
    Object.assign(exported, parseFileCommand(readFileSync(files.GITHUB_ENV, 'utf8')))
    const paths = readFileSync(files.GITHUB_PATH, 'utf8').split('\n').filter(Boolean)
    if (paths.length > 0) runnerEnv.PATH = [...paths.reverse(), runnerEnv.PATH].join(':')
    if (Buffer.byteLength(step.summary) > MAX_STEP_SUMMARY) {
      step.annotations.push({ kind: 'error', properties: '', message: `$GITHUB_STEP_SUMMARY upload aborted, supports content up to a size of 1024k, got ${Math.ceil(Buffer.byteLength(step.summary) / 1024)}k.` })
      step.summary = ''
    }
    outputBytes += Object.entries(step.outputs).reduce((sum, [name, value]) => sum + Buffer.byteLength(name) + Buffer.byteLength(value), 0)
    if (outcome.error) {
      step.error = outcome.error
      step.outcome = 'failure'
    } else if (outputBytes > MAX_JOB_OUTPUTS) {
      step.error = `the job's outputs are ${outputBytes} bytes, over GitHub's limit of ${MAX_JOB_OUTPUTS}`
      step.outcome = 'failure'
    } else step.outcome = outcome.code === 0 ? 'success' : 'failure'
  }

  /** `with:` evaluated, unknown names kept (a runner only warns), action.yml defaults for the rest. */
  function actionInputs(definition: StepDefinition, stepEnv: Record<string, string>): Record<string, string> {
    const given = Object.fromEntries(Object.entries(evaluateMap(definition.with, stepEnv)).map(([k, v]) => [k, options.substitute?.[v] ?? v]))
    const directory = definition.uses ? actions[definition.uses] : undefined
    if (!directory) return given
    const declared = readAction(directory).inputs ?? {}
    const withDefaults: Record<string, string> = {}
    for (const [name, spec] of Object.entries(declared)) {
      if (spec?.default !== undefined) withDefaults[name] = interpolate(spec.default, context(stepEnv))
    }
    return { ...withDefaults, ...given }
  }
}

const actionCache = new Map<string, ActionDefinition>()
function readAction(directory: string): ActionDefinition {
  let action = actionCache.get(directory)
  if (!action) {
    action = readYaml<ActionDefinition>(readFileSync(join(directory, 'action.yml'), 'utf8'))
    if (!/^node\d+$/.test(action.runs.using)) throw new Error(`${directory}/action.yml: runs.using ${action.runs.using} is not a JavaScript action`)
    actionCache.set(directory, action)
  }
  return action
}

/** The first ```yaml block with `jobs:` under a README heading: the workflow the README teaches. */
export function readmeWorkflow(readme: string, heading: string): string {
  const start = readme.indexOf(`\n${heading}\n`)
  if (start < 0) throw new Error(`the README has no section ${heading}`)
  const next = readme.indexOf('\n## ', start + heading.length + 2)
  const section = readme.slice(start, next < 0 ? undefined : next)
  for (const match of section.matchAll(/```ya?ml\n([\s\S]*?)```/g)) if (/^jobs:/m.test(match[1])) return match[1]
  throw new Error(`no \`\`\`yaml block with jobs: under ${heading}`)
}
