import { makeConnector, resolveTarget, scrubValues } from '../core/connection.js'
import { CodedError, errorMessage } from '../core/errors.js'
import { interruptedBy, InterruptedError } from '../core/interrupt.js'
import type { Logger } from '../core/logger.js'
import { describePgError } from '../core/pg-error.js'
import type { Code } from '../core/codes.js'
import { sealPlan, type Finding } from '../core/plan.js'
import { loadManifest, ManifestError, type Manifest } from '../core/manifest.js'
import { parseInputs, type Inputs, type Mode, type RawInputs } from '../inputs.js'
import { drift } from './drift.js'
import { dryRun } from './dry-run.js'
import { execute } from './execute.js'
import { rollback } from './rollback.js'
import { run } from './run.js'
import { snapshot } from './snapshot.js'
import { verify } from './verify.js'
import { FAILURE_STATUS, fails, type ModeHandler, type ModeResult } from './types.js'

/** Every mode has a handler: adding a mode without one does not compile. */
export const MODES: Record<Mode, ModeHandler> = {
  'dry-run': dryRun,
  snapshot,
  execute,
  verify,
  rollback,
  run,
  drift
}

/**
 * Parses inputs, connects and runs the mode. Expected failures (bad input, unreachable server,
 * any CodedError) become a result with the mode's failure status instead of an exception.
 */
export async function runMode(raw: RawInputs, log: Logger, env: NodeJS.ProcessEnv = process.env): Promise<ModeResult> {
  const mode = raw.mode as Mode | undefined
  try {
    const inputs = parseInputs(raw)
    const manifest = readExtensionManifest(inputs, env)
    const target = resolveTarget(inputs.databaseUrl, env)
    // Checked before anything connects, although only drift uses it.
    if (inputs.referenceDatabaseUrl) resolveTarget(inputs.referenceDatabaseUrl, {}, 'reference-database-url')
    const connect = makeConnector(target, inputs.connectTimeout)
    const result = interrupted(inputs.mode, await MODES[inputs.mode]({ inputs, target, connect, log, env, manifest }))
    return manifest ? { ...result, manifest } : result
  } catch (error) {
    if (!(error instanceof CodedError) && error instanceof Error && error.stack) log.debug(error.stack)
    return failureResult(mode && mode in MODES ? mode : undefined, error)
  }
}

/**
 * The result with every secret masked in every string, before anything is serialised. A plan
 * whose text changed (a password in a blocking session's query) is sealed again: its digest
 * vouches for what this tool wrote, which is the masked plan.
 */
export function scrubResult(result: ModeResult, secrets: readonly string[]): ModeResult {
  const scrubbed = scrubValues(result, secrets)
  if (!scrubbed.plan || JSON.stringify(scrubbed.plan) === JSON.stringify(result.plan)) return scrubbed
  return { ...scrubbed, plan: sealPlan(scrubbed.plan) }
}

/** Modes that only read: interrupted, what they read is incomplete and must not pass for a verdict. */
const READ_ONLY: ReadonlySet<Mode> = new Set<Mode>(['dry-run', 'verify', 'drift'])

/**
 * The result of a mode that ran while the process was interrupted. A read-only mode's partial
 * verdict is replaced by the interruption; a changing mode keeps its report (the state each
 * database was left in): failed with INTERRUPTED first, or, when it had finished, as it was.
 */
function interrupted(mode: Mode, result: ModeResult): ModeResult {
  const signal = interruptedBy()
  if (!signal) return result
  const error = new InterruptedError(signal, `running ${mode}`)
  if (READ_ONLY.has(mode)) return failureResult(mode, error)
  if (!fails(result)) {
    return { ...result, warnings: [...result.warnings, { code: error.code, message: `${signal} arrived after ${mode} had finished its work; its result stands` }] }
  }
  const finding = { code: error.code, message: `${error.message}; the report gives the state each database was left in` }
  const others = result.errors.filter((e) => e.code !== 'INTERRUPTED')
  return { ...result, errors: [finding, ...others], error: `${error.code}: ${finding.message}${others.length > 0 && result.error ? `. ${result.error}` : ''}` }
}

/** The `manifest` input: a YAML file in the repository, exclusive with `extensions`. */
export function readExtensionManifest(inputs: Inputs, env: NodeJS.ProcessEnv): Manifest | undefined {
  if (!inputs.manifest) return undefined
  if (inputs.extensions.length > 0) {
    throw new CodedError('INVALID_INPUT', 'inputs "manifest" and "extensions": give one or the other; the manifest already names the extensions')
  }
  return loadManifest(inputs.manifest, undefined, { root: env.GITHUB_WORKSPACE || process.cwd(), env })
}

export function failureResult(mode: Mode | undefined, error: unknown): ModeResult {
  const code: Code = error instanceof CodedError ? error.code : 'UNEXPECTED_ERROR'
  const message = error instanceof CodedError ? error.message : describePgError(error) || errorMessage(error)
  const finding: Finding = { code, message }
  // An invalid manifest is reported problem by problem, each on its line.
  const errors: Finding[] =
    error instanceof ManifestError
      ? error.problems.map((p) => ({ code, message: p.message, ...(p.line ? { source: { file: error.file, line: p.line } } : {}) }))
      : [finding]
  return {
    mode,
    status: mode ? FAILURE_STATUS[mode] : 'failed',
    changed: false,
    errors,
    warnings: [],
    error: `${code}: ${message}`,
    // A drift check that could not run at all is what monitoring must see as unhealthy.
    ...(mode === 'drift' ? { outputs: { health: 'unhealthy' } } : {})
  }
}
