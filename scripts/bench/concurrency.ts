/**
 * Section concurrency: what the `concurrency` default should be. One fleet of 120 tenant databases
 * (hstore 1.4, pg_trgm 1.3, citext 1.4): dry-run at 1, 2, 4, 8 and 16 workers, directly and through
 * the loopback proxy (+5 ms each way); then one-step execute at 4, 8 and 16 workers through the
 * proxy and directly, each on a fresh copy. Wall time and the server's CPU per figure.
 */
import { startCluster } from '../../__tests__/harness/postgres.js'
import { silentLogger } from '../../src/core/logger.js'
import { runMode } from '../../src/modes/index.js'
import { cost, EXTENSIONS, makeFleet, postmasterPid, PROXY_DELAY_MS, startProxy } from './fleet.js'
import { environment, ms, table, type Section } from './framework.js'

const SIZE = 120
const DRY_RUN_WORKERS = [1, 2, 4, 8, 16]
const EXECUTE_WORKERS = [4, 8, 16]

export const concurrencySection: Section = {
  name: 'concurrency',
  description: `${SIZE} databases: dry-run and one-step execute at several concurrency values, directly and through a ${PROXY_DELAY_MS} ms proxy`,
  async run() {
    const cluster = await startCluster({ settings: { max_connections: 200, autovacuum: 'off', log_connections: 'on', log_line_prefix: "'%a|'" } })
    const proxy = await startProxy(cluster.port, PROXY_DELAY_MS)
    try {
      await cluster.createDatabase('bench_conc_template', EXTENSIONS)
      const postmaster = postmasterPid(cluster)
      const names = Object.keys(EXTENSIONS).join(',')
      const url = (port: number) => cluster.url('postgres').replace(`:${cluster.port}/`, `:${port}/`)
      const links = [
        ['direct', cluster.port],
        ['proxy', proxy.port]
      ] as const
      await makeFleet(cluster, 'dry', SIZE, 'bench_conc_template')
      const rows: Array<{ mode: string; link: string; workers: number; wallMs: number; cpuMs: number }> = []
      for (const [link, port] of links) {
        for (const workers of DRY_RUN_WORKERS) {
          const c = await cost(cluster, postmaster, async () => {
            const result = await runMode({ mode: 'dry-run', 'database-url': url(port), databases: 'dry_*', extensions: names, concurrency: String(workers) }, silentLogger)
            if (result.status !== 'dry_run_approved') throw new Error(`dry-run ended ${result.status}`)
          })
          rows.push({ mode: 'dry-run', link, workers, wallMs: c.wallMs, cpuMs: c.cpuMs })
        }
      }
      for (const [link, port] of links) {
        for (const workers of EXECUTE_WORKERS) {
          const prefix = `ex_${link}_${workers}`
          await makeFleet(cluster, prefix, SIZE, 'bench_conc_template')
          const c = await cost(cluster, postmaster, async () => {
            const result = await runMode({ mode: 'execute', 'database-url': url(port), databases: `${prefix}_*`, extensions: names, concurrency: String(workers) }, silentLogger)
            if (result.status !== 'success') throw new Error(`execute ended ${result.status}: ${result.error}`)
          })
          rows.push({ mode: 'execute', link, workers, wallMs: c.wallMs, cpuMs: c.cpuMs })
          process.stderr.write(`execute ${link} ${workers}: ${ms(c.wallMs)} wall, ${ms(c.cpuMs)} server CPU\n`)
        }
      }
      const markdown = table(
        ['mode', 'link', 'concurrency', 'wall', 'server CPU', 'CPU per database'],
        rows.map((r) => [r.mode, r.link, r.workers, ms(r.wallMs), ms(r.cpuMs), ms(r.cpuMs / SIZE)])
      )
      return { markdown, json: { environment: environment(), databases: SIZE, proxyDelayMs: PROXY_DELAY_MS, rows: rows.map((r) => ({ ...r, wallMs: Math.round(r.wallMs), cpuMs: Math.round(r.cpuMs) })) }, missed: [] }
    } finally {
      await proxy.close()
      await cluster.destroy()
    }
  }
}
