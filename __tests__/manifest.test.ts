import { describe, expect, it } from '@jest/globals'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CodedError } from '../src/core/errors.js'
import { databasePatterns, loadManifest, locateFinding, ManifestError, patternMatches, requestsFor, type Manifest } from '../src/core/manifest.js'
import { temporaryDirectory } from './harness/postgres.js'

/*
 * The declarative manifest: parsing with the line of every key, validation by the same rules as
 * the `extensions` input (errors name the file and the line), the override rule, and where a
 * finding is annotated. Pure parsing: no server needed.
 */

const SAMPLE = `# desired extension versions
extensions:
  vector: 0.8.0
  pg_trgm: default
  hstore: 1.10

databases:
  tenant_*:
    extensions: { citus: 13.2-1 }
  tenant_big:
    extensions:
      vector: 0.7.4
      pg_partman: 5.2.4
  app:
`

const load = (text: string, path = 'extensions.yml') => loadManifest(path, text, { root: '/repo' })

/** The error a manifest raises: a ManifestError (INVALID_INPUT) with its problems. */
function failure(text: string, path = 'extensions.yml'): ManifestError {
  try {
    load(text, path)
  } catch (error) {
    expect(error).toBeInstanceOf(ManifestError)
    expect(error).toBeInstanceOf(CodedError)
    expect((error as CodedError).code).toBe('INVALID_INPUT')
    return error as ManifestError
  }
  throw new Error('the manifest was accepted')
}

describe('loadManifest: parsing', () => {
  const manifest = load(SAMPLE)

  it('reads top-level extensions in file order, with the line of each key', () => {
    expect(manifest.file).toBe('extensions.yml')
    expect(manifest.extensions).toEqual([
      { name: 'vector', version: '0.8.0', line: 3 },
      { name: 'pg_trgm', line: 4 },
      { name: 'hstore', version: '1.10', line: 5 }
    ])
  })

  it('keeps versions as written: 1.10 is not the number 1.1, 1.0 is not 1', () => {
    const m = load('extensions:\n  hstore: 1.10\n  cube: 1.0\n  citext: 1.4\n  x: 2\n')
    expect(m.extensions.map((e) => e.version)).toEqual(['1.10', '1.0', '1.4', '2'])
  })

  it('reads database patterns in file order, with their lines; a key without value has no extensions', () => {
    expect(manifest.databases).toEqual([
      { pattern: 'tenant_*', line: 8, extensions: [{ name: 'citus', version: '13.2-1', line: 9 }] },
      {
        pattern: 'tenant_big',
        line: 10,
        extensions: [
          { name: 'vector', version: '0.7.4', line: 12 },
          { name: 'pg_partman', version: '5.2.4', line: 13 }
        ]
      },
      { pattern: 'app', line: 14, extensions: [] }
    ])
  })

  it('keeps numeric-looking database keys in file order', () => {
    const m = load('databases:\n  zeta:\n    extensions: { a: 1 }\n  "2024":\n    extensions: { b: 2 }\n')
    expect(m.databases.map((d) => [d.pattern, d.line])).toEqual([
      ['zeta', 2],
      ['2024', 4]
    ])
  })

  it('reads default, ~, null and an empty value as the control-file default', () => {
    const m = load('extensions:\n  a: default\n  b: ~\n  c: null\n  d:\n  e: ""\n  f: "0.8.0"\n')
    expect(m.extensions.map(({ name, version }) => ({ name, version }))).toEqual([
      { name: 'a', version: undefined },
      { name: 'b', version: undefined },
      { name: 'c', version: undefined },
      { name: 'd', version: undefined },
      { name: 'e', version: undefined },
      { name: 'f', version: '0.8.0' }
    ])
  })

  it('accepts a manifest with only databases', () => {
    const m = load('databases:\n  tenant_*:\n    extensions:\n      citus: 13.2-1\n')
    expect(m.extensions).toEqual([])
    expect(m.databases[0].extensions).toEqual([{ name: 'citus', version: '13.2-1', line: 4 }])
  })

  it('resolves YAML anchors and aliases (lines point at the anchor)', () => {
    const m = load('databases:\n  tenant_a:\n    extensions: &common\n      citus: 13.2-1\n  tenant_b:\n    extensions: *common\n')
    expect(m.databases.map((d) => d.extensions)).toEqual([[{ name: 'citus', version: '13.2-1', line: 4 }], [{ name: 'citus', version: '13.2-1', line: 4 }]])
  })

  it('strips a byte order mark and accepts CRLF line endings', () => {
    const m = load('\uFEFFextensions:\r\n  vector: 0.8.0\r\n  hstore: 1.8\r\n')
    expect(m.extensions).toEqual([
      { name: 'vector', version: '0.8.0', line: 2 },
      { name: 'hstore', version: '1.8', line: 3 }
    ])
  })

  it('reads the file from disk, relative to the root, and names it relative to the root', () => {
    const root = temporaryDirectory('pgxu-manifest-')
    mkdirSync(join(root, 'db'))
    writeFileSync(join(root, 'db', 'extensions.yml'), SAMPLE)
    const relative = loadManifest('db/extensions.yml', undefined, { root })
    expect(relative.file).toBe('db/extensions.yml')
    expect(relative.extensions).toHaveLength(3)
    expect(loadManifest('./db/extensions.yml', undefined, { root }).file).toBe('db/extensions.yml')
    expect(loadManifest(join(root, 'db', 'extensions.yml'), undefined, { root }).file).toBe('db/extensions.yml')
    // Outside the root: the path as given.
    const outside = temporaryDirectory('pgxu-manifest-out-')
    writeFileSync(join(outside, 'm.yml'), SAMPLE)
    expect(loadManifest(join(outside, 'm.yml'), undefined, { root }).file).toBe(join(outside, 'm.yml'))
  })

  it('the examples/extensions.yml sample is a valid manifest', () => {
    const m = loadManifest('examples/extensions.yml', undefined, { root: join(import.meta.dirname, '..') })
    expect(m.file).toBe('examples/extensions.yml')
    expect(m.extensions.length).toBeGreaterThan(0)
    expect(databasePatterns(m).length).toBeGreaterThan(0)
  })
})

