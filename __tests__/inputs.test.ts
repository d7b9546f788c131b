import { describe, expect, it } from '@jest/globals'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { CodedError } from '../src/core/errors.js'
import { INPUT_NAMES, MODES, inputMeta, parseInputs, type RawInputs } from '../src/inputs.js'
import { ROOT } from './harness/action.js'

/** Parses inputs and returns the one error they raise; fails the test when they parse. */
function invalid(raw: RawInputs): CodedError {
  try {
    parseInputs(raw)
  } catch (error) {
    expect(error).toBeInstanceOf(CodedError)
    return error as CodedError
  }
  throw new Error(`inputs were accepted: ${JSON.stringify(raw)}`)
}

const dryRun = (raw: RawInputs = {}) => parseInputs({ mode: 'dry-run', ...raw })

describe('booleans', () => {
  it.each([
    ['true', true],
    ['false', false],
    ['TRUE', true],
    ['False', false],
    [' tRuE ', true]
  ])('"%s" is %s', (given, expected) => {
    expect(dryRun({ 'allow-downgrade': given }).allowDowngrade).toBe(expected)
    expect(dryRun({ 'install-missing': given }).installMissing).toBe(expected)
  })

  it('defaults to false when empty or absent', () => {
    expect(dryRun({ 'allow-downgrade': '' }).allowDowngrade).toBe(false)
    expect(dryRun().installMissing).toBe(false)
  })

  it.each(['yes', '1', 'on', 'truee'])('rejects "%s", naming the input and the allowed values', (given) => {
    const error = invalid({ mode: 'dry-run', 'allow-downgrade': given })
    expect(error.code).toBe('INVALID_INPUT')
    expect(error.message).toContain('input "allow-downgrade"')
    expect(error.message).toContain(`"${given}"`)
    expect(error.message).toContain('true or false')
  })
})

