import type { Code } from './codes.js'
import { pgErrorFields } from './pg-error.js'

/**
 * What to do after a statement failed:
 * - retry: nothing changed and waiting may help (a lock wait timed out, a deadlock);
 * - reconnect: the session is gone and the statement may or may not have committed, so the
 *   version is read again on another session before anything is decided;
 * - halt: retrying cannot help; report and stop this extension.
 */
export type Disposition = 'retry' | 'reconnect' | 'halt'

interface Rule {
  /** A full SQLSTATE, or a two-character class. */
  sqlstate: string
  /** Only when the message matches too: one SQLSTATE can mean different things (XX000). */
  message?: RegExp
  disposition: Disposition
  code: Code
  meaning: string
}

/** The one table that decides the outcome of a failed update; the step's exit follows from it. */
export const SQLSTATE_RULES: readonly Rule[] = [
  { sqlstate: '55P03', disposition: 'retry', code: 'LOCK_TIMEOUT', meaning: 'lock_timeout expired while waiting for a lock' },
  { sqlstate: '40P01', disposition: 'retry', code: 'LOCK_TIMEOUT', meaning: 'a deadlock was detected and this session was chosen to abort' },
  { sqlstate: '40001', disposition: 'retry', code: 'UPGRADE_SCRIPT_FAILED', meaning: 'a serialization failure; nothing was committed' },
  { sqlstate: '57014', disposition: 'halt', code: 'STATEMENT_TIMEOUT', meaning: 'the statement was cancelled (statement_timeout or an operator)' },
  { sqlstate: '42501', disposition: 'halt', code: 'INSUFFICIENT_PRIVILEGE', meaning: 'the role lacks a privilege the script needs' },
  { sqlstate: '58P01', disposition: 'halt', code: 'LIBRARY_MISMATCH', meaning: "a file the extension needs is missing: the server's binaries do not match" },
  {
    sqlstate: 'XX000',
    message: /tuple concurrently (updated|deleted)/i,
    disposition: 'halt',
    code: 'CONCURRENT_RUN',
    meaning: 'another session updated the same catalog row at the same time: a concurrent run or a manual update'
  },
  { sqlstate: 'XX000', disposition: 'halt', code: 'LIBRARY_MISMATCH', meaning: "an internal error, typically a loaded library that differs from the catalog (Citus XX000)" },
  { sqlstate: '42883', disposition: 'halt', code: 'LIBRARY_MISMATCH', meaning: 'a function or symbol the script needs does not exist in the installed library' },
  { sqlstate: '42710', disposition: 'halt', code: 'UPGRADE_SCRIPT_FAILED', meaning: 'an object the script creates already exists (a name collision with a user object?)' },
  { sqlstate: '55006', disposition: 'halt', code: 'UPGRADE_SCRIPT_FAILED', meaning: 'an object the script changes is in use by another session' },
  { sqlstate: '0A000', disposition: 'halt', code: 'UPGRADE_SCRIPT_FAILED', meaning: 'not supported in this session (TimescaleDB: the old version was already loaded)' },
  { sqlstate: '57P01', disposition: 'reconnect', code: 'CONNECTION_LOST', meaning: 'the session was terminated by an administrator' },
  { sqlstate: '57P02', disposition: 'reconnect', code: 'CONNECTION_LOST', meaning: 'the server is shutting down after a crash' },
  { sqlstate: '57P03', disposition: 'reconnect', code: 'CONNECTION_LOST', meaning: 'the server is not accepting connections now' },
  { sqlstate: '08', disposition: 'reconnect', code: 'CONNECTION_LOST', meaning: 'the connection failed' }
]

const FALLBACK: Rule = { sqlstate: '', disposition: 'halt', code: 'UPGRADE_SCRIPT_FAILED', meaning: 'the update script failed' }
const CONNECTION_LOST: Rule = { sqlstate: '08', disposition: 'reconnect', code: 'CONNECTION_LOST', meaning: 'the connection was lost' }

/** Network-level failures from the driver carry no SQLSTATE. */
const LOST_CONNECTION = /Connection terminated|ECONNRESET|EPIPE|ECONNREFUSED|ETIMEDOUT|socket hang up|Client has encountered a connection error/i

export interface Classified {
  disposition: Disposition
  code: Code
  meaning: string
  sqlstate?: string
  message: string
}

export function classify(error: unknown): Classified {
  const fields = pgErrorFields(error)
  const rule = fields.sqlstate
    ? (SQLSTATE_RULES.find((r) => r.sqlstate === fields.sqlstate && (!r.message || r.message.test(fields.message))) ??
      SQLSTATE_RULES.find((r) => r.sqlstate.length === 2 && fields.sqlstate!.startsWith(r.sqlstate)) ??
      FALLBACK)
    : LOST_CONNECTION.test(fields.message)
      ? CONNECTION_LOST
      : FALLBACK
  return { disposition: rule.disposition, code: rule.code, meaning: rule.meaning, sqlstate: fields.sqlstate, message: fields.message }
}
