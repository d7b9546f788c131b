/**
 * Section recovery: snapshot and rollback next to the bare PostgreSQL tools, on a cluster of about
 * 1 GB (pgbench -i -s 70), measured in the same run, interleaved:
 *
 * - snapshot (basebackup strategy: preflight, pg_basebackup, pg_verifybackup, restore point,
 *   WAL switch, archive wait, pg_waldump proof, manifest) vs bare pg_basebackup -Fp -Xstream
 *   -c fast + pg_verifybackup;
 * - pitr rollback (preflight, copy + verify, stop, swap, recovery paused at the restore point,
 *   version check, promote, cleanup) vs the bare manual restore of research/pitr.md: stop, move
 *   PGDATA aside, copy the base backup in, restore_command + recovery_target_name +
 *   recovery_target_action=promote + recovery.signal, start, wait until promoted;
 * - dump rollback of the 1 GB database (checksum, rename aside, create from template0, pinned
 *   extensions, pg_restore -j, row counts and versions verified) vs bare rename + createdb +
 *   pg_restore -j with the same number of jobs.
 *
 * Targets (the median of back-to-back pair ratios): the snapshot and the dump rollback under 1.15×
 * their bare counterparts; the pitr rollback at most 1.25×, because it re-verifies the whole base
 * backup (pg_verifybackup with checksums) and the archived WAL before it stops the server, which the
 * bare restore does not.
 * Runs: --runs, capped at 7 (default 5 standalone: every run moves a gigabyte). Registered in scripts/bench.ts as section
 * "recovery"; also runnable on its own: npx tsx scripts/bench-recovery.ts [--runs N] [--no-write].
 */
import { spawnSync } from 'node:child_process'
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { chownToOwner, clusterOwner, startCluster, SUPERUSER_PASSWORD, type Cluster } from '../__tests__/harness/postgres.js'
import { formatBytes } from '../src/core/recovery/format.js'
import type { SnapshotManifest } from '../src/core/recovery/manifest.js'
import { silentLogger } from '../src/core/logger.js'
import { runMode } from '../src/modes/index.js'
import type { RollbackReport } from '../src/modes/rollback.js'
import { environment, ROOT, stats, table, verdict, type BenchOptions, type Section, type SectionResult, type Stats } from './bench/framework.js'

const TARGET_RATIO = 1.15
/** Correctness before speed: the pitr rollback reads the backup once more to verify every byte. */
const PITR_TARGET_RATIO = 1.25
const SCALE = Number(process.env.BENCH_RECOVERY_SCALE ?? 70)

const seconds = (value: number) => `${(value / 1000).toFixed(2)} s`

