/**
 * Section profile: where one database's server CPU goes. Each kind of session the tool (or a
 * hand loop) opens is run on its own fresh copy of a tenant database (hstore 1.4, pg_trgm 1.3,
 * citext 1.4), and its backend's CPU is read from /proc/<pid>/schedstat (nanoseconds on the CPU,
 * start-up and authentication included) just before it disconnects. Median of `runs` copies.
 */
import { readFileSync } from 'node:fs'
import pg from 'pg'
import { startCluster, SUPERUSER, SUPERUSER_PASSWORD, type Cluster } from '../../__tests__/harness/postgres.js'
import { CatalogCache, inspectDatabase, inspectServer, readVersions } from '../../src/core/catalog.js'
import { advisoryKeys } from '../../src/core/executor.js'
import { environment, table, type Section } from './framework.js'

const EXTENSIONS = { hstore: '1.4', pg_trgm: '1.3', citext: '1.4' }
const TARGETS = Object.keys(EXTENSIONS)
const DEFAULTS: Record<string, string> = { hstore: '1.8', pg_trgm: '1.6', citext: '1.6' }

/** CPU time of a live process, in ms (schedstat's first field is nanoseconds on the CPU). */
function cpuMs(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6
}

async function session(cluster: Cluster, database: string, work: (client: pg.Client) => Promise<void>): Promise<number> {
  const client = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database, application_name: 'profile' })
  await client.connect()
  try {
    const pid = (client as unknown as { processID: number }).processID
    await work(client)
    return cpuMs(pid)
  } finally {
    await client.end()
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

const alterAll = () => TARGETS.map((name) => `ALTER EXTENSION ${name} UPDATE TO '${DEFAULTS[name]}'`)

export const profileSection: Section = {
  name: 'profile',
  description: 'server CPU of each kind of session, per database (schedstat of its backend)',
  async run(options) {
    const cluster = await startCluster()
    try {
      await cluster.createDatabase('profile_template', EXTENSIONS)
      const runs = Math.max(5, Math.min(options.runs, 15))
      const cache = new CatalogCache()
      const settings = `SET LOCAL lock_timeout = '5000ms'; SET LOCAL statement_timeout = '900000ms'; SET LOCAL max_parallel_workers_per_gather = '0'; SET LOCAL max_parallel_maintenance_workers = '0'`
      const kinds: Array<{ name: string; why: string; work: (client: pg.Client, db: string) => Promise<void> }> = [
        { name: 'empty session (connect, SCRAM, SELECT 1, disconnect)', why: 'what any session costs', work: async (c) => void (await c.query('SELECT 1')) },
        { name: 'naive: the 3 ALTERs in one string', why: 'the hand loop', work: async (c) => void (await c.query(alterAll().join('; '))) },
        { name: 'fresh session: one ALTER (hstore), its only statement', why: 'first-statement path, per extension', work: async (c) => void (await c.query(alterAll()[0])) },
        { name: 'server facts (available versions of every extension)', why: 'once per run', work: async (c) => void (await inspectServer(c)) },
        {
          name: 'dry-run inspection, paths not cached',
          why: 'the first database of a run',
          work: async (c) => void (await inspectDatabase(c, { targets: TARGETS, longTransactionMs: 300_000 }, false))
        },
        {
          name: 'dry-run inspection, paths cached',
          why: 'every other database',
          work: async (c) => void (await inspectDatabase(c, { targets: TARGETS, longTransactionMs: 300_000, cache }, false))
        },
        {
          name: 'coordinator: lock + re-inspection, 3 updates in their own transactions (SET LOCAL), versions re-read',
          why: 'execute, updates on the coordinator',
          work: async (c, db) => {
            await inspectDatabase(c, { targets: TARGETS, longTransactionMs: 300_000, depth: 'apply', cache, advisoryLock: advisoryKeys(db) }, false)
            for (const statement of alterAll()) await c.query(`BEGIN; ${settings}; ${statement}; COMMIT`)
            await readVersions(c)
          }
        },
        {
          name: 'coordinator without the updates: lock + re-inspection, versions re-read',
          why: 'execute, first-statement path',
          work: async (c, db) => {
            await inspectDatabase(c, { targets: TARGETS, longTransactionMs: 300_000, depth: 'apply', cache, advisoryLock: advisoryKeys(db) }, false)
            await readVersions(c)
          }
        }
      ]
      // Warm the cache (the first database of a run reads the paths).
      await cluster.query('CREATE DATABASE profile_warm TEMPLATE profile_template')
      await session(cluster, 'profile_warm', async (c) => void (await inspectDatabase(c, { targets: TARGETS, longTransactionMs: 300_000, cache: new CatalogCache() }, false)))
      await session(cluster, 'profile_warm', async (c) => void (await inspectDatabase(c, { targets: TARGETS, longTransactionMs: 300_000, cache }, false)))
      const rows: Array<{ name: string; why: string; cpuMs: number }> = []
      let n = 0
      for (const kind of kinds) {
        const samples: number[] = []
        for (let i = 0; i < runs; i++) {
          const db = `profile_${++n}`
          await cluster.query(`CREATE DATABASE ${db} TEMPLATE profile_template`)
          samples.push(await session(cluster, db, (c) => kind.work(c, db)))
        }
        rows.push({ name: kind.name, why: kind.why, cpuMs: median(samples) })
      }
      const markdown = [
        `Median of ${runs} fresh copies per row; CPU of the backend from connect to just before disconnect.`,
        '',
        table(
          ['session', 'for', 'server CPU'],
          rows.map((r) => [r.name, r.why, `${r.cpuMs.toFixed(1)} ms`])
        )
      ].join('\n')
      return { markdown, json: { environment: environment(), extensions: EXTENSIONS, runs, sessions: rows.map((r) => ({ ...r, cpuMs: Math.round(r.cpuMs * 10) / 10 })) }, missed: [] }
    } finally {
      await cluster.destroy()
    }
  }
}
