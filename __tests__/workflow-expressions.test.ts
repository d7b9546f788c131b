import { describe, expect, it } from '@jest/globals'
import { evaluate, evaluateCondition, ExpressionError, interpolate, type ExpressionContext, type Value } from './harness/workflow-expressions.js'

/*
 * The expression evaluator of the test runner (__tests__/harness/workflow-runner.ts), against
 * GitHub's documented semantics: literals, loose equality and its coercions, && and || returning
 * operands, object filters, the functions the workflows use, and how a runner decides `if:`.
 */

const plan = { status: 'dry_run_approved', databases: [{ name: 'tenant_a', extensions: [{ name: 'hstore' }] }, { name: 'tenant_b', extensions: [] }, { other: 1 }] }

const context = (status = { failed: false, cancelled: false }): ExpressionContext => ({
  status,
  contexts: {
    steps: {
      plan: { outputs: { plan: JSON.stringify(plan), status: 'dry_run_approved', empty: '' }, outcome: 'success', conclusion: 'success' },
      snap: { outputs: {}, outcome: 'skipped', conclusion: 'skipped' }
    },
    inputs: { environment: '', strategy: 'auto', 'confirm-data-loss': false, 'restore-point': 'pgxu_1' },
    secrets: { DATABASE_URL: 'postgresql://u:p@h/db' },
    vars: { PG_SERVICE: 'postgresql@15-main' },
    env: { STATUS: 'ok' },
    github: { run_id: '42', event_name: 'workflow_dispatch', repository: 'our-org/app', event: { pull_request: { head: { repo: { full_name: 'our-org/app' } } } } },
    runner: { temp: '/tmp/runner' }
  }
})

const value = (expression: string, status?: { failed: boolean; cancelled: boolean }): Value => evaluate(expression, context(status))

describe('literals and operators', () => {
  it.each<[string, Value]>([
    ["'it''s'", "it's"],
    ['42', 42],
    ['-9.5', -9.5],
    ['0xff', 255],
    ['1e3', 1000],
    ['true', true],
    ['false', false],
    ['null', null],
    ['!true', false],
    ['!!\'x\'', true],
    ["!''", true],
    ['!0', true],
    ['(1 == 1) && (2 == 2)', true],
    ["'' || 'fallback'", 'fallback'],
    ["'first' || 'second'", 'first'],
    ["'a' && 'b'", 'b'],
    ["0 && 'b'", 0],
    ["null || ''", ''],
    ['1 < 2', true],
    ['2 <= 2', true],
    ["'b' > 'A'", true],
    ["'abc' >= 'ABC'", true],
    ["'x' < 1", false],
    ["!(1 == 2) && !false", true]
  ])('%s → %p', (expression, expected) => {
    expect(value(expression)).toEqual(expected)
  })
})

describe('loose equality, as documented', () => {
  it.each<[string, boolean]>([
    ["'ABC' == 'abc'", true],
    ["'dry_run_APPROVED' == 'dry_run_approved'", true],
    ["'1' == 1", true],
    ["'1.0' == 1", true],
    ["' 2 ' == 2", true],
    ["'0x10' == 16", true],
    ["'abc' == 0", false],
    ["'' == 0", true],
    ["'' == null", true],
    ['null == 0', true],
    ['null == null', true],
    ['null == false', true],
    ['true == 1', true],
    ["true == 'true'", false],
    ["false == ''", true],
    ['0 == false', true],
    ['NaN == NaN', false],
    ['steps.plan == steps.plan', true],
    ['steps.plan == steps.snap', false],
    ["fromJSON('[]') == fromJSON('[]')", false],
    ["'a' != 'A'", false],
    ["steps.snap.outputs.snapshot != ''", false],
    ["steps.snap.outputs.snapshot == ''", true],
    ['steps.plan.outputs.empty == null', true]
  ])('%s → %p', (expression, expected) => {
    expect(value(expression)).toBe(expected)
  })
})