function must(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): string {
  const result = spawnSync(command, args, { encoding: 'utf8', env, maxBuffer: 1e9 })
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr}`)
  return result.stdout
}

function pgEnv(cluster: Cluster, database = 'postgres'): NodeJS.ProcessEnv {
  return { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(cluster.port), PGUSER: 'postgres', PGPASSWORD: SUPERUSER_PASSWORD, PGDATABASE: database }
}

const bin = (cluster: Cluster, name: string) => join(cluster.info.binDir, name)

async function untilPromoted(cluster: Cluster): Promise<void> {
  for (;;) {
    try {
      const rows = await cluster.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')
      if (!rows[0].r) return
    } catch {
      // starting
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/**
 * Before each timed run: flush dirty pages (the previous run's gigabyte copy, the removal of its
 * leftovers — the disk is mounted with discard) so that no run pays for the one before it.
 */
async function settle(cluster: Cluster): Promise<void> {
  await cluster.query('CHECKPOINT')
  spawnSync('sync')
  await new Promise((resolve) => setTimeout(resolve, 300))
}

/** Median duration per phase over several reports, for the breakdown. */
function phaseMedians(reports: Array<Array<{ name: string; durationMs: number }>>): Record<string, number> {
  const byName = new Map<string, number[]>()
  for (const phases of reports) {
    for (const phase of phases) {
      const name = phase.name.replace(/ pgxu_\S+| [0-9A-F]{24}/g, '')
      byName.set(name, [...(byName.get(name) ?? []), phase.durationMs])
    }
  }
  return Object.fromEntries([...byName].map(([name, values]) => [name, Math.round(stats(values).median)]))
}

/** The figures of one comparison, with its verdict. */
interface Comparison {
  name: string
  ours: Stats
  bare: Stats
  /** The verdict's figure: the median of ours/bare over back-to-back pairs. */
  ratio: number
  /** median(ours) / median(bare), for comparison. */
  ratioOfMedians: number
  pairRatios: number[]
  /** met: ratio < target (≤ for the pitr rollback's 1.25×). */
  target: { ratio: number; inclusive: boolean }
  met: boolean
  extra?: Record<string, unknown>
}

/**
 * Runs are interleaved in pairs (ours then bare, then bare then ours, …), and the verdict is the
 * median of the per-pair ratios: the machine is shared (other builds and test suites run on its
 * two cores), and a pair measured back to back sees the same load.
 */
function compare(name: string, ours: number[], bare: number[], extra?: Record<string, unknown>, target = { ratio: TARGET_RATIO, inclusive: false }): Comparison {
  const a = stats(ours)
  const b = stats(bare)
  const round = (x: number) => Math.round(x * 1000) / 1000
  const pairRatios = ours.map((value, i) => round(value / bare[i]))
  const ratio = round(stats(pairRatios).median)
  const met = target.inclusive ? ratio <= target.ratio : ratio < target.ratio
  return { name, ours: a, bare: b, ratio, ratioOfMedians: round(a.median / b.median), pairRatios, target, met, extra }
}

async function upgradeAgain(cluster: Cluster): Promise<void> {
  await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'`, 'bench')
  await cluster.query(`INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) SELECT 1, 1, g, 1, now() FROM generate_series(1, 1000) g`, 'bench')
}

function removeSiblings(cluster: Cluster, pattern: RegExp): void {
  const parent = dirname(cluster.dataDir)
  for (const name of readdirSync(parent)) if (pattern.test(name)) rmSync(join(parent, name), { recursive: true, force: true })
}

/** Bytes under a directory (du -sb). */
function sizeOf(path: string): number {
  return Number(must('du', ['-sb', path]).split(/\s/)[0])
}

const hasProgram = (name: string) => spawnSync('sh', ['-c', `command -v ${name}`]).status === 0

interface FormatCost {
  format: string
  backupMs: number
  bytes: number
  /** Time to make pg_verifybackup possible (extraction) and run it; PostgreSQL 15 reads plain only. */
  verifyMs: number
  totalMs: number
  note: string
}

/**
 * One run of each pg_basebackup format the issue mentions, each verified the only way PostgreSQL
 * 15 allows (pg_verifybackup on a plain directory: tar formats must be extracted first).
 */
