import * as core from '@actions/core'
import { scrub } from '../core/connection.js'
import type { Logger } from '../core/logger.js'
import { INPUT_NAMES, inputSecrets, type RawInputs } from '../inputs.js'
import { runMode } from '../modes/index.js'
import { FAILURE_STATUSES } from '../modes/types.js'
import { renderMarkdown } from '../report/markdown.js'
import { present } from '../report/present.js'
import { annotate } from './annotations.js'
import { setOutputs, writeResultFiles } from './outputs.js'

export function actionLogger(secrets: readonly string[]): Logger {
  return {
    info: (message) => core.info(scrub(message, secrets)),
    warn: (message) => core.info(`⚠ ${scrub(message, secrets)}`),
    debug: (message) => core.debug(scrub(message, secrets)),
    group: (title, work) => core.group(scrub(title, secrets), work)
  }
}

/** The action: read inputs, mask secrets before anything is printed, run the mode, report. */
export async function run(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const raw: RawInputs = Object.fromEntries(INPUT_NAMES.map((name) => [name, core.getInput(name)]))
  const secrets = inputSecrets(raw, env)
  for (const secret of secrets) core.setSecret(secret)

  const result = await runMode(raw, actionLogger(secrets), env)

  const files = writeResultFiles(result, env, secrets)
  setOutputs(result, files, secrets)
  const markdown = scrub(renderMarkdown(present(result)), secrets)
  if (env.GITHUB_STEP_SUMMARY) {
    await core.summary.addRaw(markdown).write()
  } else {
    core.info(markdown)
  }
  annotate(result.errors, result.warnings, secrets)
  if (FAILURE_STATUSES.has(result.status)) {
    core.info(`status: ${result.status}`)
    if (result.errors.length === 0) core.error(scrub(result.error ?? result.status, secrets))
    process.exitCode = 1
  }
}