describe('contexts, property access and object filters', () => {
  it.each<[string, Value]>([
    ['steps.plan.outputs.status', 'dry_run_approved'],
    ['steps.plan.outcome', 'success'],
    ['steps.snap.conclusion', 'skipped'],
    ['steps.missing.outputs.status', null],
    ['steps.plan.outputs.missing', null],
    ["steps['plan'].outputs['status']", 'dry_run_approved'],
    ['STEPS.Plan.Outputs.Status', 'dry_run_approved'],
    ['inputs.restore-point', 'pgxu_1'],
    ['inputs.confirm-data-loss', false],
    ["inputs.environment || 'staging'", 'staging'],
    ['secrets.DATABASE_URL', 'postgresql://u:p@h/db'],
    ['secrets.MISSING', null],
    ['vars.PG_SERVICE', 'postgresql@15-main'],
    ['env.STATUS', 'ok'],
    ['runner.temp', '/tmp/runner'],
    ['github.run_id', '42'],
    ['github.event_name', 'workflow_dispatch'],
    ['github.event.pull_request.head.repo.full_name == github.repository', true],
    ['fromJSON(steps.plan.outputs.plan).status', 'dry_run_approved'],
    ['fromJSON(steps.plan.outputs.plan).databases[1].name', 'tenant_b'],
    ['fromJSON(steps.plan.outputs.plan).databases[9]', null],
    ['fromJSON(steps.plan.outputs.plan).databases.*.name', ['tenant_a', 'tenant_b']],
    ['fromJSON(steps.plan.outputs.plan).databases[*].name', ['tenant_a', 'tenant_b']],
    ['fromJSON(steps.plan.outputs.plan).databases.*.extensions.*.name', ['hstore']],
    ["join(fromJSON(steps.plan.outputs.plan).databases.*.name, ',')", 'tenant_a,tenant_b'],
    ["join(fromJSON('{\"a\":{\"n\":1},\"b\":{\"n\":2}}').*.n)", '1,2'],
    ['fromJSON(steps.plan.outputs.plan).status.*', null],
    ['fromJSON(steps.plan.outputs.plan).nothing.*.name', null]
  ])('%s → %p', (expression, expected) => {
    expect(value(expression)).toEqual(expected)
  })
})

describe('functions', () => {
  it.each<[string, Value]>([
    ["contains('Hello world', 'WORLD')", true],
    ["contains('Hello', 'bye')", false],
    ["contains(fromJSON('[\"push\", \"pull_request\"]'), github.event_name)", false],
    ["contains(fromJSON('[\"push\", \"workflow_dispatch\"]'), github.event_name)", true],
    ["contains(fromJSON('[1, 2]'), '2')", true],
    ["contains(fromJSON(steps.plan.outputs.plan).databases.*.name, 'TENANT_A')", true],
    ["startsWith('refs/heads/main', 'REFS/')", true],
    ["startsWith('main', 'x')", false],
    ["endsWith('manifest.json', '.JSON')", true],
    ["format('{0}-{1}-{0}', 'a', 1)", 'a-1-a'],
    ["format('{{literal}} {0}', true)", '{literal} true'],
    ["join('single')", 'single'],
    ["join(fromJSON('[1, true, null, \"x\"]'), ' | ')", '1 | true |  | x'],
    ["toJSON('x')", '"x"'],
    ["toJSON(fromJSON('{\"a\":[1]}'))", '{\n  "a": [\n    1\n  ]\n}'],
    ['toJSON(null)', 'null'],
    ["fromJSON('true')", true],
    ["fromJSON('12')", 12],
    ['FromJson(\'"x"\')', 'x'],
    ['success()', true],
    ['failure()', false],
    ['always()', true],
    ['cancelled()', false]
  ])('%s → %p', (expression, expected) => {
    expect(value(expression)).toEqual(expected)
  })

  it('status functions follow the job: after a failure, success() is false and failure() true', () => {
    const failed = { failed: true, cancelled: false }
    expect([value('success()', failed), value('failure()', failed), value('always()', failed), value('cancelled()', failed)]).toEqual([false, true, true, false])
  })
})

