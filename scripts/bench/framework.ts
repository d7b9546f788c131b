/** The benchmark framework: sections, statistics, Markdown tables, and wire-level round-trip counting. */
import { cpus } from 'node:os'
import { resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import pg from 'pg'

export const ROOT = resolve(import.meta.dirname, '..', '..')


export interface BenchOptions {
  runs: number
  warmup: number
  write: boolean
  /** Exit 1 when a target is missed (default: report only; this is a benchmark, not a test). */
  check: boolean
}

export interface SectionResult {
  /** Markdown printed to the terminal (tables and a verdict per target). */
  markdown: string
  /** Machine-readable figures, written to docs/benchmarks/<name>.json. */
  json: Record<string, unknown>
  /** Targets that were missed; with --check the process then exits 1. */
  missed: string[]
}

export interface Section {
  name: string
  description: string
  run(options: BenchOptions): Promise<SectionResult>
}

export interface Stats {
  n: number
  median: number
  p95: number
  min: number
  max: number
  mean: number
}

/** Nearest-rank percentiles over the samples, in milliseconds rounded to 0.01. */
export function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
  const round = (value: number) => Math.round(value * 100) / 100
  const mid = sorted.length / 2
  const median = sorted.length % 2 ? sorted[Math.floor(mid)] : (sorted[mid - 1] + sorted[mid]) / 2
  return {
    n: sorted.length,
    median: round(median),
    p95: round(rank(95)),
    min: round(sorted[0]),
    max: round(sorted[sorted.length - 1]),
    mean: round(sorted.reduce((sum, value) => sum + value, 0) / sorted.length)
  }
}

export async function measure(runs: number, warmup: number, work: () => Promise<void>): Promise<Stats> {
  for (let i = 0; i < warmup; i++) await work()
  const samples: number[] = []
  for (let i = 0; i < runs; i++) {
    const start = performance.now()
    await work()
    samples.push(performance.now() - start)
  }
  return stats(samples)
}

export function table(header: string[], rows: Array<Array<string | number>>): string {
  const line = (cells: Array<string | number>) => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

export const ms = (value: number) => `${value.toFixed(1)} ms`
export const verdict = (ok: boolean) => (ok ? '✅ met' : '❌ missed')

export function environment(serverVersion?: string): Record<string, unknown> {
  const cpu = cpus()
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: cpu.length,
    cpuModel: cpu[0]?.model?.trim() ?? 'unknown',
    ...(serverVersion ? { postgres: serverVersion } : {})
  }
}

// ─────────────────────── round-trip accounting ───────────────────────

/**
 * Counts what the core sends through the pg driver while `counting` is on: every client.query()
 * call is one round trip (the catalog inspection sends its statements as one simple-protocol
 * string), every client.connect() one session. The core and this script share one `pg` module, so
 * the count covers every statement of a dry-run, not only what inspectDatabase reports itself.
 */
const wire = { counting: false, queries: 0, connections: 0 }
{
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown; connect: (...args: unknown[]) => unknown }
  const query = proto.query
  const connect = proto.connect
  proto.query = function (this: unknown, ...args: unknown[]) {
    if (wire.counting) wire.queries++
    return query.apply(this, args)
  }
  proto.connect = function (this: unknown, ...args: unknown[]) {
    if (wire.counting) wire.connections++
    return connect.apply(this, args)
  }
}

export async function countWire<T>(work: () => Promise<T>): Promise<{ value: T; queries: number; connections: number }> {
  wire.queries = 0
  wire.connections = 0
  wire.counting = true
  try {
    const value = await work()
    return { value, queries: wire.queries, connections: wire.connections }
  } finally {
    wire.counting = false
  }
}

