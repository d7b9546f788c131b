import { describe, expect, it } from '@jest/globals'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { temporaryDirectory } from './harness/postgres.js'
import { MAX_ENV_STRING, readmeWorkflow, runWorkflow, type WorkflowRunOptions } from './harness/workflow-runner.js'

/*
 * The test runner itself (no PostgreSQL): a stand-in JavaScript action that echoes its inputs
 * shows what a step receives (INPUT_* variables, action.yml defaults, the runner's variables), and
 * small workflows show the runner's rules — if: and the status functions, outputs between steps,
 * GITHUB_ENV, continue-on-error, external actions, E2BIG before a process starts and the 1 MiB
 * outputs limit. A runner that got these wrong would make the workflow tests prove nothing.
 */

const actionDir = temporaryDirectory('pgxu-echo-action-')
writeFileSync(
  join(actionDir, 'action.yml'),
  `name: echo
inputs:
  message: { description: m, required: true }
  size: { description: bytes of output to write, default: "0" }
  fail: { description: exit 1, default: "false" }
  token: { description: t, default: "\${{ github.token }}" }
  with-default: { description: d, default: "from action.yml" }
runs:
  using: node24
  main: index.js
`
)
writeFileSync(
  join(actionDir, 'index.js'),
  `const fs = require('node:fs')
const inputs = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('INPUT_')))
const out = (name, value) => fs.appendFileSync(process.env.GITHUB_OUTPUT, name + '<<EOF_\\n' + value + '\\nEOF_\\n')
out('inputs', JSON.stringify(inputs))
out('seen', JSON.stringify({ cwd: process.cwd(), temp: process.env.RUNNER_TEMP, workspace: process.env.GITHUB_WORKSPACE, event: process.env.GITHUB_EVENT_NAME, fromEnv: process.env.FROM_ENV ?? null }))
out('message', process.env.INPUT_MESSAGE)
if (Number(process.env.INPUT_SIZE) > 0) out('big', 'x'.repeat(Number(process.env.INPUT_SIZE)))
fs.appendFileSync(process.env.GITHUB_STEP_SUMMARY, '### echo ' + process.env.INPUT_MESSAGE + '\\n')
if (process.env.INPUT_FAIL === 'true') { console.log('::error file=a.yml,line=3::asked to fail'); process.exit(1) }
`
)

const workspace = temporaryDirectory('pgxu-echo-workspace-')
mkdirSync(join(workspace, 'sub'))

const job = (steps: string, extra: Partial<WorkflowRunOptions> = {}) =>
  runWorkflow({ workflow: `on: { workflow_dispatch: { inputs: { who: { type: string, default: world }, flag: { type: boolean, default: false } } } }\njobs:\n  only:\n    steps:\n${steps}`, workspace, actions: { 'acme/echo@v1': actionDir }, ...extra })

describe('an action step', () => {
  it('gets its inputs as INPUT_<NAME> (hyphens kept), the action.yml defaults, the runner variables, the workspace as working directory', async () => {
    const result = await job(
      `      - id: one
        uses: acme/echo@v1
        env: { FROM_ENV: "\${{ inputs.who }}" }
        with:
          message: hello \${{ inputs.who }}
          size: 0
`,
      { github: { token: 'ghs_x' } }
    )
    const step = result.step('one')
    expect(step).toMatchObject({ status: 'ran', outcome: 'success', exitCode: 0, summary: '### echo hello world\n' })
    expect(JSON.parse(step.outputs.inputs)).toEqual({ INPUT_MESSAGE: 'hello world', INPUT_SIZE: '0', INPUT_FAIL: 'false', INPUT_TOKEN: 'ghs_x', 'INPUT_WITH-DEFAULT': 'from action.yml' })
    expect(JSON.parse(step.outputs.seen)).toEqual({ cwd: workspace, temp: result.runnerTemp, workspace, event: 'workflow_dispatch', fromEnv: 'world' })
    expect(result.conclusion).toBe('success')
  })

  it('refuses to start with E2BIG when one variable is over 128 KiB, as Linux does; just under it starts', async () => {
    // NAME=value plus its NUL: INPUT_MESSAGE= is 14 bytes.
    const fits = MAX_ENV_STRING - 'INPUT_MESSAGE='.length - 1
    const result = await job(`      - id: fits
        uses: acme/echo@v1
        with: { message: "${'m'.repeat(fits)}" }
      - id: big
        uses: acme/echo@v1
        with: { message: "${'m'.repeat(fits + 1)}" }
      - id: after
        uses: acme/echo@v1
        with: { message: after }
`)
    expect(result.step('fits')).toMatchObject({ status: 'ran', outcome: 'success' })
    expect(result.step('big')).toMatchObject({ status: 'not-started', ran: false, outcome: 'failure', error: expect.stringMatching(/^E2BIG: .*INPUT_MESSAGE is 131073 bytes/) })
    expect(result.step('after').status).toBe('skipped')
    expect(result.conclusion).toBe('failure')
  })

  it("fails the step that takes the job's outputs over 1 MiB", async () => {
    const result = await job(`      - id: a
        uses: acme/echo@v1
        with: { message: a, size: 600000 }
      - id: b
        uses: acme/echo@v1
        with: { message: b, size: 600000 }
`)
    expect(result.step('a').outcome).toBe('success')
    expect(result.step('b')).toMatchObject({ status: 'ran', exitCode: 0, outcome: 'failure', error: expect.stringContaining('over GitHub') })
    expect(result.conclusion).toBe('failure')
  })
})

