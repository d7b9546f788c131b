/**
 * Section execute: what execute adds around the server's own ALTER EXTENSION work, for one
 * database with 10 extensions to update. Each run gets a fresh copy of a template database, so
 * both sides do the same update scripts; the difference is the envelope (inspection, advisory
 * lock, a fresh session per extension, version check, report).
 */
import { performance } from 'node:perf_hooks'
import type pg from 'pg'
import { startCluster, type Cluster } from '../../__tests__/harness/postgres.js'
import { silentLogger } from '../../src/core/logger.js'
import { runMode } from '../../src/modes/index.js'
import { countWire, environment, ms, stats, table, verdict, type Section } from './framework.js'

/** Ten contrib extensions at the oldest version PostgreSQL 15 can install, each with an update path. */
export const OLD_VERSIONS: Record<string, string> = {
  hstore: '1.4',
  pg_trgm: '1.3',
  citext: '1.4',
  cube: '1.2',
  ltree: '1.1',
  intarray: '1.2',
  btree_gist: '1.2',
  seg: '1.1',
  isn: '1.1',
  pg_stat_statements: '1.4'
}

const TARGET_MS_PER_EXTENSION = 100

async function copyOf(cluster: Cluster, template: string, name: string): Promise<void> {
  await cluster.query(`CREATE DATABASE ${name} TEMPLATE ${template}`)
}

/** The same statements execute sends, on one session that is already open: the server's share. */
async function bareAlters(client: pg.Client, targets: Record<string, string>): Promise<void> {
  for (const [name, version] of Object.entries(targets)) {
    await client.query(`ALTER EXTENSION ${client.escapeIdentifier(name)} UPDATE TO ${client.escapeLiteral(version)}`)
  }
}

export const executeSection: Section = {
  name: 'execute',
  description: 'time execute adds around ALTER EXTENSION for one database with 10 extensions to update',
  async run(options) {
    const cluster = await startCluster()
    try {
      const template = 'bench_exec_template'
      await cluster.createDatabase(template, OLD_VERSIONS)
      const defaults = Object.fromEntries(
        (await cluster.query<{ name: string; default_version: string }>(`SELECT name, default_version FROM pg_available_extensions WHERE name = ANY($1)`, 'postgres', [Object.keys(OLD_VERSIONS)])).map(
          (r) => [r.name, r.default_version]
        )
      )
      const ordered = Object.fromEntries(Object.keys(OLD_VERSIONS).map((n) => [n, defaults[n]]))
      const bare: number[] = []
      const ours: number[] = []
      let wire = { queries: 0, connections: 0 }
      for (let i = 0; i < options.warmup + options.runs; i++) {
        await copyOf(cluster, template, `bench_bare_${i}`)
        await copyOf(cluster, template, `bench_ours_${i}`)
        const client = await cluster.connect(`bench_bare_${i}`)
        const bareStart = performance.now()
        await bareAlters(client, ordered)
        const bareMs = performance.now() - bareStart
        await client.end()
        const oursStart = performance.now()
        const counted = await countWire(() => runMode({ mode: 'execute', 'database-url': cluster.url(`bench_ours_${i}`), extensions: Object.keys(OLD_VERSIONS).join(',') }, silentLogger))
        const oursMs = performance.now() - oursStart
        if (counted.value.status !== 'success') throw new Error(`execute failed: ${counted.value.error}`)
        if (i >= options.warmup) {
          bare.push(bareMs)
          ours.push(oursMs)
          wire = { queries: counted.queries, connections: counted.connections }
        }
        await cluster.query(`DROP DATABASE bench_bare_${i}`)
        await cluster.query(`DROP DATABASE bench_ours_${i}`)
      }
      const bareStats = stats(bare)
      const oursStats = stats(ours)
      const count = Object.keys(OLD_VERSIONS).length
      const perExtension = (oursStats.median - bareStats.median) / count
      const met = perExtension < TARGET_MS_PER_EXTENSION
      const markdown = [
        table(
          ['', 'median', 'p95'],
          [
            ['bare ALTER EXTENSION × 10 on one open session (server work)', ms(bareStats.median), ms(bareStats.p95)],
            ['execute (plan, inspect, advisory lock, the 10 updates on the coordinator, each in its own transaction, verify versions, report)', ms(oursStats.median), ms(oursStats.p95)]
          ]
        ),
        '',
        `overhead per extension: ${ms(perExtension)} (target < ${TARGET_MS_PER_EXTENSION} ms) ${verdict(met)}`,
        `sessions opened by execute: ${wire.connections} (1 planning, 1 coordinator; plus 1 per first-statement extension, none here); statements sent: ${wire.queries}`
      ].join('\n')
      return {
        markdown,
        json: { environment: environment(), extensions: ordered, bare: bareStats, execute: oursStats, overheadPerExtensionMs: Math.round(perExtension * 100) / 100, sessions: wire.connections, statements: wire.queries },
        missed: met ? [] : [`execute overhead ${perExtension.toFixed(1)} ms per extension ≥ ${TARGET_MS_PER_EXTENSION} ms`]
      }
    } finally {
      await cluster.destroy()
    }
  }
}
