import * as core from '@actions/core'
import { scrub, secretForms } from '../core/connection.js'
import { INTERRUPT_EXIT_CODE, interruptedBy } from '../core/interrupt.js'
import type { Logger } from '../core/logger.js'
import { INPUT_NAMES, inputSecrets, type RawInputs } from '../inputs.js'
import { runMode, scrubResult } from '../modes/index.js'
import { fails } from '../modes/types.js'
import { inertData, inertLine, inertText } from '../report/log-safety.js'
import { renderMarkdown } from '../report/markdown.js'
import { present } from '../report/present.js'
import { locateFinding } from '../core/manifest.js'
import { annotate } from './annotations.js'
import { upsertPlanComment } from './pr-comment.js'
import { setOutputs, writeResultFiles } from './outputs.js'

/**
 * The log: every message scrubbed of secrets and made inert, so that no value in it (a path, a
 * database name, a server's error) can become a workflow command. @actions/core escapes the data
 * of its own commands (debug, group, annotations); core.info prints as is.
 */
export function actionLogger(secrets: readonly string[]): Logger {
  return {
    info: (message) => core.info(inertText(scrub(message, secrets))),
    warn: (message) => core.info(inertText(`⚠ ${scrub(message, secrets)}`)),
    debug: (message) => core.debug(scrub(message, secrets)),
    group: (title, work) => core.group(inertLine(scrub(title, secrets)), work)
  }
}

/** Where this action's codes are explained: its own docs/reference.md, at the ref the workflow uses. */
function codesUrl(env: NodeJS.ProcessEnv): string | undefined {
  const repository = env.GITHUB_ACTION_REPOSITORY
  if (!repository) return undefined
  return `${env.GITHUB_SERVER_URL || 'https://github.com'}/${repository}/blob/${env.GITHUB_ACTION_REF || 'HEAD'}/docs/reference.md#codes`
}

/** The action: read inputs, mask secrets before anything is printed, run the mode, report. */
export async function run(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const raw: RawInputs = Object.fromEntries(INPUT_NAMES.map((name) => [name, core.getInput(name)]))
  const secrets = inputSecrets(raw, env)
  for (const form of new Set(secrets.flatMap(secretForms))) core.setSecret(form)

  // Scrubbed value by value before anything is serialised: JSON would escape a password with
  // `"` or `\` into a form the text scrub of the outputs no longer recognises.
  const result = scrubResult(await runMode(raw, actionLogger(secrets), env), secrets)

  const files = writeResultFiles(result, env, secrets)
  setOutputs(result, files, secrets)
  const markdown = scrub(renderMarkdown(present(result, 'action', codesUrl(env))), secrets)
  if (env.GITHUB_STEP_SUMMARY) {
    await core.summary.addRaw(markdown).write()
  } else {
    core.info(inertText(markdown))
  }
  // The raw inputs, because parsing may have failed: a broken manifest on a PR still gets its comment.
  if (raw.mode === 'dry-run' || raw.mode === 'run') {
    const enabled = (raw['comment-on-pr'] || 'true').trim().toLowerCase() !== 'false'
    await upsertPlanComment({ markdown, token: raw['github-token'] ?? '', enabled, secrets, env })
  }
  const manifest = result.manifest
  annotate(result.errors, result.warnings, secrets, manifest ? (finding) => locateFinding(manifest, finding) : undefined)
  if (fails(result)) {
    core.info(`status: ${result.status}`)
    if (result.errors.length === 0) core.error(inertData(scrub(result.error ?? result.status, secrets)))
    process.exitCode = 1
  }
  const signal = interruptedBy()
  if (signal) process.exitCode = INTERRUPT_EXIT_CODE[signal]
}