describe('loadManifest: errors name the file and the line', () => {
  it('rejects an extension name with SQL in it, by the rules of the extensions input', () => {
    const error = failure('extensions:\n  vector: 0.8.0\n  pg_trgm: default\n  "hstore; drop": 1.8\n')
    expect(error.message).toBe('extensions.yml:4: "hstore; drop" is not an extension name (letters, digits, "_", "-" and "." only)')
    expect(error.file).toBe('extensions.yml')
    expect(error.problems).toEqual([{ line: 4, message: expect.stringContaining('"hstore; drop" is not an extension name') }])
  })

  it('rejects a bad version on its line', () => {
    const error = failure('extensions:\n  vector: 0.8.0\n  cube: 1.0; drop table t\n')
    expect(error.message).toMatch(/^extensions\.yml:3: "1\.0; drop table t" is not a valid extension version /)
  })

  it('rejects name@version keys and says how to write them', () => {
    expect(failure('extensions:\n  hstore@1.8:\n').message).toBe(
      'extensions.yml:2: "hstore@1.8" is not an extension name; write the version as the value (hstore: 1.8)'
    )
  })

  it('rejects unknown top-level keys, naming the allowed ones', () => {
    const error = failure('extensions:\n  vector: 0.8.0\nextension:\n  hstore: 1.8\n')
    expect(error.message).toBe('extensions.yml:3: unknown key "extension" at the top level (allowed: extensions, databases)')
  })

  it('rejects unknown keys inside a database entry', () => {
    const error = failure('databases:\n  tenant_*:\n    extensions: { citus: 13.2-1 }\n    exclude: [tenant_x]\n')
    expect(error.message).toBe('extensions.yml:4: unknown key "exclude" under "databases.tenant_*" (allowed: extensions)')
  })

  it('reports every problem at once, in line order, with the path as given', () => {
    const error = failure(
      ['extensions:', '  ok: 1', '  "bad name": 1', 'databases:', '  tenant_*:', '    extensions: [citus]', '  other:', '    extensions:', '      x: { nested: 1 }', 'bogus: 1', ''].join('\n'),
      'db/pg/extensions.yml'
    )
    expect(error.problems.map((p) => p.line)).toEqual([3, 6, 9, 10])
    expect(error.message.split('; ').map((part) => part.split(': ')[0])).toEqual([
      'db/pg/extensions.yml:3',
      'db/pg/extensions.yml:6',
      'db/pg/extensions.yml:9',
      'db/pg/extensions.yml:10'
    ])
    expect(error.message).toContain('"databases.tenant_*.extensions" must be a mapping of extension names to versions')
    expect(error.message).toContain('"databases.other.extensions.x" must be a version such as 0.8.0, or default')
  })

  it('rejects a list where a mapping belongs', () => {
    expect(failure('extensions: [vector, hstore]\n').message).toBe(
      'extensions.yml:1: "extensions" must be a mapping of extension names to versions, for example "vector: 0.8.0"'
    )
    expect(failure('- vector\n').message).toBe('extensions.yml:1: must be a mapping with "extensions:" and/or "databases:"')
    expect(failure('databases:\n  tenant_*: [citus]\n').message).toBe('extensions.yml:2: "databases.tenant_*" must be a mapping with "extensions:" (or no value)')
  })

  it('rejects a duplicated key on the line of the second one', () => {
    const error = failure('extensions:\n  vector: 0.8.0\n  hstore: 1.8\n  vector: 0.7.0\n')
    expect(error.problems).toEqual([{ line: 4, message: expect.stringContaining('listed twice') }])
  })

  it('reports YAML syntax errors with their line', () => {
    const error = failure('extensions:\n  vector: 0.8.0\n  hstore: [1.8\n')
    expect(error.problems[0].line).toBeGreaterThanOrEqual(3)
    expect(error.message).toMatch(/^extensions\.yml:\d+: /)
    expect(error.message).not.toContain('\n')
  })

  it('rejects several YAML documents in one file, and alias bombs, as INVALID_INPUT', () => {
    expect(failure('extensions: {a: 1}\n---\nextensions: {b: 1}\n').message).toBe('extensions.yml:2: the manifest must be a single YAML document (remove the second "---")')
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]', 'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]', 'd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]', 'e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]', '']
    expect(failure(bomb.join('\n')).message).toMatch(/^extensions\.yml: cannot be read as data: Excessive alias count/)
  })

  it('rejects database patterns that cannot be database names, and "all"', () => {
    const long = 'x'.repeat(64)
    const error = failure(`databases:\n  ${long}:\n    extensions: { a: 1 }\n  all:\n    extensions: { a: 1 }\n`)
    expect(error.problems.map((p) => p.line)).toEqual([2, 4])
    expect(error.message).toContain('at most 63 characters')
    expect(error.message).toContain('"all" is not a database pattern here')
  })

  it('rejects an empty manifest and one that declares no extension', () => {
    expect(failure('').message).toBe('extensions.yml: the manifest is empty; declare "extensions:" and/or "databases:"')
    expect(failure('# nothing yet\n').message).toContain('the manifest is empty')
    expect(failure('extensions: {}\ndatabases:\n  app:\n').message).toBe('extensions.yml:1: the manifest declares no extension; list at least one under "extensions:"')
  })

  it('a missing file is an INVALID_INPUT naming the input and the path', () => {
    const root = temporaryDirectory('pgxu-manifest-')
    let caught: unknown
    try {
      loadManifest('db/missing.yml', undefined, { root })
    } catch (error) {
      caught = error
    }
    expect(caught).toBeInstanceOf(ManifestError)
    expect((caught as CodedError).code).toBe('INVALID_INPUT')
    expect((caught as Error).message).toBe(
      'db/missing.yml: input "manifest": cannot read db/missing.yml: no such file (the path is relative to the repository root; check the repository out first with actions/checkout)'
    )
    expect(() => loadManifest('.', undefined, { root })).toThrow(/it is a directory/)
  })

  it('caps the number of problems reported', () => {
    const lines = ['extensions:', ...Array.from({ length: 30 }, (_, i) => `  "bad ${i}": 1`)]
    const error = failure(lines.join('\n') + '\n')
    expect(error.problems).toHaveLength(21)
    expect(error.problems.at(-1)).toEqual({ message: 'and 10 more problem(s)' })
  })
})