function formatCosts(cluster: Cluster, work: string): FormatCost[] {
  const costs: FormatCost[] = []
  const variants: Array<{ format: string; args: string[]; extract?: (dir: string, into: string) => void; needs?: string }> = [
    { format: 'plain (-Fp), chosen', args: ['-F', 'p'] },
    {
      format: 'tar + gzip (-Ft -z)',
      args: ['-F', 't', '-z'],
      extract: (dir, into) => {
        must('tar', ['-xzf', join(dir, 'base.tar.gz'), '-C', into])
        must('tar', ['-xzf', join(dir, 'pg_wal.tar.gz'), '-C', join(into, 'pg_wal')])
      }
    },
    {
      format: 'tar + lz4 (-Ft --compress=lz4)',
      args: ['-F', 't', '--compress=lz4'],
      needs: 'lz4',
      extract: (dir, into) => {
        must('sh', ['-c', `lz4 -dc '${join(dir, 'base.tar.lz4')}' | tar -x -C '${into}'`])
        must('tar', ['-xf', join(dir, 'pg_wal.tar'), '-C', join(into, 'pg_wal')])
      }
    },
    {
      format: 'tar + zstd (-Ft --compress=zstd)',
      args: ['-F', 't', '--compress=zstd'],
      needs: 'zstd',
      extract: (dir, into) => {
        must('sh', ['-c', `zstd -dc '${join(dir, 'base.tar.zst')}' | tar -x -C '${into}'`])
        must('tar', ['-xf', join(dir, 'pg_wal.tar'), '-C', join(into, 'pg_wal')])
      }
    }
  ]
  for (const variant of variants) {
    if (variant.needs && !hasProgram(variant.needs)) continue
    const dir = join(work, `format-${costs.length}`)
    const into = join(work, `format-${costs.length}-extracted`)
    try {
      let started = performance.now()
      must(bin(cluster, 'pg_basebackup'), ['-D', dir, ...variant.args, '-X', 'stream', '-c', 'fast'], pgEnv(cluster))
      const backupMs = performance.now() - started
      const bytes = sizeOf(dir)
      started = performance.now()
      if (variant.extract) {
        mkdirSync(into)
        variant.extract(dir, into)
        must(bin(cluster, 'pg_verifybackup'), ['-q', '-m', join(dir, 'backup_manifest'), into])
      } else must(bin(cluster, 'pg_verifybackup'), ['-q', dir])
      const verifyMs = performance.now() - started
      const note = variant.extract ? `extraction needs ${formatBytes(sizeOf(into))} of scratch space, and a rollback extracts again` : 'verified in place; a rollback copies it'
      costs.push({ format: variant.format, backupMs, bytes, verifyMs, totalMs: backupMs + verifyMs, note })
    } finally {
      rmSync(dir, { recursive: true, force: true })
      rmSync(into, { recursive: true, force: true })
    }
  }
  return costs
}

