import { silentLogger } from '../src/core/logger.js'
import type { Plan } from '../src/core/plan.js'
import type { RawInputs } from '../src/inputs.js'
import { runMode } from '../src/modes/index.js'
import type { ModeResult } from '../src/modes/types.js'
import { afterAll, describe, it } from '@jest/globals'
import { appendFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { findPostgres, startCluster, type Cluster, type ClusterOptions } from './harness/postgres.js'

let counter = 0

/** A database name unique to this test run, so test files never step on each other. */
export function uniqueName(prefix: string): string {
  counter++
  return `${prefix}_${process.pid}_${counter}`.toLowerCase()
}

/** Runs a mode in-process (the same code path as the action, without the bundle). */
export async function runInProcess(inputs: RawInputs, env: NodeJS.ProcessEnv = {}): Promise<ModeResult> {
  return runMode(inputs, silentLogger, { PATH: process.env.PATH, ...env })
}

export async function dryRun(cluster: Cluster, database: string, inputs: RawInputs = {}): Promise<Plan> {
  const result = await runInProcess({ mode: 'dry-run', 'database-url': cluster.url(database), ...inputs })
  if (!result.plan) throw new Error(`dry-run produced no plan: ${result.error}`)
  return result.plan
}

export function entry(plan: Plan, name: string, database?: string) {
  const db = database ? plan.databases.find((d) => d.name === database) : plan.databases[0]
  const found = db?.extensions.find((e) => e.name === name)
  if (!found) throw new Error(`${name} is not in the plan of ${db?.name}`)
  return found
}

export const codes = (findings: Array<{ code: string }>) => findings.map((f) => f.code).sort()

/** Starts a cluster for the calling test file and stops it when the file is done. */
export async function testCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const cluster = await startCluster(options)
  afterAll(async () => {
    await cluster.destroy()
  })
  return cluster
}

/**
 * What a test needs beyond a PostgreSQL server with contrib: extensions from Debian packages, or
 * the client programs of the server's own major (the npm builds ship neither).
 */
export type Requirement = 'postgis' | 'pg_cron' | 'pg_partman' | 'pg_dump' | 'pg_restore' | 'pg_basebackup' | 'psql'

const EXTENSIONS: Partial<Record<Requirement, string>> = { postgis: 'postgis', pg_cron: 'pg_cron', pg_partman: 'pg_partman' }

/** Why a requirement is not met on the server the tests run against, or null when it is. */
export function missing(requirement: Requirement): string | null {
  const install = findPostgres()
  const extension = EXTENSIONS[requirement]
  if (extension) {
    return existsSync(join(install.shareDir, 'extension', `${extension}.control`)) ? null : `${extension} is not installed for PostgreSQL ${install.version} (${install.shareDir})`
  }
  // The tests and the tool look for client programs next to the server or in Debian's directory
  // of the same major; an older or newer pg_dump is no stand-in for what these tests check.
  const places = [install.binDir, `/usr/lib/postgresql/${install.version}/bin`]
  return places.some((dir) => existsSync(join(dir, requirement))) ? null : `${requirement} ${install.version} is not installed`
}

/** The one command that installs what the tests need (scripts/install-test-deps.sh). */
export const INSTALL_TEST_DEPS = 'sudo bash scripts/install-test-deps.sh'

/**
 * What enables the skipped tests. On an npm build picked by PG_MAJOR, Debian's server of that
 * major (the tests then use it, with its client programs); Debian's own sources carry one major,
 * apt.postgresql.org all of them.
 */
function enablingCommand(): string {
  const install = findPostgres()
  if (!install.embedded || !process.env.PG_MAJOR) return INSTALL_TEST_DEPS
  const v = install.version
  return `add apt.postgresql.org to apt's sources (https://wiki.postgresql.org/wiki/Apt), then sudo apt-get install postgresql-${v} postgresql-${v}-postgis-3 postgresql-${v}-cron postgresql-${v}-partman`
}

/**
 * Gates tests on requirements: `requires('postgis').it(name, fn)`. A missing requirement skips
 * the test by name, and the run's closing lines list it with the command that enables it (see
 * __tests__/harness/skip-reporter.cjs). Under CI=true nothing is skipped: the test runs and fails
 * with the reason. PGXU_SERVER_ONLY=1 (the 14–18 matrix on npm builds) checks the server only: a
 * test that needs what the machine lacks for that major is not part of that run (not registered,
 * so never reported as skipped) and is listed by name as left to the main run, which has it all.
 */
export function requires(...requirements: Requirement[]) {
  const reasons = requirements.map(missing).filter((reason): reason is string => reason !== null)
  const outOfScope = reasons.length > 0 && process.env.PGXU_SERVER_ONLY === '1'
  const skip = reasons.length > 0 && process.env.CI !== 'true' && !outOfScope
  const record = (name: string) => {
    if (process.env.PGXU_SKIP_LOG) appendFileSync(process.env.PGXU_SKIP_LOG, JSON.stringify({ test: name, reasons, command: enablingCommand(), outOfScope }) + '\n')
  }
  const failing = (fn: () => unknown) => (reasons.length > 0 ? () => Promise.reject(new Error(`this test needs: ${reasons.join('; ')}. Install with: ${enablingCommand()}`)) : fn)
  return {
    it(name: string, fn: () => unknown, timeout?: number): void {
      if (outOfScope) record(name)
      else if (skip) {
        record(name)
        it.skip(name, fn as () => Promise<unknown>)
      } else it(name, failing(fn) as () => Promise<unknown>, timeout)
    },
    describe(name: string, fn: () => void): void {
      if (outOfScope) record(`${name} (all tests)`)
      else if (skip) {
        record(`${name} (all tests)`)
        describe.skip(name, fn)
      } else if (reasons.length > 0) {
        describe(name, () => it('has what it needs', failing(() => undefined) as () => Promise<unknown>))
      } else describe(name, fn)
    }
  }
}

/** The default version of an extension on the server under test: contrib moves between majors (citext is 1.6 on 15, 1.8 on 18). */
export async function defaultVersion(cluster: Cluster, extension: string): Promise<string> {
  const rows = await cluster.query<{ default_version: string }>('SELECT default_version FROM pg_available_extensions WHERE name = $1', 'postgres', [extension])
  if (!rows[0]) throw new Error(`${extension} is not available on the server under test`)
  return rows[0].default_version
}
