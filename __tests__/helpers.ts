import { silentLogger } from '../src/core/logger.js'
import type { Plan } from '../src/core/plan.js'
import type { RawInputs } from '../src/inputs.js'
import { runMode } from '../src/modes/index.js'
import type { ModeResult } from '../src/modes/types.js'
import { afterAll } from '@jest/globals'
import { startCluster, type Cluster, type ClusterOptions } from './harness/postgres.js'

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