export async function runRecovery(options: BenchOptions): Promise<SectionResult> {
  const runs = Math.max(1, Math.min(options.runs, 7))
  // BENCH_RECOVERY_TMPDIR=/dev/shm puts clusters, archive and snapshots in RAM: the disk of a
  // small VM (burst credits, discard on delete) varies by 2-5× between identical copies.
  const storage = process.env.BENCH_RECOVERY_TMPDIR
  if (storage) process.env.TMPDIR = storage
  const log = (line: string) => console.error(`[recovery] ${line}`)
  const cluster = await startCluster({ archive: true, settings: { max_wal_size: "'4GB'", checkpoint_timeout: "'30min'", shared_buffers: "'128MB'", autovacuum: 'off' } })
  const work = mkdtempSync(join(tmpdir(), 'pgxu-bench-recovery-'))
  chownToOwner(work)
  const owner = clusterOwner()
  const env = { PATH: process.env.PATH }
  const comparisons: Comparison[] = []
  try {
    log(`loading pgbench -i -s ${SCALE}`)
    await cluster.query('CREATE DATABASE bench')
    await cluster.query(`CREATE EXTENSION hstore VERSION '1.7'`, 'bench')
    must(bin(cluster, 'pgbench'), ['-i', '-q', '-s', String(SCALE), 'bench'], pgEnv(cluster, 'bench'))
    await cluster.query('CHECKPOINT')
    const size = Number((await cluster.query<{ s: string }>('SELECT sum(pg_database_size(oid)) AS s FROM pg_database'))[0].s)
    const dbSize = Number((await cluster.query<{ s: string }>(`SELECT pg_database_size('bench') AS s`))[0].s)
    const server = (await cluster.query<{ v: string }>(`SELECT current_setting('server_version') AS v`))[0].v
    log(`cluster ${formatBytes(size)}, bench ${formatBytes(dbSize)}`)

    // ── snapshot vs pg_basebackup + pg_verifybackup ──
    const oursSnap: number[] = []
    const bareSnap: number[] = []
    const snapshotRoot = join(work, 'snapshots')
    const snapshotPhases: Array<Array<{ name: string; durationMs: number }>> = []
    const ourSnapshot = async () => {
      await settle(cluster)
      const started = performance.now()
      const result = await runMode({ mode: 'snapshot', 'database-url': cluster.url('bench'), 'snapshot-strategy': 'basebackup', 'snapshot-dir': snapshotRoot }, silentLogger, env)
      const elapsed = performance.now() - started
      if (result.status !== 'snapshot_created') throw new Error(`snapshot failed: ${result.error}`)
      snapshotPhases.push((result.report as { phases: Array<{ name: string; durationMs: number }> }).phases)
      return { elapsed, manifest: result.outputs!.snapshot! }
    }
    const bareSnapshot = async () => {
      const dir = join(work, `bare-${Date.now()}`)
      await settle(cluster)
      const started = performance.now()
      must(bin(cluster, 'pg_basebackup'), ['-D', dir, '-F', 'p', '-X', 'stream', '-c', 'fast'], pgEnv(cluster))
      must(bin(cluster, 'pg_verifybackup'), ['-q', dir])
      const elapsed = performance.now() - started
      rmSync(dir, { recursive: true, force: true })
      return elapsed
    }
    // Warm-up: one of each (the first archive scan reads the whole pgbench load).
    const warm = await ourSnapshot()
    rmSync(dirname(warm.manifest), { recursive: true, force: true })
    await bareSnapshot()
    snapshotPhases.length = 0
    for (let i = 0; i < runs; i++) {
      const order = i % 2 === 0 ? ['ours', 'bare'] : ['bare', 'ours']
      for (const which of order) {
        if (which === 'ours') {
          const run = await ourSnapshot()
          oursSnap.push(run.elapsed)
          rmSync(dirname(run.manifest), { recursive: true, force: true })
        } else bareSnap.push(await bareSnapshot())
      }
      log(`snapshot run ${i + 1}: ours ${seconds(oursSnap.at(-1)!)}, bare ${seconds(bareSnap.at(-1)!)}`)
    }
    comparisons.push(compare('snapshot (basebackup) vs pg_basebackup + pg_verifybackup', oursSnap, bareSnap, { phases: phaseMedians(snapshotPhases) }))
    log('measuring the base backup formats')
    const formats = formatCosts(cluster, work)

    // ── pitr rollback vs the manual restore ──
    const baseline = await ourSnapshot()
    const manifest = JSON.parse(readFileSync(baseline.manifest, 'utf8')) as SnapshotManifest
    const base = join(dirname(baseline.manifest), manifest.baseBackup!.path!)
    const rp = manifest.restorePoint!
    const oursPitr: number[] = []
    const barePitr: number[] = []
    const oursDown: number[] = []
    const bareDown: number[] = []
    const pitrPhases: Array<Array<{ name: string; durationMs: number }>> = []
    const ourPitr = async () => {
      await upgradeAgain(cluster)
      await settle(cluster)
      const started = performance.now()
      const result = await runMode(
        { mode: 'rollback', 'database-url': cluster.url('bench'), snapshot: baseline.manifest, 'rollback-strategy': 'pitr', pgdata: cluster.dataDir, 'confirm-data-loss': 'true' },
        silentLogger,
        env
      )
      const elapsed = performance.now() - started
      if (result.status !== 'rolled_back') throw new Error(`pitr rollback failed: ${result.error}`)
      oursPitr.push(elapsed)
      oursDown.push((result.report as RollbackReport).pitr?.stoppedForMs ?? NaN)
      pitrPhases.push((result.report as RollbackReport).phases)
      removeSiblings(cluster, /\.(pre-rollback|failed-rollback)-/)
    }
    const bareRestore = async () => {
      await upgradeAgain(cluster)
      const aside = `${cluster.dataDir}.bare-aside`
      await settle(cluster)
      const started = performance.now()
      cluster.stop('fast')
      const stopped = performance.now()
      renameSync(cluster.dataDir, aside)
      must('cp', ['-a', base, cluster.dataDir])
      must('chown', ['-R', `${owner.uid}:${owner.gid}`, cluster.dataDir])
      chmodSync(cluster.dataDir, 0o700)
      appendFileSync(
        join(cluster.dataDir, 'postgresql.auto.conf'),
        `restore_command = 'cp ${manifest.archive!.directory}/%f %p'\nrecovery_target_name = '${rp.name}'\nrecovery_target_timeline = '${rp.timeline}'\nrecovery_target_action = 'promote'\n`
      )
      writeFileSync(join(cluster.dataDir, 'recovery.signal'), '')
      chownToOwner(join(cluster.dataDir, 'recovery.signal'))
      cluster.start()
      await untilPromoted(cluster)
      const done = performance.now()
      barePitr.push(done - started)
      bareDown.push(done - stopped)
      // Outside the timing: leave the configuration as it was, drop the old directory.
      const conf = join(cluster.dataDir, 'postgresql.auto.conf')
      writeFileSync(conf, readFileSync(conf, 'utf8').replace(/^(restore_command|recovery_target\w*) = .*\n/gm, ''))
      rmSync(aside, { recursive: true, force: true })
    }
    await ourPitr() // warm-up
    await bareRestore()
    oursPitr.length = barePitr.length = oursDown.length = bareDown.length = pitrPhases.length = 0
    for (let i = 0; i < runs; i++) {
      if (i % 2 === 0) {
        await ourPitr()
        await bareRestore()
      } else {
        await bareRestore()
        await ourPitr()
      }
      log(`pitr run ${i + 1}: ours ${seconds(oursPitr.at(-1)!)} (down ${seconds(oursDown.at(-1)!)}), bare ${seconds(barePitr.at(-1)!)} (down ${seconds(bareDown.at(-1)!)})`)
    }
    comparisons.push(compare('pitr rollback vs manual restore (copy, recover to the restore point, promote)', oursPitr, barePitr, { downtimeOurs: stats(oursDown), downtimeBare: stats(bareDown), phases: phaseMedians(pitrPhases) }, { ratio: PITR_TARGET_RATIO, inclusive: true }))

    // ── dump rollback vs bare pg_restore ──
    const dumpSnap = await runMode({ mode: 'snapshot', 'database-url': cluster.url('bench'), 'snapshot-strategy': 'dump', 'snapshot-dir': snapshotRoot }, silentLogger, env)
    if (dumpSnap.status !== 'snapshot_created') throw new Error(`dump snapshot failed: ${dumpSnap.error}`)
    const dumpManifest = JSON.parse(readFileSync(dumpSnap.outputs!.snapshot!, 'utf8')) as SnapshotManifest
    const dumpFile = join(dirname(dumpSnap.outputs!.snapshot!), dumpManifest.databases[0].dump!.file)
    const jobs = String(Math.max(1, Math.min(4, availableParallelism())))
    const oursDump: number[] = []
    const bareDump: number[] = []
    const dropAside = async () => {
      const aside = await cluster.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_\\_%' OR datname = 'bench_bare_aside'`)
      for (const row of aside) await cluster.query(`DROP DATABASE "${row.datname}"`)
    }
    const dumpPhases: Array<Array<{ name: string; durationMs: number }>> = []
    const ourDump = async () => {
      await upgradeAgain(cluster)
      await settle(cluster)
      const started = performance.now()
      const result = await runMode({ mode: 'rollback', 'database-url': cluster.url('bench'), snapshot: dumpSnap.outputs!.snapshot!, 'rollback-strategy': 'dump' }, silentLogger, env)
      const elapsed = performance.now() - started
      if (result.status !== 'rolled_back') throw new Error(`dump rollback failed: ${result.error}`)
      oursDump.push(elapsed)
      dumpPhases.push((result.report as RollbackReport).phases)
      await dropAside()
    }
    const bareDumpRestore = async () => {
      await upgradeAgain(cluster)
      await settle(cluster)
      const started = performance.now()
      await cluster.query('ALTER DATABASE bench RENAME TO bench_bare_aside')
      must(bin(cluster, 'createdb'), ['-T', 'template0', 'bench'], pgEnv(cluster))
      must(bin(cluster, 'pg_restore'), ['-j', jobs, '-d', 'bench', dumpFile], pgEnv(cluster))
      bareDump.push(performance.now() - started)
      await dropAside()
      // The bare restore lands on the new hstore; put the recorded one back for the next run of ours.
      await cluster.query(`DROP EXTENSION hstore; CREATE EXTENSION hstore VERSION '1.7'`, 'bench')
    }
    for (let i = 0; i < runs; i++) {
      if (i % 2 === 0) {
        await ourDump()
        await bareDumpRestore()
      } else {
        await bareDumpRestore()
        await ourDump()
      }
      log(`dump run ${i + 1}: ours ${seconds(oursDump.at(-1)!)}, bare ${seconds(bareDump.at(-1)!)}`)
    }
    comparisons.push(compare(`dump rollback of one ${formatBytes(dbSize)} database vs createdb + pg_restore -j ${jobs}`, oursDump, bareDump, { dumpBytes: dumpManifest.databases[0].dump!.bytes, phases: phaseMedians(dumpPhases) }))

    const targetText = (c: Comparison) => `${c.target.inclusive ? '≤' : '<'} ${c.target.ratio}×`
    const rows = comparisons.map((c) => [c.name, seconds(c.ours.median), seconds(c.bare.median), `${c.ratio.toFixed(3)}×`, `${c.ratioOfMedians.toFixed(3)}×`, `${targetText(c)} ${verdict(c.met)}`])
    const downtime = comparisons[1].extra as { downtimeOurs: Stats; downtimeBare: Stats }
    const markdown = [
      `Cluster ${formatBytes(size)} (pgbench -s ${SCALE}; database bench ${formatBytes(dbSize)}), PostgreSQL ${server}, on ${storage ? `${storage} (tmpfs)` : `${tmpdir()} (disk)`}, ${runs} measured run(s) of each, interleaved; medians.`,
      '',
      table(['comparison', 'ours (median)', 'bare tools (median)', 'ratio (median of pairs)', 'ratio of medians', 'target'], rows),
      '',
      `pitr downtime (server stopped until it accepts writes): ours ${seconds(downtime.downtimeOurs.median)}, bare ${seconds(downtime.downtimeBare.median)} — ours copies the base backup before stopping the server.`,
      '',
      'Base backup formats (one run each; PostgreSQL 15 pg_verifybackup reads plain directories only, so tar formats are extracted to be verified):',
      '',
      table(
        ['format', 'pg_basebackup', 'size', 'extract + pg_verifybackup', 'total', 'note'],
        formats.map((f) => [f.format, seconds(f.backupMs), formatBytes(f.bytes), seconds(f.verifyMs), seconds(f.totalMs), f.note])
      )
    ].join('\n')
    return {
      markdown,
      json: {
        section: 'recovery',
        environment: environment(server),
        cluster: { bytes: size, benchDatabaseBytes: dbSize, pgbenchScale: SCALE },
        storage: storage ? `${storage} (tmpfs: in memory)` : `${tmpdir()} (disk)`,
        runs,
        targetRatio: { default: TARGET_RATIO, pitrRollback: PITR_TARGET_RATIO },
        comparisons,
        formats
      },
      missed: comparisons.filter((c) => !c.met).map((c) => `${c.name}: ${c.ratio}× (target ${targetText(c)})`)
    }
  } finally {
    await cluster.destroy()
    rmSync(work, { recursive: true, force: true })
  }
}

export const recoverySection: Section = {
  name: 'recovery',
  description: 'snapshot and pitr/dump rollback on a ~1 GB cluster next to the bare PostgreSQL tools',
  run: runRecovery
}

/** Standalone: npx tsx scripts/bench-recovery.ts [--runs N] [--no-write] */
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2)
  const at = argv.indexOf('--runs')
  const options: BenchOptions = { runs: at >= 0 ? Number(argv[at + 1]) : 5, warmup: 0, write: !argv.includes('--no-write'), check: argv.includes('--check') }
  const result = await runRecovery(options)
  console.log(result.markdown)
  if (options.write) {
    const file = join(ROOT, 'docs', 'benchmarks', 'recovery.json')
    mkdirSync(dirname(file), { recursive: true })
    writeFileSync(file, `${JSON.stringify(result.json, null, 2)}\n`)
    console.log(`wrote ${relative(ROOT, file)}`)
  }
  if (result.missed.length) {
    console.log(`\ntargets missed:\n${result.missed.map((m) => `- ${m}`).join('\n')}`)
    if (options.check) process.exitCode = 1
  }
}
