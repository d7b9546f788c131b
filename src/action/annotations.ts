import * as core from '@actions/core'
import { scrub } from '../core/connection.js'
import type { Finding } from '../core/plan.js'
import { inertData } from '../report/log-safety.js'

/** GitHub shows about ten annotations of each kind per step; the rest are in the summary. */
export const ANNOTATION_LIMIT = 10

export interface AnnotationPlace {
  file: string
  startLine: number
}

/** Where a finding points in the repository (the manifest line that asked for it), if anywhere. */
export type Locate = (finding: Finding) => AnnotationPlace | undefined

export function annotate(errors: Finding[], warnings: Finding[], secrets: readonly string[], locate: Locate = () => undefined): void {
  const emit = (findings: Finding[], kind: 'error' | 'warning') => {
    for (const finding of findings.slice(0, ANNOTATION_LIMIT)) {
      const scope = [finding.database, finding.extension].filter(Boolean).join('/')
      const title = scope ? `${finding.code} (${scope})` : finding.code
      const place = finding.source ? { file: finding.source.file, startLine: finding.source.line } : locate(finding)
      core[kind](inertData(scrub(finding.message, secrets)), { title: inertData(title), ...place })
    }
    const rest = findings.length - ANNOTATION_LIMIT
    if (rest > 0) core.notice(`${rest} more ${kind === 'error' ? 'errors' : 'warnings'} are listed in the job summary.`)
  }
  emit(errors, 'error')
  emit(warnings, 'warning')
}
