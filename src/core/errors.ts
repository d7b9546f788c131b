import type { Code } from './codes.js'

/** An expected failure: reported with its code and message, never with a stack trace. */
export class CodedError extends Error {
  constructor(
    readonly code: Code,
    message: string
  ) {
    super(message)
    this.name = 'CodedError'
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