describe('requestsFor: the override rule', () => {
  const manifest = load(SAMPLE)

  it('a database no pattern matches gets the top-level extensions', () => {
    expect(requestsFor(manifest, 'reporting')).toEqual([{ name: 'vector', version: '0.8.0' }, { name: 'pg_trgm' }, { name: 'hstore', version: '1.10' }])
  })

  it('a matching pattern extends the top-level extensions', () => {
    expect(requestsFor(manifest, 'tenant_acme')).toEqual([
      { name: 'vector', version: '0.8.0' },
      { name: 'pg_trgm' },
      { name: 'hstore', version: '1.10' },
      { name: 'citus', version: '13.2-1' }
    ])
  })

  it('every matching pattern applies in file order; a later entry overrides the version in place', () => {
    expect(requestsFor(manifest, 'tenant_big')).toEqual([
      { name: 'vector', version: '0.7.4' },
      { name: 'pg_trgm' },
      { name: 'hstore', version: '1.10' },
      { name: 'citus', version: '13.2-1' },
      { name: 'pg_partman', version: '5.2.4' }
    ])
  })

  it('a later entry may set an extension back to its default version', () => {
    const m = load('extensions:\n  vector: 0.8.0\ndatabases:\n  legacy_*:\n    extensions: { vector: default }\n')
    expect(requestsFor(m, 'legacy_1')).toEqual([{ name: 'vector' }])
    expect(requestsFor(m, 'app')).toEqual([{ name: 'vector', version: '0.8.0' }])
  })

  it('patterns are globs (as the databases input), plain names match exactly', () => {
    expect(patternMatches('tenant_*', 'tenant_1')).toBe(true)
    expect(patternMatches('tenant_*', 'tenant')).toBe(false)
    expect(patternMatches('tenant_?', 'tenant_12')).toBe(false)
    expect(patternMatches('tenant_{a,b}', 'tenant_b')).toBe(true)
    expect(patternMatches('app', 'app')).toBe(true)
    expect(patternMatches('app', 'app2')).toBe(false)
    expect(patternMatches('*', '.hidden')).toBe(true)
  })

  it('an empty list means the manifest asks nothing of the database', () => {
    const m = load('databases:\n  tenant_*:\n    extensions: { citus: 13.2-1 }\n')
    expect(requestsFor(m, 'postgres')).toEqual([])
    expect(requestsFor(m, 'tenant_1')).toEqual([{ name: 'citus', version: '13.2-1' }])
  })

  it('requests carry no line numbers (they are plain ExtensionRequests)', () => {
    for (const request of requestsFor(manifest, 'tenant_big')) expect(Object.keys(request).sort()).toEqual(request.version ? ['name', 'version'] : ['name'])
  })
})

