import type { InputName, Mode } from '../inputs.js'

/** Inputs of the GitHub Action that the CLI refuses: it posts no pull request comments. */
export const ACTION_ONLY: readonly InputName[] = ['github-token', 'comment-on-pr']

const CONNECTION: InputName[] = ['database-url', 'databases', 'exclude-databases', 'connect-timeout', 'concurrency']
const PLANNING: InputName[] = ['extensions', 'manifest', 'allow-downgrade', 'install-missing', 'staged-extensions', 'first-statement-extensions', 'long-transaction-threshold']
const UPDATING: InputName[] = ['lock-timeout', 'statement-timeout', 'max-retries', 'canary', 'on-failure', 'max-failures', 'verify-sql']
const SNAPSHOTTING: InputName[] = ['snapshot-strategy', 'snapshot-dir', 'restore-point', 'pg-bin-dir', 'wait-timeout']
const RESTORING: InputName[] = [
  'rollback-strategy',
  'pgdata',
  'pg-bin-dir',
  'stop-command',
  'start-command',
  'restore-command',
  'confirm-data-loss',
  'keep-previous',
  'terminate-connections',
  'wait-timeout'
]

export interface ModeHelp {
  summary: string
  /** The inputs that mode reads, in the order its help lists them. */
  options: InputName[]
  example: string
}

/** Per mode: what it does, the options it reads, and one example. `<mode> --help` shows exactly this. */
export const MODE_HELP: Record<Mode, ModeHelp> = {
  'dry-run': {
    summary: 'Plan every update read-only and report what would block it. Changes nothing.',
    options: [...CONNECTION, ...PLANNING],
    example: "pg-extension-upgrade dry-run --databases 'tenant_*' --extensions hstore@1.8,pg_trgm --out plan.json"
  },
  snapshot: {
    summary: 'Record a baseline to roll back to: a base backup and restore point, or per-database dumps.',
    options: [...CONNECTION, 'plan', ...SNAPSHOTTING],
    example: 'pg-extension-upgrade snapshot --plan plan.json --snapshot-strategy dump --snapshot-dir /var/backups/pgxu'
  },
  execute: {
    summary: 'Apply a plan (or plan and apply), one advisory-locked session per database.',
    options: [...CONNECTION, 'plan', ...PLANNING, ...UPDATING],
    example: "pg-extension-upgrade execute --plan plan.json --databases 'tenant_*' --concurrency 8"
  },
  verify: {
    summary: "Check that the databases are at the plan's versions and run the application's probes, read-only.",
    options: [...CONNECTION, 'plan', 'extensions', 'manifest', 'verify-sql', 'statement-timeout'],
    example: 'pg-extension-upgrade verify --plan plan.json --verify-sql probes.sql'
  },
  rollback: {
    summary: 'Restore the recorded versions: downgrade scripts, else dump restore, else PITR (with --confirm-data-loss).',
    options: [...CONNECTION, 'snapshot', 'report', 'plan', 'restore-point', 'snapshot-dir', ...RESTORING],
    example: 'pg-extension-upgrade rollback --snapshot /var/backups/pgxu/manifest.json --report report.json'
  },
  run: {
    summary: 'dry-run, snapshot, execute and verify in one go; roll back on its own when an update or a probe fails.',
    options: [...CONNECTION, ...PLANNING, ...UPDATING, ...SNAPSHOTTING, ...RESTORING.filter((name) => !SNAPSHOTTING.includes(name))],
    example: "pg-extension-upgrade run --databases 'tenant_*' --extensions postgis --verify-sql probes.sql --snapshot-strategy dump"
  },
  drift: {
    summary: 'Compare catalog, control-file and library versions per database (and with a reference server). Read-only.',
    options: [...CONNECTION, 'extensions', 'manifest', 'fail-on-drift', 'reference-database-url'],
    example: 'pg-extension-upgrade drift --databases all --json'
  }
}

/** The modes that change databases: on a terminal they show what they will change and ask first. */
export const ASKS_FIRST: readonly Mode[] = ['execute', 'run', 'rollback']
