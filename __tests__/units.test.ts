import { afterAll, describe, expect, it } from '@jest/globals'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { redact, resolveTarget, scrub, secretsOf, startupOptions } from '../src/core/connection.js'
import { formatDuration, parseDuration } from '../src/core/duration.js'
import { CodedError } from '../src/core/errors.js'
import { formatRequest, parseExtensionEntry, parseExtensionList, splitList } from '../src/core/extension-list.js'
import { resolveSelection } from '../src/core/fleet.js'
import { compareVersions, splitPath } from '../src/core/versions.js'
import { renderMarkdown, trimToBytes } from '../src/report/markdown.js'
import { temporaryDirectory } from './harness/postgres.js'

describe('compareVersions', () => {
  it.each([
    ['1.10', '1.9', 1],
    ['1.9', '1.10', -1],
    ['13.2-1', '13.1-2', 1],
    ['13.1-2', '13.2-1', -1],
    ['3.3.0rc1', '3.3.0', -1],
    ['3.3.0', '3.3.0rc1', 1],
    ['3.3.0beta2', '3.3.0rc1', -1],
    ['1.4-1', '1.4', 1],
    ['1.0.1', '1.0', 1],
    ['2.0', '10.0', -1],
    ['1.8', '1.8', 0]
  ])('%s vs %s → %d', (a, b, expected) => {
    expect(Math.sign(compareVersions(a, b))).toBe(expected)
  })

  it('sorts real version lists in release order', () => {
    const shuffled = ['1.10', '1.2', '1.9', '1.1', '1.3']
    expect([...shuffled].sort(compareVersions)).toEqual(['1.1', '1.2', '1.3', '1.9', '1.10'])
    expect(['3.3.0', '3.2.5', '3.3.0rc1', '3.3.0alpha1'].sort(compareVersions)).toEqual(['3.2.5', '3.3.0alpha1', '3.3.0rc1', '3.3.0'])
  })

  it('is antisymmetric on every pair of a sample', () => {
    const sample = ['1.0', '1.0.1', '1.10', '1.9', '13.2-1', '13.1-2', '3.3.0rc1', '3.3.0', '2.0beta', '2.0']
    for (const a of sample) for (const b of sample) expect(Math.sign(compareVersions(a, b))).toBe(-Math.sign(compareVersions(b, a)) || 0)
  })
})

describe('database selection', () => {
  const row = (datname: string, datistemplate = false) => ({ datname, datallowconn: true, datistemplate })
  const rows = [row('tenant_a'), row('tenant_b'), row('tenant_a__pre_rollback_20261208_0101'), row('template1', true)]

  it('patterns and all never reach a database a dump rollback kept aside; naming it does', () => {
    expect(resolveSelection(rows, { patterns: ['tenant_*'], exclude: [] })).toEqual(['tenant_a', 'tenant_b'])
    expect(resolveSelection(rows, { patterns: ['all'], exclude: [] })).toEqual(['tenant_a', 'tenant_b'])
    expect(resolveSelection(rows, { patterns: ['tenant_a__pre_rollback_20261208_0101'], exclude: [] })).toEqual(['tenant_a__pre_rollback_20261208_0101'])
  })
})

describe('splitPath', () => {
  it('splits pg_extension_update_paths paths into every version', () => {
    expect(splitPath('1.4--1.5--1.6--1.7--1.8')).toEqual(['1.4', '1.5', '1.6', '1.7', '1.8'])
    expect(splitPath('1.4--1.4-1')).toEqual(['1.4', '1.4-1'])
    expect(splitPath('12.0-1--12.1-1')).toEqual(['12.0-1', '12.1-1'])
    expect(splitPath('1.0')).toEqual(['1.0'])
  })
})