describe('databasePatterns', () => {
  it('lists the database keys in file order, once each', () => {
    expect(databasePatterns(load(SAMPLE))).toEqual(['tenant_*', 'tenant_big', 'app'])
  })

  it('is empty when the manifest names no database (the URL database is the default then)', () => {
    expect(databasePatterns(load('extensions:\n  vector: 0.8.0\n'))).toEqual([])
  })
})

describe('locateFinding: the manifest line that asked for a finding', () => {
  const manifest: Manifest = load(SAMPLE, 'db/extensions.yml')
  const at = (startLine: number) => ({ file: 'db/extensions.yml', startLine })

  it('a top-level extension in an unmatched database points at the top-level entry', () => {
    expect(locateFinding(manifest, { database: 'reporting', extension: 'vector' })).toEqual(at(3))
    expect(locateFinding(manifest, { database: 'reporting', extension: 'hstore' })).toEqual(at(5))
  })

  it('an extension a pattern asked for points at the pattern entry', () => {
    expect(locateFinding(manifest, { database: 'tenant_acme', extension: 'citus' })).toEqual(at(9))
  })

  it('an overridden extension points at the entry that won', () => {
    expect(locateFinding(manifest, { database: 'tenant_big', extension: 'vector' })).toEqual(at(12))
    expect(locateFinding(manifest, { database: 'tenant_acme', extension: 'vector' })).toEqual(at(3))
  })

  it('an extension only the top level asks for, in a matched database, points at the top-level entry', () => {
    expect(locateFinding(manifest, { database: 'tenant_big', extension: 'pg_trgm' })).toEqual(at(4))
  })

  it('a finding without extension points at the last matching database key, or nowhere', () => {
    expect(locateFinding(manifest, { database: 'tenant_big' })).toEqual(at(10))
    expect(locateFinding(manifest, { database: 'tenant_acme' })).toEqual(at(8))
    expect(locateFinding(manifest, { database: 'app' })).toEqual(at(14))
    expect(locateFinding(manifest, { database: 'reporting' })).toBeUndefined()
    expect(locateFinding(manifest, {})).toBeUndefined()
  })

  it('an extension the manifest does not list (a required one) points at the database key, or nowhere', () => {
    expect(locateFinding(manifest, { database: 'tenant_acme', extension: 'plpgsql' })).toEqual(at(8))
    expect(locateFinding(manifest, { database: 'reporting', extension: 'plpgsql' })).toBeUndefined()
  })

  it('a finding without database points at the top-level entry, else the first pattern entry listing it', () => {
    expect(locateFinding(manifest, { extension: 'vector' })).toEqual(at(3))
    expect(locateFinding(manifest, { extension: 'pg_partman' })).toEqual(at(13))
  })

  it('fits annotate(): the result is { file, startLine }', () => {
    const place = locateFinding(manifest, { database: 'tenant_x', extension: 'citus' })
    expect(Object.keys(place ?? {}).sort()).toEqual(['file', 'startLine'])
  })
})
