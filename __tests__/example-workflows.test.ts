import { describe, expect, it } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { MODES } from '../src/inputs.js'

/*
 * The example workflows in examples/workflows/: valid for action-validator (as CI checks them),
 * and consistent with action.yml — every `with:` key of our action is a declared input, every
 * `steps.<id>.outputs.<name>` names an earlier step of ours and a declared output — and each
 * chains the steps the documentation promises.
 */

const ROOT = join(import.meta.dirname, '..')
const DIR = join(ROOT, 'examples', 'workflows')
const ACTION = 'our-org/pg-extension-upgrade@v1'

interface Step {
  id?: string
  name?: string
  uses?: string
  run?: string
  if?: string
  with?: Record<string, unknown>
  env?: Record<string, unknown>
}
interface Job {
  'runs-on': unknown
  if?: string
  environment?: unknown
  concurrency?: { group: string; 'cancel-in-progress': boolean }
  steps: Step[]
}
interface Workflow {
  name: string
  on: Record<string, any>
  permissions?: Record<string, string>
  concurrency?: { group: string; 'cancel-in-progress': boolean }
  jobs: Record<string, Job>
}

const action = parse(readFileSync(join(ROOT, 'action.yml'), 'utf8')) as { inputs: Record<string, unknown>; outputs: Record<string, unknown> }
const files = readdirSync(DIR).filter((f) => f.endsWith('.yml')).sort()
const workflows: Record<string, Workflow> = Object.fromEntries(files.map((f) => [f, parse(readFileSync(join(DIR, f), 'utf8')) as Workflow]))
const only = (file: string) => Object.values(workflows[file].jobs)[0]
const ours = (job: Job) => job.steps.filter((s) => s.uses === ACTION)
const step = (job: Job, id: string) => {
  const found = job.steps.find((s) => s.id === id)
  if (!found) throw new Error(`no step ${id}`)
  return found
}

describe('examples/workflows', () => {
  it('has the four documented workflows and nothing under .github/workflows runs them', () => {
    expect(files).toEqual(['drift.yml', 'pr-gate.yml', 'rollback.yml', 'upgrade.yml'])
    expect(readdirSync(join(ROOT, '.github', 'workflows'))).not.toEqual(expect.arrayContaining(files))
  })

  it.each(files)('%s passes action-validator', (file) => {
    const result = spawnSync(join(ROOT, 'node_modules', '.bin', 'action-validator'), [join(DIR, file)], { encoding: 'utf8' })
    expect({ file, status: result.status, stdout: result.stdout }).toEqual({ file, status: 0, stdout: '' })
  })

  it.each(files)('%s: every input given to the action is declared in action.yml, with a valid mode', (file) => {
    for (const job of Object.values(workflows[file].jobs)) {
      for (const s of ours(job)) {
        for (const key of Object.keys(s.with ?? {})) expect({ file, step: s.id, key, declared: key in action.inputs }).toEqual({ file, step: s.id, key, declared: true })
        expect(MODES).toContain(s.with?.mode)
      }
    }
  })

  it.each(files)('%s: every steps.<id>.outputs.<name> is an earlier step of ours and a declared output', (file) => {
    for (const job of Object.values(workflows[file].jobs)) {
      job.steps.forEach((s, index) => {
        const text = JSON.stringify(s)
        for (const [, id, output] of text.matchAll(/steps\.([A-Za-z_][\w-]*)\.outputs\.([A-Za-z_][\w-]*)/g)) {
          const producer = job.steps.slice(0, index).find((earlier) => earlier.id === id)
          expect({ file, id, found: producer !== undefined }).toEqual({ file, id, found: true })
          if (producer?.uses === ACTION) expect({ file, output, declared: output in action.outputs }).toEqual({ file, output, declared: true })
        }
      })
    }
  })

  it.each(files)('%s: secrets only reach inputs, never a run script', (file) => {
    for (const job of Object.values(workflows[file].jobs)) {
      for (const s of job.steps) expect(s.run ?? '').not.toMatch(/secrets\./)
    }
  })
})

describe('pr-gate.yml', () => {
  const workflow = workflows['pr-gate.yml']
  const job = only('pr-gate.yml')

  it('runs on pull requests that change the manifest, with the permission the comment needs', () => {
    expect(workflow.on.pull_request.paths).toContain('extensions.yml')
    expect(workflow.permissions).toEqual({ contents: 'read', 'pull-requests': 'write' })
  })

  it('dry-runs the manifest against staging, with the PR comment on', () => {
    const [plan] = ours(job)
    expect(plan.with).toMatchObject({ mode: 'dry-run', manifest: 'extensions.yml', 'comment-on-pr': true, 'database-url': '${{ secrets.STAGING_DATABASE_URL }}' })
    expect(plan.with).not.toHaveProperty('extensions')
    expect(job.steps[0].uses).toMatch(/^actions\/checkout@/)
  })

  it('skips forks, which get neither secrets nor a write token', () => {
    expect(job.if).toBe('github.event.pull_request.head.repo.full_name == github.repository')
  })
})

