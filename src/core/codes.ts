/**
 * Stable codes. They appear in plans, reports, annotations and the README; never rename one.
 * `blocking` codes stop a plan; the others are warnings or outcome codes.
 */
export const CODES = {
  EXTENSION_NOT_AVAILABLE: 'The extension is not shipped on the server (no control file).',
  VERSION_NOT_AVAILABLE: 'The requested version is not shipped on the server.',
  NOT_INSTALLED: 'The extension is not installed in the database and `install-missing` is false.',
  NO_UPDATE_PATH: 'No chain of update scripts leads from the installed version to the target.',
  DOWNGRADE_NOT_ALLOWED: 'The target is older than the installed version and `allow-downgrade` is false.',
  CATALOG_AHEAD: 'The catalog version is newer than the control-file default; left alone (warning).',
  DOWNGRADE_HOP: 'The update path passes through a lower version on the way (warning).',
  REQUIRES_MISSING: 'An extension required by the target version is neither installed nor planned.',
  INSUFFICIENT_PRIVILEGE: 'The connecting role may not perform the change; the message names the role needed.',
  PRELOAD_MISSING: 'The extension needs its library in `shared_preload_libraries`.',
  RESTART_REQUIRED: 'The loaded library is older than the target: restart the server before updating.',
  READ_ONLY_SERVER: 'The server is a replica or read-only.',
  LOCK_CONFLICT: 'Another session holds a lock on a relation the extension owns.',
  LONG_TRANSACTION: 'A transaction has been open longer than `long-transaction-threshold` (warning).',
  DEPENDENT_OBJECTS: 'User objects depend on members of the extension; they are listed (warning).',
  CONCURRENT_RUN: 'Another run holds the upgrade lock on the database.',
  PLAN_STALE: 'The database changed since the plan was made.',
  LOCK_TIMEOUT: 'The update kept waiting for locks beyond `lock-timeout` and every retry.',
  STATEMENT_TIMEOUT: 'The update ran longer than `statement-timeout` and was cancelled.',
  UPGRADE_SCRIPT_FAILED: 'An update script failed; the extension stayed at its previous version.',
  LIBRARY_MISMATCH: "The server's extension binaries do not match the catalog (missing library or symbol).",
  CONNECTION_LOST: 'The connection dropped during an update; the version was re-read afterwards.',
  ARCHIVING_DISABLED: 'WAL archiving is not working, so a restore point would be unrecoverable.',
  CONFIRMATION_REQUIRED: 'The rollback discards data and `confirm-data-loss` is not true.',
  SNAPSHOT_MISMATCH: 'The snapshot belongs to another cluster or does not match the server.',
  SNAPSHOT_FAILED: 'Taking the snapshot failed; nothing was recorded as a baseline.',
  ROLLBACK_FAILED: 'The rollback could not restore the baseline.',
  VERIFY_FAILED: 'A verification check failed.',
  DRIFT: 'Catalog, control file and loaded library disagree.',
  CONNECTION_FAILED: 'The server could not be reached or refused the connection.',
  INVALID_INPUT: 'An input is malformed; the message names the input and what is allowed.',
  NOT_IMPLEMENTED: 'The mode is not available in this version.',
  UNEXPECTED_ERROR: 'An unexpected error; the message carries the SQLSTATE or the cause.'
} as const

export type Code = keyof typeof CODES