describe('extension lists', () => {
  it('splitList handles newlines, commas, blanks and comments', () => {
    expect(splitList('a, b\n# c, d\n e # f, g\n\n,h,')).toEqual(['a', 'b', 'e', 'h'])
    expect(splitList('')).toEqual([])
  })

  it('parseExtensionEntry returns a request or a message naming the entry', () => {
    expect(parseExtensionEntry('hstore')).toEqual({ name: 'hstore' })
    expect(parseExtensionEntry('hstore@1.8')).toEqual({ name: 'hstore', version: '1.8' })
    expect(parseExtensionEntry('hstore @ 1.8')).toEqual({ name: 'hstore', version: '1.8' })
    expect(parseExtensionEntry('hstore@default')).toEqual({ name: 'hstore' })
    expect(parseExtensionEntry('uuid-ossp')).toEqual({ name: 'uuid-ossp' })
    expect(parseExtensionEntry('hstore; drop table t')).toEqual(expect.stringContaining('"hstore; drop table t" is not an extension name'))
    expect(parseExtensionEntry('hstore@1.0;')).toEqual(expect.stringContaining('no valid version'))
  })

  it('parseExtensionList collects every problem in one INVALID_INPUT error', () => {
    let caught: unknown
    try {
      parseExtensionList('a;b\nhstore@1.8\nhstore@1.7\nc@')
    } catch (error) {
      caught = error
    }
    expect(caught).toBeInstanceOf(CodedError)
    const error = caught as CodedError
    expect(error.code).toBe('INVALID_INPUT')
    expect(error.message).toContain('"a;b"')
    expect(error.message).toContain('"hstore" is listed twice')
    expect(error.message).toContain('"c@"')
  })

  it('parseExtensionList keeps first-seen order and merges duplicates', () => {
    expect(parseExtensionList('b, a, b, c@1.0, c@1.0')).toEqual([{ name: 'b' }, { name: 'a' }, { name: 'c', version: '1.0' }])
  })

  it('formatRequest round-trips', () => {
    for (const text of ['hstore', 'hstore@1.8', 'pg_cron@1.4-1']) expect(formatRequest(parseExtensionList(text)[0])).toBe(text)
  })
})

describe('durations', () => {
  it.each([
    ['500ms', 500],
    ['5s', 5000],
    ['15min', 900_000],
    ['1h', 3_600_000],
    ['2d', 172_800_000],
    ['0.5s', 500],
    ['42', 42],
    ['0', 0]
  ])('parseDuration(%s) = %d', (text, ms) => {
    expect(parseDuration(text)).toBe(ms)
  })

  it.each(['', 'ms', '5 seconds', '5m', '-1s', '1,5s', 'Infinity', '5s '.repeat(2)])('parseDuration(%j) is undefined', (text) => {
    expect(parseDuration(text)).toBeUndefined()
  })

  it('formatDuration reads naturally', () => {
    expect(formatDuration(250)).toBe('250 ms')
    expect(formatDuration(1500)).toBe('1.50 s')
    expect(formatDuration(12_340)).toBe('12.3 s')
    expect(formatDuration(125_000)).toBe('2 min 5 s')
  })
})