describe('upgrade.yml', () => {
  const workflow = workflows['upgrade.yml']
  const job = only('upgrade.yml')

  it('runs on push to main and by hand, one upgrade per environment, never cancelled halfway', () => {
    expect(workflow.on.push.branches).toEqual(['main'])
    expect(workflow.on).toHaveProperty('workflow_dispatch')
    expect(job.concurrency?.group).toContain("inputs.environment || 'staging'")
    expect(job.concurrency?.['cancel-in-progress']).toBe(false)
  })

  it('chains dry-run → snapshot → execute → verify → rollback through step outputs', () => {
    expect(ours(job).map((s) => [s.id, s.with?.mode])).toEqual([
      ['plan', 'dry-run'],
      ['snap', 'snapshot'],
      ['execute', 'execute'],
      ['verify', 'verify'],
      ['rollback', 'rollback']
    ])
    expect(step(job, 'plan').with?.manifest).toBe('extensions.yml')
    expect(step(job, 'execute').with?.plan).toBe('${{ steps.plan.outputs.plan }}')
    expect(step(job, 'verify').with?.plan).toBe('${{ steps.plan.outputs.plan }}')
    expect(step(job, 'rollback').with?.snapshot).toBe('${{ steps.snap.outputs.snapshot }}')
    // The snapshot covers what the plan changes, and rollback checks that it does.
    expect(step(job, 'snap').with?.plan).toBe('${{ steps.plan.outputs.plan }}')
    expect(step(job, 'rollback').with).toMatchObject({ plan: '${{ steps.plan.outputs.plan }}', report: '${{ steps.execute.outputs.report }}' })
  })

  it('gates on the seed expression: only an approved plan goes on', () => {
    const gate = "fromJSON(steps.plan.outputs.plan).status != 'dry_run_approved'"
    expect(job.steps.some((s) => s.if === gate)).toBe(true)
    for (const id of ['snap', 'execute', 'verify']) expect(step(job, id).if).toBe("fromJSON(steps.plan.outputs.plan).status == 'dry_run_approved'")
  })

  it('rolls back only on failure, and only when a snapshot exists; never PITR unattended', () => {
    const rollback = step(job, 'rollback')
    expect(rollback.if).toMatch(/^failure\(\)/)
    expect(rollback.if).toContain("steps.snap.outputs.snapshot != ''")
    expect(rollback.with?.['rollback-strategy']).toBe('auto')
    expect(rollback.with).not.toHaveProperty('confirm-data-loss')
  })
})

describe('rollback.yml', () => {
  const workflow = workflows['rollback.yml']
  const job = only('rollback.yml')
  const inputs = workflow.on.workflow_dispatch.inputs

  it('takes the snapshot or restore point, the strategy and the confirmation as dispatch inputs', () => {
    expect(Object.keys(workflow.on)).toEqual(['workflow_dispatch'])
    expect(inputs.snapshot.type).toBe('string')
    expect(inputs['restore-point'].type).toBe('string')
    expect(inputs.strategy).toMatchObject({ type: 'choice', default: 'auto' })
    expect(inputs.strategy.options).toEqual(['auto', 'downgrade', 'dump', 'pitr'])
    expect(inputs['confirm-data-loss']).toMatchObject({ type: 'boolean', default: false })
  })

  it('passes them to the rollback, on a self-hosted runner on the database host', () => {
    const [rollback] = ours(job)
    expect(rollback.with).toMatchObject({
      mode: 'rollback',
      snapshot: '${{ inputs.snapshot }}',
      'restore-point': '${{ inputs.restore-point }}',
      'rollback-strategy': '${{ inputs.strategy }}',
      'confirm-data-loss': '${{ inputs.confirm-data-loss }}'
    })
    expect(job['runs-on']).toEqual(expect.arrayContaining(['self-hosted', 'pg-db-host']))
    expect(job.concurrency).toEqual({ group: 'pg-extension-upgrade-${{ inputs.environment }}', 'cancel-in-progress': false })
  })
})

describe('drift.yml', () => {
  const workflow = workflows['drift.yml']
  const job = only('drift.yml')

  it('runs on a schedule and by hand, across every database, failing on drift', () => {
    expect(workflow.on.schedule[0].cron).toMatch(/^[\d*/,-]+( [\d*/,-]+){4}$/)
    expect(workflow.on).toHaveProperty('workflow_dispatch')
    expect(ours(job)[0].with).toMatchObject({ mode: 'drift', databases: 'all', 'fail-on-drift': true })
  })
})