describe('durations', () => {
  it.each([
    ['500ms', 500],
    ['5s', 5000],
    ['15min', 900_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['1.5s', 1500],
    ['250', 250],
    [' 2 s ', 2000]
  ])('"%s" is %d ms', (given, ms) => {
    expect(dryRun({ 'lock-timeout': given }).lockTimeout).toBe(ms)
    expect(dryRun({ 'connect-timeout': given }).connectTimeout).toBe(ms)
  })

  it('applies the defaults of action.yml', () => {
    const inputs = dryRun()
    expect(inputs.lockTimeout).toBe(5000)
    expect(inputs.statementTimeout).toBe(15 * 60_000)
    expect(inputs.connectTimeout).toBe(10_000)
    expect(inputs.longTransactionThreshold).toBe(5 * 60_000)
  })

  it.each(['0', '0ms', '0s', '0.4ms', 'garbage', '5 parsecs', '-5s', '5S', '1e3', 's', '5s5'])('rejects "%s"', (given) => {
    const error = invalid({ mode: 'dry-run', 'lock-timeout': given })
    expect(error.code).toBe('INVALID_INPUT')
    expect(error.message).toContain('input "lock-timeout"')
    expect(error.message).toContain(`"${given}"`)
    // says what is allowed
    expect(error.message).toMatch(/ms, s, min, h/)
    expect(error.message).toContain('5s')
  })

  it('names each duration input in its own error', () => {
    for (const name of ['statement-timeout', 'connect-timeout', 'long-transaction-threshold'] as const) {
      expect(invalid({ mode: 'dry-run', [name]: 'soon' }).message).toContain(`input "${name}"`)
    }
  })
})

describe('integers', () => {
  it.each([
    ['0', 0],
    ['3', 3],
    ['20', 20],
    [' 7 ', 7]
  ])('max-retries "%s" is %d', (given, expected) => {
    expect(dryRun({ 'max-retries': given }).maxRetries).toBe(expected)
  })

  it('defaults to 3', () => {
    expect(dryRun().maxRetries).toBe(3)
  })

  it.each(['21', '-1', '3.5', '+3', 'three', '1e1', '0x3'])('rejects "%s" with the allowed range', (given) => {
    const error = invalid({ mode: 'dry-run', 'max-retries': given })
    expect(error.code).toBe('INVALID_INPUT')
    expect(error.message).toContain('input "max-retries"')
    expect(error.message).toContain('from 0 to 20')
  })
})

describe('extension lists', () => {
  it('splits on newlines and commas, drops blanks and # comments', () => {
    const extensions = dryRun({ extensions: '# what to upgrade\nhstore@1.8\npg_trgm, citext # contrib\n\n  cube ,, uuid-ossp\n' }).extensions
    expect(extensions).toEqual([{ name: 'hstore', version: '1.8' }, { name: 'pg_trgm' }, { name: 'citext' }, { name: 'cube' }, { name: 'uuid-ossp' }])
  })

  it('treats name@default as the default version', () => {
    expect(dryRun({ extensions: 'hstore@default' }).extensions).toEqual([{ name: 'hstore' }])
  })

  it('keeps versions with dashes, pluses and letters', () => {
    expect(dryRun({ extensions: 'pg_cron@1.4-1, citus@12.1-1, postgis@3.3.0rc1' }).extensions).toEqual([
      { name: 'pg_cron', version: '1.4-1' },
      { name: 'citus', version: '12.1-1' },
      { name: 'postgis', version: '3.3.0rc1' }
    ])
  })

  it('merges exact duplicates and rejects one name with two versions', () => {
    expect(dryRun({ extensions: 'hstore, hstore@default, hstore' }).extensions).toEqual([{ name: 'hstore' }])
    expect(dryRun({ extensions: 'hstore@1.8\nhstore@1.8' }).extensions).toEqual([{ name: 'hstore', version: '1.8' }])
    const error = invalid({ mode: 'dry-run', extensions: 'hstore@1.8, hstore@1.7' })
    expect(error.message).toContain('input "extensions"')
    expect(error.message).toContain('"hstore" is listed twice')
  })

  it('accepts Windows line endings, with comments', () => {
    expect(dryRun({ extensions: 'hstore\r\npg_trgm\r\n' }).extensions).toEqual([{ name: 'hstore' }, { name: 'pg_trgm' }])
    // A trailing comment on a CRLF line must be dropped like on an LF line.
    expect(dryRun({ extensions: 'hstore # key-value\r\npg_trgm\r\n' }).extensions).toEqual([{ name: 'hstore' }, { name: 'pg_trgm' }])
  })

  it('is empty when not given', () => {
    expect(dryRun().extensions).toEqual([])
    expect(dryRun({ extensions: '\n# nothing\n' }).extensions).toEqual([])
  })

  it.each([
    ['hstore; drop table t', 'is not an extension name'],
    ['hstore"', 'is not an extension name'],
    ['@1.0', 'is not an extension name'],
    ['a b', 'is not an extension name'],
    ['x'.repeat(64), 'is not an extension name'],
    ['hstore@', 'has no valid version'],
    ["hstore@1.0'; drop", 'has no valid version'],
    ['hstore@1--2', 'has no valid version'],
    ['hstore@1.8@2', 'has no valid version']
  ])('rejects %j', (entry, problem) => {
    const error = invalid({ mode: 'dry-run', extensions: entry })
    expect(error.code).toBe('INVALID_INPUT')
    expect(error.message).toContain('input "extensions"')
    expect(error.message).toContain(problem)
    expect(error.message).toContain(`"${entry}"`)
  })

  it('accepts a 63-character name (NAMEDATALEN - 1)', () => {
    expect(dryRun({ extensions: 'x'.repeat(63) }).extensions).toEqual([{ name: 'x'.repeat(63) }])
  })

  it('staged-extensions takes names only', () => {
    expect(dryRun({ 'staged-extensions': 'pg_partman, pgxu_staged' }).stagedExtensions).toEqual(['pg_partman', 'pgxu_staged'])
    const error = invalid({ mode: 'dry-run', 'staged-extensions': 'pg_partman@5.0.1' })
    expect(error.message).toContain('input "staged-extensions"')
    expect(error.message).toContain('without @version')
  })
})

describe('mode', () => {
  it.each(MODES)('accepts %s', (mode) => {
    expect(parseInputs({ mode }).mode).toBe(mode)
  })

  it('is required, and the error lists the modes', () => {
    for (const raw of [{}, { mode: '' }] as RawInputs[]) {
      const error = invalid(raw)
      expect(error.code).toBe('INVALID_INPUT')
      expect(error.message).toContain('input "mode"')
      expect(error.message).toContain('required')
      expect(error.message).toContain(MODES.join(', '))
    }
  })

  it.each(['deploy', 'DRY-RUN', 'dry_run'])('rejects the unknown mode %s, listing the modes', (mode) => {
    const error = invalid({ mode })
    expect(error.code).toBe('INVALID_INPUT')
    expect(error.message).toContain('input "mode"')
    for (const known of MODES) expect(error.message).toContain(known)
  })

  it('says a given but unknown mode is unknown, not that it is required', () => {
    // The mode was given, only its value is wrong: the message must not say it is missing.
    const error = invalid({ mode: 'deploy' })
    expect(error.message).not.toContain('is required')
  })
})

describe('errors', () => {
  it('reports every bad input in one CodedError, each named', () => {
    const error = invalid({ mode: 'dry-run', 'lock-timeout': 'soon', 'max-retries': 'many', 'allow-downgrade': 'maybe', extensions: 'a;b' })
    expect(error.code).toBe('INVALID_INPUT')
    for (const name of ['lock-timeout', 'max-retries', 'allow-downgrade', 'extensions']) expect(error.message).toContain(`input "${name}"`)
    expect(error.message).not.toContain('\n    at ')
  })

  it('treats an empty string as "not given", so the default applies', () => {
    const inputs = parseInputs({ mode: 'dry-run', 'lock-timeout': '', 'max-retries': '', 'database-url': '' })
    expect(inputs.lockTimeout).toBe(5000)
    expect(inputs.maxRetries).toBe(3)
    expect(inputs.databaseUrl).toBe('')
  })

  it('returns camelCase keys for every input', () => {
    const inputs = dryRun({ 'database-url': 'postgresql://x@h/db', 'staged-extensions': 'a' })
    expect(Object.keys(inputs).sort()).toEqual(
      INPUT_NAMES.map((name) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())).sort()
    )
    expect(inputs.databaseUrl).toBe('postgresql://x@h/db')
  })
})