describe('errors are errors, never a guess', () => {
  it.each([
    ['fromJSON(steps.plan.outputs.empty)', /empty input/],
    ["fromJSON('{not json')", /fromJSON/],
    ['nosuchcontext.x', /unrecognized named-value/],
    ['nosuch(1)', /unrecognized function/],
    ['contains(1)', /takes 2 arguments/],
    ["'unterminated", /unterminated string/],
    ['1 ==', /unexpected token/],
    ['(1 == 1', /expected "\)"/],
    ['a.b c', /unrecognized named-value|unexpected token/],
    ["format('{1}', 'a')", /has no argument/],
    ['1 = 1', /unexpected character/]
  ])('%s', (expression, message) => {
    expect(() => value(expression)).toThrow(ExpressionError)
    expect(() => value(expression)).toThrow(message)
  })
})

describe('templates', () => {
  it.each<[string, string]>([
    ['plain', 'plain'],
    ['${{ steps.plan.outputs.status }}', 'dry_run_approved'],
    ['echo "nothing to apply (${{ steps.plan.outputs.status }})"', 'echo "nothing to apply (dry_run_approved)"'],
    ["${{ inputs.environment || 'staging' }}-${{ github.run_id }}", 'staging-42'],
    ["${{ '}}' }}", '}}'],
    ['${{ runner.temp }}/pg-extension-upgrade/*/*.json', '/tmp/runner/pg-extension-upgrade/*/*.json'],
    ['${{ inputs.confirm-data-loss }}', 'false'],
    ['${{ steps.snap.outputs.snapshot }}', ''],
    ['${{ 3 }}', '3'],
    ['sudo systemctl stop ${{ vars.PG_SERVICE }}', 'sudo systemctl stop postgresql@15-main']
  ])('%s → %s', (template, expected) => {
    expect(interpolate(template, context())).toBe(expected)
  })

  it('an object where a string is expected is an error', () => {
    expect(() => interpolate('${{ steps.plan }}', context())).toThrow(/mapping was not expected/)
    expect(() => interpolate("${{ fromJSON('[1]') }}", context())).toThrow(/sequence was not expected/)
  })
})

describe('if: as a runner decides it', () => {
  const ok = { failed: false, cancelled: false }
  const failed = { failed: true, cancelled: false }
  it.each<[string | undefined, typeof ok, boolean]>([
    [undefined, ok, true],
    [undefined, failed, false],
    ['', failed, false],
    ["steps.plan.outputs.status == 'dry_run_approved'", ok, true],
    ["steps.plan.outputs.status == 'dry_run_approved'", failed, false],
    ["${{ steps.plan.outputs.status == 'dry_run_approved' }}", ok, true],
    ["${{ steps.plan.outputs.status != 'dry_run_approved' }}", ok, false],
    ["fromJSON(steps.plan.outputs.plan).status != 'dry_run_approved'", ok, false],
    ["failure() && steps.snap.outputs.snapshot != ''", failed, false],
    ["failure() && steps.plan.outputs.status != ''", failed, true],
    ["failure() && steps.plan.outputs.status != ''", ok, false],
    ['always()', failed, true],
    ['${{ always() }}', failed, true],
    ['!cancelled()', failed, true],
    ['success() || failure()', failed, true],
    ['true', failed, false],
    ['false', ok, false],
    // Text around ${{ }} makes a non-empty string: always true (a classic workflow bug, kept faithfully).
    ["${{ steps.plan.outputs.status }} == 'other'", ok, true]
  ])('if: %s (failed before: %p) → %p', (condition, status, expected) => {
    expect(evaluateCondition(condition, context(status))).toBe(expected)
  })

  it('short-circuits: after a failure, success() && fromJSON(empty) is never evaluated', () => {
    expect(evaluateCondition("fromJSON(steps.plan.outputs.empty).status == 'x'", context(failed))).toBe(false)
    expect(() => evaluateCondition("fromJSON(steps.plan.outputs.empty).status == 'x'", context(ok))).toThrow(/empty input/)
  })
})
