import { performance } from 'node:perf_hooks'
import type { Code } from '../codes.js'
import { formatDuration } from '../duration.js'
import { CodedError, errorMessage } from '../errors.js'
import type { Logger } from '../logger.js'
import { throwIfInterrupted } from '../interrupt.js'
import type { Finding } from '../plan.js'

/** One step of a snapshot or a rollback, as the report shows it. */
export interface PhaseRecord {
  name: string
  durationMs: number
  ok: boolean
  detail?: string
}

/**
 * Times the phases of a snapshot or rollback and prints a line when each starts and ends, so the
 * log reads as progress and the report carries every duration.
 */
export class PhaseClock {
  readonly phases: PhaseRecord[] = []

  constructor(private readonly log: Logger) {}

  /** Runs one phase; an interrupted process starts none (the error is recorded as the phase's failure). */
  async run<T>(name: string, work: (note: (detail: string) => void) => Promise<T>): Promise<T> {
    const started = performance.now()
    let detail: string | undefined
    this.log.info(`▶ ${name}`)
    try {
      throwIfInterrupted(`about to ${name}`)
      const value = await work((text) => {
        detail = text
      })
      const durationMs = performance.now() - started
      this.phases.push({ name, durationMs, ok: true, ...(detail ? { detail } : {}) })
      this.log.info(`✓ ${name} (${formatDuration(durationMs)})${detail ? `: ${detail}` : ''}`)
      return value
    } catch (error) {
      const durationMs = performance.now() - started
      const message = errorMessage(error)
      this.phases.push({ name, durationMs, ok: false, detail: message })
      this.log.warn(`✗ ${name} failed after ${formatDuration(durationMs)}: ${message}`)
      throw error
    }
  }

  /** Records a phase that was timed elsewhere (concurrent work). */
  record(name: string, durationMs: number, ok: boolean, detail?: string): void {
    this.phases.push({ name, durationMs, ok, ...(detail ? { detail } : {}) })
  }

  get totalMs(): number {
    return this.phases.reduce((sum, phase) => sum + phase.durationMs, 0)
  }
}

/**
 * Preconditions that failed, each with its own code and message. Thrown before anything moves,
 * so the message can promise that nothing was changed.
 */
export class ChecksFailed extends CodedError {
  constructor(readonly failures: Finding[]) {
    super(failures[0]?.code ?? 'INVALID_INPUT', failures.map((f) => `${f.code}: ${f.message}`).join('; '))
    this.name = 'ChecksFailed'
  }
}

/** Collects failed checks; `throwIfAny` raises them together. */
export class CheckList {
  readonly failures: Finding[] = []
  readonly warnings: Finding[] = []

  fail(code: Code, message: string, scope: { database?: string; extension?: string } = {}): void {
    this.failures.push({ code, message, ...scope })
  }

  warn(code: Code, message: string, scope: { database?: string; extension?: string } = {}): void {
    this.warnings.push({ code, message, ...scope })
  }

  /** Runs a check that may throw a CodedError; the error becomes a failure instead. */
  async attempt<T>(work: () => Promise<T>, scope: { database?: string } = {}): Promise<T | undefined> {
    try {
      return await work()
    } catch (error) {
      if (error instanceof ChecksFailed) {
        this.failures.push(...error.failures)
        return undefined
      }
      if (error instanceof CodedError) {
        this.fail(error.code, error.message, scope)
        return undefined
      }
      throw error
    }
  }

  throwIfAny(): void {
    if (this.failures.length > 0) throw new ChecksFailed(this.failures)
  }
}

/** Findings of an error: the failures of ChecksFailed, or one finding of a CodedError. */
export function findingsOf(error: unknown, fallback: Code, scope: { database?: string } = {}): Finding[] {
  if (error instanceof ChecksFailed) return error.failures
  if (error instanceof CodedError) return [{ code: error.code, message: error.message, ...scope }]
  return [{ code: fallback, message: errorMessage(error), ...scope }]
}