describe('the job: if, status functions, outputs, env, external actions', () => {
  it('after a failure only failure()/always() steps run; outcome and outputs are visible to later steps', async () => {
    const result = await job(`      - uses: actions/checkout@v6
      - id: first
        uses: acme/echo@v1
        with: { message: first }
      - id: broken
        uses: acme/echo@v1
        with: { message: "\${{ steps.first.outputs.message }}-broken", fail: true }
      - id: normal
        uses: acme/echo@v1
        with: { message: never }
      - id: when-failed
        if: failure() && steps.broken.outcome == 'failure'
        run: echo "broken said \${{ steps.broken.outputs.message }}"
      - id: always
        if: \${{ always() }}
        run: echo "ok=\${{ job.status }}" >> "$GITHUB_OUTPUT"
      - id: skipped-if
        if: always() && steps.normal.outcome != 'skipped'
        run: exit 1
`)
    expect(result.steps.map((s) => [s.id ?? s.name, s.status, s.outcome])).toEqual([
      ['Run actions/checkout@v6', 'skipped-external', 'success'],
      ['first', 'ran', 'success'],
      ['broken', 'ran', 'failure'],
      ['normal', 'skipped', 'skipped'],
      ['when-failed', 'ran', 'success'],
      ['always', 'ran', 'success'],
      ['skipped-if', 'skipped', 'skipped']
    ])
    expect(result.step('broken').annotations).toEqual([{ kind: 'error', properties: 'file=a.yml,line=3', message: 'asked to fail' }])
    expect(result.step('when-failed').stdout).toBe('broken said first-broken\n')
    expect(result.step('always').outputs).toEqual({ ok: 'failure' })
    expect(result.conclusion).toBe('failure')
  })

  it('run steps: bash -e -o pipefail, GITHUB_ENV for later steps, continue-on-error keeps the job green, expression errors fail the step', async () => {
    const result = await job(`      - id: export
        run: |
          echo "CARRIED=from step one" >> "$GITHUB_ENV"
          echo "value=\${{ inputs.flag }}" >> "$GITHUB_OUTPUT"
      - id: reads
        working-directory: sub
        run: echo "$CARRIED \${{ env.CARRIED }} $(basename "$PWD")"
      - id: pipefail
        continue-on-error: true
        run: false | true
      - id: errexit
        continue-on-error: true
        run: |
          false
          echo unreachable
      - id: bad-expression
        continue-on-error: true
        run: echo "\${{ fromJSON(steps.export.outputs.missing).x }}"
`)
    expect(result.step('export').outputs).toEqual({ value: 'false' })
    expect(result.step('reads').stdout).toBe('from step one from step one sub\n')
    expect(result.step('pipefail')).toMatchObject({ outcome: 'failure', conclusion: 'success', exitCode: 1 })
    expect(result.step('errexit')).toMatchObject({ outcome: 'failure', conclusion: 'success', stdout: '' })
    expect(result.step('bad-expression')).toMatchObject({ status: 'not-started', outcome: 'failure', error: expect.stringContaining('fromJSON: empty input') })
    expect(result.conclusion).toBe('success')
  })

  it("a job whose if is false is skipped, and the README's workflow block is the one with jobs:", async () => {
    const skipped = await runWorkflow({ workflow: `jobs:\n  j:\n    if: github.event_name == 'pull_request'\n    steps:\n      - run: exit 1\n`, workspace, event: { name: 'push' } })
    expect(skipped).toMatchObject({ conclusion: 'skipped', steps: [] })
    const readme = readmeWorkflow('# x\n## Use it in a workflow\n\n```yaml\n- uses: a\n```\n\n```yaml\njobs:\n  a: {}\n```\n## Next\n```yaml\njobs: {}\n```\n', '## Use it in a workflow')
    expect(readme).toBe('jobs:\n  a: {}\n')
  })
})
