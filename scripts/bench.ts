/**
 * Benchmarks (npm run bench [-- <section> …] [--runs N] [--warmup N] [--no-write] [--check]).
 *
 * A benchmark, not a timed test: it prints a Markdown table per section and writes the figures to
 * docs/benchmarks/<section>.json, so that docs/performance.md can quote them and a later run can be
 * compared with them. Sections are registered in SECTIONS below; later issues add theirs (execute
 * overhead, fleet runs, snapshot/rollback) as further entries.
 *
 * It uses the same throwaway clusters as the tests (__tests__/harness/postgres.ts) and calls the
 * core in-process, so no network or container is needed: only the PostgreSQL server binaries.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { performance } from 'node:perf_hooks'
import { concurrencySection } from './bench/concurrency.js'
import { dryRunSection } from './bench/dry-run.js'
import { executeSection } from './bench/execute.js'
import { fleetSection } from './bench/fleet.js'
import { ROOT, type BenchOptions, type Section } from './bench/framework.js'
import { profileSection } from './bench/profile.js'
import { recoverySection } from './bench-recovery.js'

const OUT_DIR = join(ROOT, 'docs', 'benchmarks')

/** The registry: each section writes docs/benchmarks/<name>.json and has its part of docs/performance.md. */
const SECTIONS: Section[] = [dryRunSection, executeSection, fleetSection, concurrencySection, profileSection, recoverySection]

// ──────────────────────────────── main ────────────────────────────────

function usage(): string {
  return [
    'usage: npm run bench [-- <section> …] [--runs N] [--warmup N] [--no-write] [--check]',
    '',
    '  --runs N     measured runs per figure (default 20)',
    '  --warmup N   unmeasured runs first (default 2)',
    '  --no-write   do not write docs/benchmarks/<section>.json',
    '  --check      exit 1 when a target is missed',
    '',
    'sections (default: all):',
    ...SECTIONS.map((s) => `  ${s.name.padEnd(12)} ${s.description}`)
  ].join('\n')
}

function parseArgs(argv: string[]): { sections: Section[]; options: BenchOptions } {
  const options: BenchOptions = { runs: 20, warmup: 2, write: true, check: false }
  const names: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const number = (flag: string) => {
      const value = Number(argv[++i])
      if (!Number.isInteger(value) || value < (flag === '--runs' ? 1 : 0)) throw new Error(`${flag} needs a whole number`)
      return value
    }
    if (arg === '--help' || arg === '-h') {
      console.log(usage())
      process.exit(0)
    } else if (arg === '--runs') options.runs = number(arg)
    else if (arg === '--warmup') options.warmup = number(arg)
    else if (arg === '--no-write') options.write = false
    else if (arg === '--check') options.check = true
    else if (arg.startsWith('-')) throw new Error(`unknown option ${arg}`)
    else names.push(arg)
  }
  const unknown = names.filter((n) => !SECTIONS.some((s) => s.name === n))
  if (unknown.length) throw new Error(`unknown section(s): ${unknown.join(', ')}`)
  return { sections: names.length ? SECTIONS.filter((s) => names.includes(s.name)) : SECTIONS, options }
}

async function main(): Promise<number> {
  let parsed
  try {
    parsed = parseArgs(process.argv.slice(2))
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n\n${usage()}`)
    return 2
  }
  const { sections, options } = parsed
  const missed: string[] = []
  for (const section of sections) {
    console.log(`\n## ${section.name}: ${section.description}\n`)
    const started = performance.now()
    const result = await section.run(options)
    console.log(result.markdown)
    console.log(`\n(${section.name} took ${((performance.now() - started) / 1000).toFixed(1)} s)`)
    if (options.write) {
      const file = join(OUT_DIR, `${section.name}.json`)
      mkdirSync(dirname(file), { recursive: true })
      writeFileSync(file, `${JSON.stringify(result.json, null, 2)}\n`)
      console.log(`wrote ${relative(ROOT, file)}`)
    }
    missed.push(...result.missed)
  }
  if (missed.length) {
    console.log(`\ntargets missed:\n${missed.map((m) => `- ${m}`).join('\n')}`)
    return options.check ? 1 : 0
  }
  return 0
}

process.exitCode = await main()
