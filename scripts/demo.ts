/**
 * npm run demo: the whole story on an embedded throwaway PostgreSQL, through the bundled CLI.
 *
 * A new image shipped newer extension libraries, but the tenants' catalogs still say the old
 * versions. drift finds them; dry-run plans the fix; snapshot takes a baseline; execute applies
 * it; verify proves it. Then an upgrade that changes behaviour the application relies on: `run`
 * sees verify fail and rolls the tenant back on its own. Everything is removed at the end.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fixtureFiles, FIXTURES, removeExtensionFiles, writeExtensionFiles } from '../__tests__/harness/fixtures.js'
import { chownToOwner, findPostgres, startCluster, type Cluster } from '../__tests__/harness/postgres.js'

const ROOT = resolve(import.meta.dirname, '..')
const CLI = join(ROOT, 'dist', 'cli', 'index.js')
const TENANTS = ['tenant_acme', 'tenant_globex', 'tenant_initech']
const BREAKING = FIXTURES.find((f) => f.name === 'pgxu_breaking')!
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
  const { shareDir } = findPostgres()
  writeExtensionFiles(shareDir, fixtureFiles(BREAKING))
  console.log(bold('pg-extension-upgrade demo: an embedded PostgreSQL with WAL archiving, three tenants, one bad release'))
  const cluster = await startCluster({ archive: true, fixtures: false })
  const cleanUp = async () => {
    await cluster.destroy()
    rmSync(work, { recursive: true, force: true })
    removeExtensionFiles(shareDir, Object.keys(fixtureFiles(BREAKING)))
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
    await cluster.createDatabase('tenant_umbrella', { pgxu_breaking: '1.0' })
    await cluster.query(`CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 100)`, 'tenant_umbrella')

    const tenants = ['--databases', 'tenant_acme,tenant_globex,tenant_initech']
    step('1. drift', 'The packages were upgraded; the catalogs were not. drift compares each tenant with what the server ships.', cluster, ['drift', ...tenants], 1)
    step('2. dry-run', 'Plan every hop, check everything that could stop the upgrade, change nothing.', cluster, ['dry-run', ...tenants])
    step('3. snapshot', 'A verified base backup and a named restore point after it: a way back for the whole cluster.', cluster, [
      'snapshot', ...tenants, '--snapshot-strategy', 'basebackup', '--snapshot-dir', snapshots, '--restore-point', 'demo_before_upgrade'
    ])
    step('4. execute', 'Each update first in a fresh session, under an advisory lock, with timeouts; two tenants at a time.', cluster, ['execute', ...tenants, '--extensions', 'hstore,pg_trgm,citext', '--concurrency', '2'])
    step('5. verify', 'Versions, C functions against their libraries, dependent indexes, and an application probe.', cluster, [
      'verify', ...tenants, '--extensions', 'hstore,pg_trgm,citext', '--verify-sql', "SELECT count(*) FROM customers WHERE tags -> 'plan' = 'pro'; -- expect: 500"
    ])
    step('6. run, with a bad release', 'pgxu_breaking 1.1 updates cleanly but changes greeting(), which the application relies on. verify catches it and run restores the tenant from its dump at the old version.', cluster, [
      'run', '--databases', 'tenant_umbrella', '--extensions', 'pgxu_breaking', '--snapshot-strategy', 'dump', '--snapshot-dir', snapshots,
      '--verify-sql', "SELECT greeting(); -- expect: hello", '--terminate-connections'
    ], 1)
    const after = await cluster.extensionVersions('tenant_umbrella')
    const orders = await cluster.query<{ n: number }>('SELECT count(*)::int AS n FROM orders', 'tenant_umbrella')
    console.log(`\ntenant_umbrella after the automatic rollback: pgxu_breaking ${after.pgxu_breaking}, ${orders[0].n} orders kept.`)
    console.log(bold(`\nDone in ${((Date.now() - started) / 1000).toFixed(1)} s. Cleaning up.`))
  } finally {
    await cleanUp()
  }
}

main().catch((error: unknown) => {
  console.error(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
})