describe('action.yml parity with the schema', () => {
  interface ActionYaml {
    runs: { using: string; main: string }
    inputs: Record<string, { description?: string; required?: boolean; default?: unknown }>
    outputs: Record<string, { description?: string }>
  }
  const action = parse(readFileSync(join(ROOT, 'action.yml'), 'utf8')) as ActionYaml

  it('declares exactly the inputs of the schema, in any order', () => {
    expect(Object.keys(action.inputs).sort()).toEqual([...INPUT_NAMES].sort())
  })

  it('makes mode required, with no default', () => {
    expect(action.inputs.mode.required).toBe(true)
    expect(action.inputs.mode).not.toHaveProperty('default')
    expect(inputMeta('mode')).toBeUndefined()
  })

  it.each(INPUT_NAMES.filter((name) => name !== 'mode'))('%s has the schema default, as a string', (name) => {
    const declared = action.inputs[name]
    expect(declared.required).not.toBe(true)
    expect(typeof declared.default).toBe('string')
    expect(declared.default).toBe(inputMeta(name)?.actionDefault ?? inputMeta(name)?.default)
  })

  it('the schema accepts every action.yml default (a default that fails validation would break every run)', () => {
    const raw = Object.fromEntries(Object.entries(action.inputs).map(([name, spec]) => [name, String(spec.default ?? '')])) as RawInputs
    expect(() => parseInputs({ ...raw, mode: 'dry-run' })).not.toThrow()
  })

  it('describes every input and output', () => {
    for (const [name, spec] of [...Object.entries(action.inputs), ...Object.entries(action.outputs)]) {
      expect({ name, description: typeof spec.description === 'string' && spec.description.trim().length > 10 }).toEqual({ name, description: true })
    }
  })

  it('declares the outputs of PRODUCT.md §3 that dry-run sets', () => {
    expect(Object.keys(action.outputs)).toEqual(expect.arrayContaining(['status', 'changed', 'plan', 'plan-file', 'error']))
  })

  it('runs the bundle on node24', () => {
    expect(action.runs).toMatchObject({ using: 'node24', main: 'dist/index.js' })
  })
})
