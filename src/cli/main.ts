import { CodedError, errorMessage } from '../core/errors.js'
import { INTERRUPT_EXIT_CODE, interruptedBy } from '../core/interrupt.js'
import { scrub } from '../core/connection.js'
import type { Logger } from '../core/logger.js'
import { inputSecrets } from '../inputs.js'
import { runMode, scrubResult } from '../modes/index.js'
import { fails, type ModeResult } from '../modes/types.js'
import { present } from '../report/present.js'
import { inertText } from '../report/log-safety.js'
import { renderText } from '../report/text.js'
import { parseArguments, usage } from './args.js'

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const

interface Streams {
  stdout: NodeJS.WritableStream & { isTTY?: boolean }
  stderr: NodeJS.WritableStream
}

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

/** The CLI: the same core as the action, human output by default, JSON with --json. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env, streams: Streams = process): Promise<number> {
  let parsed
  try {
    parsed = parseArguments(argv)
  } catch (error) {
    streams.stderr.write(`${inertText(`${error instanceof CodedError ? `${error.code}: ` : ''}${errorMessage(error)}`)}\n\n${usage()}\n`)
    return EXIT.usage
  }
  if (parsed.help || parsed.inputs.mode === undefined) {
    ;(parsed.help ? streams.stdout : streams.stderr).write(`${usage()}\n`)
    return parsed.help ? EXIT.ok : EXIT.usage
  }
  const secrets = inputSecrets(parsed.inputs, env)
  const result = scrubResult(await runMode(parsed.inputs, cliLogger(streams.stderr, secrets), env), secrets)
  if (parsed.json) {
    streams.stdout.write(`${inertText(scrub(JSON.stringify(jsonView(result), null, 2), secrets))}\n`)
  } else {
    const colour = parsed.colour ?? (Boolean(streams.stdout.isTTY) && !env.NO_COLOR)
    streams.stdout.write(inertText(scrub(renderText(present(result), colour), secrets)))
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
