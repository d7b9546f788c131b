import { CodedError } from './errors.js'

/**
 * The process-wide interruption. A runner cancelling a job sends SIGINT or SIGTERM and kills the
 * process seconds later, so the adapters turn those signals into this abort: long work checks it
 * between steps, child programs are killed with it, in-flight statements are cancelled with it,
 * and the mode still reports the state it reached.
 */
const controller = new AbortController()

export const interruption: AbortSignal = controller.signal

export type InterruptSignal = 'SIGINT' | 'SIGTERM'

/** The exit code of a process stopped by a signal, as shells report it (128 + signal number). */
export const INTERRUPT_EXIT_CODE: Record<InterruptSignal, number> = { SIGINT: 130, SIGTERM: 143 }

export function interrupt(signal: InterruptSignal): void {
  if (!controller.signal.aborted) controller.abort(signal)
}

/** The signal that interrupted this process, if any. */
export function interruptedBy(): InterruptSignal | undefined {
  return controller.signal.aborted ? (controller.signal.reason as InterruptSignal) : undefined
}

export class InterruptedError extends CodedError {
  constructor(
    readonly signal: InterruptSignal,
    doing: string
  ) {
    super('INTERRUPTED', `interrupted by ${signal} while ${doing}`)
    this.name = 'InterruptedError'
  }
}

/** Throws InterruptedError when the process was interrupted; call it before each step that changes something. */
export function throwIfInterrupted(doing: string): void {
  const signal = interruptedBy()
  if (signal) throw new InterruptedError(signal, doing)
}

/**
 * Installs the SIGINT/SIGTERM handlers once. The first signal aborts the work so that it can
 * stop at a known state and report it; a second one exits at once.
 */
export function installInterruptHandlers(onSecond: (signal: InterruptSignal) => void = (s) => process.exit(INTERRUPT_EXIT_CODE[s])): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (interruptedBy()) return onSecond(signal)
      interrupt(signal)
    })
  }
}
