import { writeFileSync } from 'node:fs'
import { CodedError, errorMessage } from '../core/errors.js'
import { INTERRUPT_EXIT_CODE, interruptedBy, interruption } from '../core/interrupt.js'
import { scrub } from '../core/connection.js'
import type { Logger } from '../core/logger.js'
import { loadPlan } from '../core/plan-input.js'
import { readManifest } from '../core/recovery/manifest.js'
import { inputSecrets, type Mode, type RawInputs } from '../inputs.js'
import { runMode, scrubResult } from '../modes/index.js'
import { fails, type ModeResult } from '../modes/types.js'
import { present } from '../report/present.js'
import { inertText } from '../report/log-safety.js'
import { renderText } from '../report/text.js'
import { parseArguments, usage, type CliArguments } from './args.js'
import { confirm, isInteractive, planChanges, snapshotLines, type Terminal } from './confirm.js'
import { VERSION } from './descriptions.js'
import { ASKS_FIRST } from './modes.js'

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const

export type Streams = Terminal

export function cliLogger(stderr: NodeJS.WritableStream, secrets: readonly string[]): Logger {
  let depth = 0
  // The CLI also runs in workflow steps, whose log reads stderr for commands as well.
  const line = (prefix: string, message: string) => stderr.write(`${inertText(`${'  '.repeat(depth)}${prefix}${scrub(message, secrets)}`)}\n`)
  return {
    info: (message) => line('', message),
    warn: (message) => line('⚠ ', message),
    debug: (message) => {
      if (process.env.PG_EXTENSION_UPGRADE_DEBUG) line('· ', message)
    },
    group: async (title, work) => {
      line('▸ ', title)
      depth++
      try {
        return await work()
      } finally {
        depth--
      }
    }
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
  return Buffer.concat(chunks).toString('utf8')
}

/** The CLI: the same core as the action, human output by default, JSON with --json. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env, streams: Streams = process): Promise<number> {
  let parsed: CliArguments
  try {
    parsed = parseArguments(argv)
  } catch (error) {
    streams.stderr.write(`${inertText(`${error instanceof CodedError ? `${error.code}: ` : ''}${errorMessage(error)}`)}\nRun "pg-extension-upgrade --help" for the modes and options.\n`)
    return EXIT.usage
  }
  const mode = parsed.inputs.mode as Mode | undefined
  if (parsed.version) {
    streams.stdout.write(`pg-extension-upgrade ${VERSION}\n`)
    return EXIT.ok
  }
  if (parsed.help || mode === undefined) {
    ;(parsed.help ? streams.stdout : streams.stderr).write(`${usage(mode)}\n`)
    return parsed.help ? EXIT.ok : EXIT.usage
  }
  for (const name of parsed.unused) streams.stderr.write(`⚠ --${name} is not used by ${mode} (see pg-extension-upgrade ${mode} --help)\n`)

  let inputs: RawInputs = { ...parsed.inputs }
  // A URL in the environment keeps the password out of the command line (and out of `ps`).
  if (inputs['database-url'] === undefined && env.DATABASE_URL) inputs['database-url'] = env.DATABASE_URL
  const secrets = inputSecrets(inputs, env)
  const log = cliLogger(streams.stderr, secrets)
  const render = (result: ModeResult) => writeResult(scrubResult(result, secrets), parsed, env, streams, secrets)

  if (inputs.plan?.trim() === '-') {
    if (streams.stdin.isTTY) {
      streams.stderr.write('INVALID_INPUT: --plan -: reads the plan from stdin, which is a terminal; pipe it in (… | pg-extension-upgrade execute --plan -)\n')
      return EXIT.usage
    }
    inputs.plan = await readAll(streams.stdin)
    if (!inputs.plan.trim()) {
      streams.stderr.write('INVALID_INPUT: --plan -: stdin was empty; pipe in the output of dry-run --json or --out\n')
      return EXIT.usage
    }
  }

  if (ASKS_FIRST.includes(mode) && !parsed.yes && isInteractive(streams)) {
    const asked = await askFirst(mode, inputs, log, env, streams)
    if (asked.result) return render(asked.result)
    if (!asked.proceed) {
      streams.stderr.write('\nCancelled: nothing was changed.\n')
      const signal = interruptedBy()
      return signal ? INTERRUPT_EXIT_CODE[signal] : EXIT.failed
    }
    inputs = asked.inputs
  }

  return render(await runMode(inputs, log, env))
}

type Asked = { proceed: boolean; inputs: RawInputs; result?: ModeResult }

/**
 * Shows what the mode will change and asks. execute and run show the changes of a dry-run (execute
 * then applies exactly the plan that was shown); rollback shows the snapshot and its databases.
 * When nothing would change, or the dry-run is blocked or failed, its result is the answer.
 */
async function askFirst(mode: Mode, inputs: RawInputs, log: Logger, env: NodeJS.ProcessEnv, streams: Streams): Promise<Asked> {
  const lines: string[] = []
  let next = inputs
  if (mode === 'rollback') {
    try {
      if (inputs.snapshot) {
        const { manifest, path } = readManifest(inputs.snapshot)
        lines.push(...snapshotLines(manifest, path))
      } else if (inputs.plan) {
        lines.push('No snapshot: downgrade scripts take these databases back to their planned starting versions:', ...planChanges(loadPlan(inputs.plan, env)))
      }
    } catch {
      // The rollback reports the same problem, before it changes anything.
      return { proceed: true, inputs }
    }
    lines.unshift('rollback will restore:')
  } else {
    let plan
    if (mode === 'execute' && inputs.plan) {
      try {
        plan = loadPlan(inputs.plan, env)
      } catch {
        return { proceed: true, inputs }
      }
    } else {
      const preview = await runMode({ ...inputs, mode: 'dry-run', plan: undefined }, log, env)
      if (!preview.plan || preview.status !== 'dry_run_approved') return { proceed: false, inputs, result: preview }
      plan = preview.plan
      if (mode === 'execute') next = { ...inputs, plan: JSON.stringify(plan), extensions: undefined, manifest: undefined }
    }
    const changes = planChanges(plan)
    if (changes.length === 0) return { proceed: true, inputs: next }
    lines.push(`${mode} will change ${changes.length} database(s):`, ...changes)
  }
  streams.stderr.write(`${lines.join('\n')}\n`)
  return { proceed: await confirm('Proceed?', streams.stdin, streams.stderr, interruption), inputs: next }
}

function writeResult(result: ModeResult, parsed: CliArguments, env: NodeJS.ProcessEnv, streams: Streams, secrets: readonly string[]): number {
  if (parsed.out && result.plan) {
    try {
      writeFileSync(parsed.out, `${scrub(JSON.stringify(result.plan, null, 2), secrets)}\n`)
    } catch (error) {
      streams.stderr.write(`--out ${parsed.out}: ${errorMessage(error)}\n`)
      return EXIT.failed
    }
  }
  if (parsed.json) {
    streams.stdout.write(`${inertText(scrub(JSON.stringify(jsonView(result), null, 2), secrets))}\n`)
  } else {
    const colour = parsed.colour ?? (Boolean(streams.stdout.isTTY) && !env.NO_COLOR)
    streams.stdout.write(inertText(scrub(renderText(present(result, 'cli'), colour), secrets)))
  }
  const signal = interruptedBy()
  if (signal) return INTERRUPT_EXIT_CODE[signal]
  if (result.errors.some((e) => e.code === 'INVALID_INPUT')) return EXIT.usage
  return fails(result) ? EXIT.failed : EXIT.ok
}

/** What --json prints: the same fields the action sets as outputs. */
function jsonView(result: ModeResult) {
  return {
    status: result.status,
    changed: result.changed,
    ...(result.plan ? { plan: result.plan } : {}),
    ...(result.report !== undefined ? { report: result.report } : {}),
    ...result.outputs,
    ...(result.error ? { error: result.error } : {})
  }
}