describe('connection targets', () => {
  const dir = temporaryDirectory('pgxu-units-')
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('resolves a URL: host, port, user, decoded password, database', () => {
    const target = resolveTarget('postgresql://app%20user:S3cr3t%20p%40ss%2Fw0rd%25@db.example.com:6543/my%20db', {})
    expect(target.config).toMatchObject({ host: 'db.example.com', port: 6543, user: 'app user', password: 'S3cr3t p@ss/w0rd%' })
    expect(target.database).toBe('my db')
    expect(target.config.database).toBeUndefined()
    expect(target.sslmode).toBeUndefined()
  })

  it('accepts the postgres:// scheme too', () => {
    expect(resolveTarget('postgres://u@h/db', {}).database).toBe('db')
  })

  it('resolves the PG* variables when the URL is empty', () => {
    const env = { PGHOST: '10.1.2.3', PGPORT: '6543', PGUSER: 'alice', PGPASSWORD: 'x y@z/%', PGDATABASE: 'app', PGSSLMODE: 'require' }
    const target = resolveTarget('', env)
    expect(target.config).toMatchObject({ host: '10.1.2.3', port: 6543, user: 'alice', password: 'x y@z/%' })
    expect(target.database).toBe('app')
    expect(target.sslmode).toBe('require')
    expect(target.config.ssl).toEqual({ rejectUnauthorized: false })
    expect(target.secrets).toEqual(expect.arrayContaining(['x y@z/%', encodeURIComponent('x y@z/%')]))
    expect(resolveTarget('   ', env).database).toBe('app')
  })

  it('defaults the database to the user, as libpq does, and supports a socket directory', () => {
    const target = resolveTarget('', { PGHOST: '/var/run/postgresql', PGUSER: 'alice' })
    expect(target.config.host).toBe('/var/run/postgresql')
    expect(target.database).toBe('alice')
    expect(redact(target)).toBe('postgresql://alice@/alice?host=/var/run/postgresql')
  })

  it('sslmode=require encrypts without verifying (libpq semantics)', () => {
    const target = resolveTarget('postgresql://u:p@h/db?sslmode=require', {})
    expect(target.sslmode).toBe('require')
    expect(target.config.ssl).toEqual({ rejectUnauthorized: false })
  })

  it('sslmode=disable turns TLS off', () => {
    expect(resolveTarget('postgresql://u:p@h/db?sslmode=disable', {}).config.ssl).toBe(false)
  })

  it('sslmode=verify-full verifies, and sslrootcert reads the CA file', () => {
    const ca = join(dir, 'root.crt')
    const pem = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n'
    writeFileSync(ca, pem)
    const target = resolveTarget(`postgresql://u:p@h/db?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca)}`, {})
    const ssl = target.config.ssl as { ca?: string; rejectUnauthorized?: boolean; checkServerIdentity?: unknown }
    expect(ssl.ca).toBe(pem)
    expect(ssl.rejectUnauthorized).not.toBe(false)
    expect(ssl.checkServerIdentity).toBeUndefined()
    const fromEnv = resolveTarget('', { PGHOST: 'h', PGUSER: 'u', PGSSLMODE: 'verify-full', PGSSLROOTCERT: ca })
    expect((fromEnv.config.ssl as { ca?: string }).ca).toBe(pem)
  })

  it('rejects what is not a libpq URI as INVALID_INPUT, without echoing the value', () => {
    for (const bad of ['host=h password=hunter2 dbname=x', 'mysql://u:hunter2@h/db', 'postgresql://u:hunter2@h:notaport/db']) {
      let caught: unknown
      try {
        resolveTarget(bad, {})
      } catch (error) {
        caught = error
      }
      expect(caught).toBeInstanceOf(CodedError)
      expect((caught as CodedError).code).toBe('INVALID_INPUT')
      expect((caught as CodedError).message).toContain('input "database-url"')
      expect((caught as CodedError).message).not.toContain('hunter2')
    }
  })

  it('redact() never contains the password, and shows *** when there is one', () => {
    const password = 'S3cr3t p@ss/w0rd%'
    const url = `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:5432/app?sslmode=require`
    const shown = redact(resolveTarget(url, {}))
    expect(shown).toBe('postgresql://postgres:***@127.0.0.1:5432/app?sslmode=require')
    for (const form of [password, encodeURIComponent(password), 'S3cr3t']) expect(shown).not.toContain(form)
    expect(redact(resolveTarget(url, {}), 'other')).toBe('postgresql://postgres:***@127.0.0.1:5432/other?sslmode=require')
    expect(redact(resolveTarget('postgresql://postgres@127.0.0.1:5432/app', {}))).toBe('postgresql://postgres@127.0.0.1:5432/app')
    const viaQuery = redact(resolveTarget('postgresql://postgres@127.0.0.1/app?password=hunter2', {}))
    expect(viaQuery).not.toContain('hunter2')
    expect(viaQuery).toContain(':***@')
    const viaEnv = redact(resolveTarget('', { PGHOST: 'h', PGUSER: 'u', PGPASSWORD: 'hunter2', PGDATABASE: 'd' }))
    expect(viaEnv).toBe('postgresql://u:***@h/d')
  })

  it('secretsOf() lists the URL, the password in every form, a ?password= parameter and PGPASSWORD', () => {
    const password = 'S3cr3t p@ss/w0rd%'
    const encoded = encodeURIComponent(password)
    const url = `postgresql://postgres:${encoded}@h/db?password=q%20r&sslmode=require`
    const secrets = secretsOf(url, { PGPASSWORD: 'env pw' })
    expect(secrets).toEqual(expect.arrayContaining([url, password, encoded, 'q%20r', 'q r', 'env pw', 'env%20pw']))
    expect(new Set(secrets).size).toBe(secrets.length)
    expect(secretsOf('', {})).toEqual([])
    // No password, nothing to mask: a summary shows postgresql://postgres@h/db, not ***.
    expect(secretsOf('postgresql://postgres@h/db', {})).toEqual([])
  })

  it('resolveTarget carries the secrets of the URL and of the environment', () => {
    const target = resolveTarget('postgresql://u:a%2Fb@h/db', { PGPASSWORD: 'unused' })
    expect(target.secrets).toEqual(expect.arrayContaining(['postgresql://u:a%2Fb@h/db', 'a%2Fb', 'a/b', 'unused']))
  })

  it('scrub() masks the URL whole before its password, and every occurrence', () => {
    const url = 'postgresql://u:pw%2Fx@h/db'
    const secrets = secretsOf(url, {})
    const text = `connecting to ${url} with pw%2Fx, i.e. pw/x; again pw/x`
    const scrubbed = scrub(text, secrets)
    expect(scrubbed).toBe('connecting to *** with ***, i.e. ***; again ***')
    expect(scrub('nothing secret here', secrets)).toBe('nothing secret here')
    expect(scrub('abc', [])).toBe('abc')
  })

  it('startupOptions() writes -c settings, escaping spaces and backslashes', () => {
    expect(startupOptions({ lock_timeout: 5000, application_name: 'pg extension\\upgrade' })).toBe(
      '-c lock_timeout=5000 -c application_name=pg\\ extension\\\\upgrade'
    )
    expect(startupOptions({})).toBe('')
  })
})

