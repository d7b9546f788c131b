import { describe, expect, it } from '@jest/globals'
import { SUPERUSER_PASSWORD, temporaryDirectory } from './harness/postgres.js'
import { runAction } from './harness/action.js'
import { testCluster, uniqueName } from './helpers.js'

const cluster = await testCluster()

describe('dry-run → execute → verify through the bundled action, chained by outputs', () => {
  it('feeds each step the previous step outputs, as a workflow does', async () => {
    const db = uniqueName('e2e_chain')
    await cluster.createDatabase(db, { hstore: '1.4', pg_trgm: '1.3' })
    const url = cluster.url(db)

    // One RUNNER_TEMP for the job, as a runner gives its steps: verify reads the dry-run's plan-file there.
    const job = { env: { RUNNER_TEMP: temporaryDirectory('pgxu-e2e-job-') } }
    const plan = await runAction({ mode: 'dry-run', 'database-url': url, extensions: 'hstore@1.8\npg_trgm' }, job)
    expect(plan.code).toBe(0)
    expect(JSON.parse(plan.outputs.plan).status).toBe('dry_run_approved')

    const upgrade = await runAction({ mode: 'execute', 'database-url': url, plan: plan.outputs.plan })
    expect(upgrade.code).toBe(0)
    expect(upgrade.outputs.status).toBe('success')
    expect(upgrade.outputs.changed).toBe('true')
    const report = JSON.parse(upgrade.outputs.report)
    expect(report.databases[0].extensions.map((e: { name: string; outcome: string }) => `${e.name}:${e.outcome}`).sort()).toEqual(['hstore:updated', 'pg_trgm:updated'])
    expect(upgrade.outputs['report-file']).toMatch(/report\.json$/)
    expect(upgrade.summary).toContain('| Database | Extension | From → to | Walked | Outcome | Attempts | Duration | Detail |')
    expect(upgrade.stdout).toContain('::group::database')

    const proof = await runAction({ mode: 'verify', 'database-url': url, plan: plan.outputs['plan-file'], 'verify-sql': "SELECT 'a=>1'::hstore -> 'a'; -- expect: 1" }, job)
    expect(proof.code).toBe(0)
    expect(proof.outputs.status).toBe('verified')
    expect(proof.summary).toContain('✓ pass')

    const again = await runAction({ mode: 'execute', 'database-url': url, plan: plan.outputs.plan })
    expect(again.code).toBe(0)
    expect(again.outputs.status).toBe('nothing_to_do')
    expect(again.outputs.changed).toBe('false')

    for (const run of [plan, upgrade, proof, again]) {
      // ::add-mask:: lines carry the secret to the runner, which consumes them and never shows them.
      const printed = run.stdout.split('\n').filter((line) => !line.startsWith('::add-mask::'))
      const everything = [...printed, run.stderr, run.summary, JSON.stringify(run.outputs)].join('\n')
      for (const form of [SUPERUSER_PASSWORD, encodeURIComponent(SUPERUSER_PASSWORD)]) expect(everything).not.toContain(form)
    }
  })

  it('fails the step with annotations when execute fails and when verify fails', async () => {
    const db = uniqueName('e2e_fail')
    await cluster.createDatabase(db, { pgxu_fail: '1.0' })
    const url = cluster.url(db)
    const upgrade = await runAction({ mode: 'execute', 'database-url': url, extensions: 'pgxu_fail' })
    expect(upgrade.code).toBe(1)
    expect(upgrade.outputs.status).toBe('failed')
    expect(upgrade.outputs.error).toContain('UPGRADE_SCRIPT_FAILED')
    expect(upgrade.annotations).toContainEqual(expect.objectContaining({ kind: 'error', properties: expect.stringContaining(`UPGRADE_SCRIPT_FAILED (${db}/pgxu_fail)`) }))

    const proof = await runAction({ mode: 'verify', 'database-url': url, extensions: 'pgxu_fail@1.2', 'verify-sql': 'SELECT 1/0;' })
    expect(proof.code).toBe(1)
    expect(proof.outputs.status).toBe('verify_failed')
    expect(proof.annotations.filter((a) => a.kind === 'error')).toHaveLength(2)
    expect(proof.summary).toContain('✗ fail')
  })
})
