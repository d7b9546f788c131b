import { beforeAll, describe, expect, it } from '@jest/globals'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runAction } from './harness/action.js'
import { testCluster } from './helpers.js'
import { temporaryDirectory } from './harness/postgres.js'

const cluster = await testCluster()
const workspace = temporaryDirectory('pgxu-workspace-')

const MANIFEST = `# desired extension versions
extensions:
  hstore: default
  pg_trgm: 1.5
databases:
  man_tenant_*:
    extensions:
      citext: default
  man_legacy:
    extensions:
      hstore: 1.7
`

describe('the manifest input, through the bundled action', () => {
  beforeAll(async () => {
    await cluster.createDatabase('man_tenant_a', { hstore: '1.4', pg_trgm: '1.3', citext: '1.4' })
    await cluster.createDatabase('man_tenant_b', { hstore: '1.4', pg_trgm: '1.3', citext: '1.4' })
    await cluster.createDatabase('man_legacy', { hstore: '1.4', pg_trgm: '1.3' })
    await cluster.createDatabase('man_other', { hstore: '1.4' })
    writeFileSync(join(workspace, 'extensions.yml'), MANIFEST)
    writeFileSync(join(workspace, 'broken.yml'), 'extensions:\n  hstore: 1.8\n  "pg_trgm; drop": 1.0\nfleet: []\n')
    writeFileSync(join(workspace, 'missing.yml'), 'extensions:\n  hstore: default\n  no_such_extension: 1.0\ndatabases:\n  man_legacy:\n')
  })

  const action = (inputs: Record<string, string>) =>
    runAction({ 'database-url': cluster.url('postgres'), ...inputs }, { env: { GITHUB_WORKSPACE: workspace } })

  it('plans per database: top-level entries, overridden by the matching patterns, only the databases it names', async () => {
    const run = await action({ mode: 'dry-run', manifest: 'extensions.yml' })
    expect(run.code).toBe(0)
    const plan = JSON.parse(run.outputs.plan)
    expect(plan.request.manifest).toBe('extensions.yml')
    const planned = Object.fromEntries(
      plan.databases.map((d: { name: string; extensions: Array<{ name: string; to: string }> }) => [d.name, d.extensions.map((e) => `${e.name}@${e.to}`).sort()])
    )
    expect(planned).toEqual({
      man_legacy: ['hstore@1.7', 'pg_trgm@1.5'],
      man_tenant_a: ['citext@1.6', 'hstore@1.8', 'pg_trgm@1.5'],
      man_tenant_b: ['citext@1.6', 'hstore@1.8', 'pg_trgm@1.5']
    })
  })

  it('annotates each blocker on the manifest line that asked for it', async () => {
    const run = await action({ mode: 'dry-run', manifest: 'missing.yml' })
    expect(run.code).toBe(1)
    const errors = run.annotations.filter((a) => a.kind === 'error')
    expect(errors).toHaveLength(1)
    expect(errors[0].properties).toContain('file=missing.yml,line=3')
    expect(errors[0].properties).toContain('EXTENSION_NOT_AVAILABLE (man_legacy/no_such_extension)')
  })

  it('reports an invalid manifest problem by problem, each on its line, before connecting', async () => {
    const run = await runAction({ mode: 'dry-run', 'database-url': 'postgresql://nobody@127.0.0.1:1/x', manifest: 'broken.yml' }, { env: { GITHUB_WORKSPACE: workspace } })
    expect(run.code).toBe(1)
    expect(run.outputs.status).toBe('failed')
    const errors = run.annotations.filter((a) => a.kind === 'error')
    expect(errors.map((e) => /line=(\d+)/.exec(e.properties)?.[1])).toEqual(['3', '4'])
    expect(errors.every((e) => e.properties.includes('file=broken.yml'))).toBe(true)
    expect(run.outputs.error).not.toContain('CONNECTION_FAILED')
  })

  it('refuses manifest and extensions together', async () => {
    const run = await action({ mode: 'dry-run', manifest: 'extensions.yml', extensions: 'hstore' })
    expect(run.code).toBe(1)
    expect(run.outputs.error).toContain('inputs "manifest" and "extensions": give one or the other')
  })

  it('executes and verifies with the manifest as the source of every target', async () => {
    const upgraded = await action({ mode: 'execute', manifest: 'extensions.yml', concurrency: '2' })
    expect(upgraded.outputs.status).toBe('success')
    expect(await cluster.extensionVersions('man_legacy')).toMatchObject({ hstore: '1.7', pg_trgm: '1.5' })
    expect(await cluster.extensionVersions('man_tenant_b')).toMatchObject({ hstore: '1.8', pg_trgm: '1.5', citext: '1.6' })
    expect((await cluster.extensionVersions('man_other')).hstore).toBe('1.4')
    const proved = await action({ mode: 'verify', manifest: 'extensions.yml' })
    expect(proved.outputs.status).toBe('verified')
    const drift = await action({ mode: 'drift', manifest: 'extensions.yml' })
    expect(drift.outputs.status).toBe('no_drift')
  })
})