describe('markdown', () => {
  const doc = (rows: string[][]) => ({
    title: 'pg-extension-upgrade · dry-run',
    ok: true,
    headline: 'ok',
    sections: [{ heading: 'Plan', table: { columns: ['Database', 'Ext|ension'], rows } }]
  })

  it('escapes pipes and line breaks in table cells, so rows keep their columns', () => {
    const markdown = renderMarkdown(doc([['app', 'a|b'], ['two\nlines', '']]))
    const lines = markdown.split('\n').filter((line) => line.startsWith('|'))
    expect(lines).toEqual(['| Database | Ext\\|ension |', '| --- | --- |', '| app | a\\|b |', '| two<br>lines |   |'])
    // every row has the same number of unescaped separators
    for (const line of lines) expect(line.split(/(?<!\\)\|/).length).toBe(4)
  })

  it('trimToBytes leaves a text under the limit as it is', () => {
    expect(trimToBytes('short\ntext\n', 100)).toBe('short\ntext\n')
  })

  it('trimToBytes keeps under the limit, cuts on a line boundary and says it trimmed', () => {
    const text = Array.from({ length: 5000 }, (_, i) => `line ${i} ${'x'.repeat(i % 50)}`).join('\n')
    const limit = 20_000
    const trimmed = trimToBytes(text, limit)
    expect(Buffer.byteLength(trimmed)).toBeLessThanOrEqual(limit)
    expect(Buffer.byteLength(trimmed)).toBeGreaterThan(limit - 2000)
    expect(trimmed).toContain('trimmed')
    const kept = trimmed.slice(0, trimmed.indexOf('\n\n_…trimmed'))
    expect(text.startsWith(kept)).toBe(true)
    expect(text[kept.length]).toBe('\n')
  })

  it('trimToBytes counts bytes, not characters', () => {
    const text = '€é✓ multibyte line\n'.repeat(20_000)
    const trimmed = trimToBytes(text, 100_000)
    expect(Buffer.byteLength(trimmed)).toBeLessThanOrEqual(100_000)
    expect(trimmed).toContain('trimmed')
  })

  it('renderMarkdown applies the limit', () => {
    const rows = Array.from({ length: 3000 }, (_, i) => [`db_${i}`, 'x'.repeat(100)])
    const markdown = renderMarkdown(doc(rows), 50_000)
    expect(Buffer.byteLength(markdown)).toBeLessThanOrEqual(50_000)
    expect(markdown).toContain('trimmed')
    expect(renderMarkdown(doc(rows.slice(0, 3)), 50_000)).not.toContain('trimmed')
  })
})

describe('product', () => {
  it('names the same name and version as package.json', async () => {
    const { PRODUCT } = await import('../src/core/product.js')
    const { readFileSync } = await import('node:fs')
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { name: string; version: string }
    expect(PRODUCT).toEqual({ name: pkg.name, version: pkg.version })
  })
})
