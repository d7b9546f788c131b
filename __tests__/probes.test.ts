import { describe, expect, it } from '@jest/globals'
import { makeConnector, resolveTarget } from '../src/core/connection.js'
import { verifyDatabase, type VerifyCheck } from '../src/core/verifier.js'
import type { VerifyReport } from '../src/modes/verify.js'
import { runAction } from './harness/action.js'
import { runInProcess, testCluster, uniqueName } from './helpers.js'

const cluster = await testCluster()

const db = uniqueName('pgxu_probes')
await cluster.createDatabase(db, { hstore: '1.4' })
await cluster.query(
  `CREATE TABLE people (name text);
   INSERT INTO people VALUES ('Ada');
   CREATE SEQUENCE tickets;
   CREATE FUNCTION make_table(name text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE format('CREATE TABLE %I (id int)', name); END $$;`,
  db
)

const probeChecks = (result: { report?: unknown }) => (result.report as VerifyReport).databases.flatMap((d) => d.checks).filter((c) => c.check === 'probe')

async function verify(sql: string) {
  const result = await runInProcess({ mode: 'verify', 'database-url': cluster.url(db), extensions: 'hstore@1.4', 'verify-sql': sql })
  return { ...result, probes: result.report ? probeChecks(result) : [] }
}

async function tableExists(name: string): Promise<boolean> {
  const rows = await cluster.query<{ found: boolean }>(`SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = $1) AS found`, db, [name])
  return rows[0].found
}

describe('every -- expect: decides its probe, wherever it stands', () => {
  it.each([
    ['after the ;', (value: string) => `SELECT name FROM people; -- expect: ${value}`],
    ['before the ;', (value: string) => `SELECT name FROM people -- expect: ${value}\n;`],
    ['inside the statement', (value: string) => `SELECT name\n-- expect: ${value}\nFROM people;`],
    ['on a last statement without ;', (value: string) => `SELECT 1;\nSELECT name FROM people -- expect: ${value}`]
  ])('%s', async (_position, probe) => {
    const wrong = await verify(probe('Bob'))
    expect(wrong.status).toBe('verify_failed')
    expect(wrong.errors.map((e) => e.code)).toEqual(['VERIFY_FAILED'])
    expect(wrong.probes.filter((p) => !p.ok).map((p) => p.message)).toEqual([expect.stringContaining('returned "Ada", expected "Bob"')])

    const right = await verify(probe('Ada'))
    expect(right.status).toBe('verified')
    expect(right.probes.find((p) => p.message.includes('returned'))?.message).toMatch(/returned "Ada"$/)
  })

  it('refuses an expectation that belongs to no statement before connecting', async () => {
    const result = await verify('SELECT name FROM people;\n-- expect: Bob')
    expect(result.status).toBe('verify_failed')
    expect(result.error).toBe('INVALID_INPUT: input "verify-sql", line 2: "-- expect:" belongs to no statement: write it after its statement\'s ";" on the same line, or inside the statement before the ";"')
    expect(result.report).toBeUndefined()
  })
})

describe('E strings split where PostgreSQL splits them', () => {
  it('keeps a ; inside an E string with \\\'', async () => {
    const result = await verify(`SELECT E'it\\'s; fine'; -- expect: it's; fine`)
    expect(result.status).toBe('verified')
    expect(result.probes).toEqual([expect.objectContaining({ ok: true, message: 'probe 1 (line 1) returned "it\'s; fine"' })])
  })

  it("fails select E'O\\'Brien'; select 2; -- expect: 1", async () => {
    const result = await verify(`select E'O\\'Brien'; select 2; -- expect: 1`)
    expect(result.status).toBe('verify_failed')
    expect(result.probes.map((p) => [p.ok, p.message])).toEqual([
      [true, 'probe 1 (line 1) succeeded'],
      [false, 'probe 2 (line 1) returned "2", expected "1"']
    ])
  })
})

describe('probes cannot write', () => {
  const attempt = (table: string) => `select E'\\''; commit; begin read write; create table ${table}(id int); commit; select '1'`

  it('refuses transaction control hidden behind an E string, and nothing is created', async () => {
    const table = uniqueName('verify_wrote')
    const result = await verify(attempt(table))
    expect(result.status).toBe('verify_failed')
    expect(result.errors).toEqual([{ code: 'INVALID_INPUT', message: 'input "verify-sql", line 1: a probe may not run COMMIT (transaction control): each probe is one read-only query in a transaction it cannot leave; "commit"' }])
    expect(await tableExists(table)).toBe(false)
  })

  it('refuses it through the bundled action too', async () => {
    const table = uniqueName('verify_wrote')
    const run = await runAction({ mode: 'verify', 'database-url': cluster.url(db), 'verify-sql': attempt(table) })
    expect(run.code).toBe(1)
    expect(run.outputs.status).toBe('verify_failed')
    expect(run.outputs.error).toContain('INVALID_INPUT: input "verify-sql", line 1: a probe may not run COMMIT')
    expect(await tableExists(table)).toBe(false)
  })

  it.each([
    ['run', { extensions: 'hstore' }],
    ['execute', { extensions: 'hstore', canary: '1' }],
    ['verify', {}]
  ])('%s refuses a probe that would leave its transaction before it connects', async (mode, inputs) => {
    // Nothing listens on port 1: a connection attempt would fail with CONNECTION_FAILED instead.
    const result = await runInProcess({ mode, 'database-url': 'postgresql://postgres@127.0.0.1:1/nowhere', 'verify-sql': 'SELECT 1;\nset transaction read write', ...inputs })
    expect(result.errors).toEqual([expect.objectContaining({ code: 'INVALID_INPUT', message: expect.stringContaining('input "verify-sql", line 2: a probe may not run SET (session state)') })])
  })

  it('run refuses it before upgrading anything', async () => {
    const result = await runInProcess({ mode: 'run', 'database-url': cluster.url(db), extensions: 'hstore', 'snapshot-strategy': 'none', 'verify-sql': 'SELECT 1; -- expect: 1\nCOMMIT' })
    expect(result.error).toContain('INVALID_INPUT: input "verify-sql", line 2: a probe may not run COMMIT')
    expect(result.changed).toBe(false)
    expect((await cluster.extensionVersions(db)).hstore).toBe('1.4')
  })

  it.each([
    ['a sequence', `SELECT nextval('tickets')`, /cannot execute nextval\(\) in a read-only transaction.*\(probes run read-only\)/],
    ['a function that creates a table', `SELECT make_table('%TABLE%')`, /cannot execute CREATE TABLE in a read-only transaction.*\(probes run read-only\)/],
    ['a writable CTE', `WITH added AS (INSERT INTO people VALUES ('Eve') RETURNING 1) SELECT count(*) FROM added`, /cannot execute SELECT in a read-only transaction.*\(probes run read-only\)/],
    ['SELECT INTO', `SELECT 1 AS id INTO %TABLE%`, /cannot execute SELECT INTO in a read-only transaction/],
    ['switching the transaction to read-write', `SELECT set_config('transaction_read_only', 'off', false)`, /cannot set transaction read-write mode inside a read-only transaction/]
  ])('fails verify on %s', async (_name, sql, message) => {
    const table = uniqueName('verify_wrote')
    const result = await verify(`${sql.replace('%TABLE%', table)}; -- expect: 1`)
    expect(result.status).toBe('verify_failed')
    expect(result.probes).toEqual([expect.objectContaining({ ok: false, message: expect.stringMatching(message) })])
    expect(await tableExists(table)).toBe(false)
    expect((await cluster.query<{ n: number }>(`SELECT count(*)::int AS n FROM people`, db))[0].n).toBe(1)
  })

  it('stays read-only after a probe turns the session default off', async () => {
    const table = uniqueName('verify_wrote')
    const result = await verify(`SELECT set_config('default_transaction_read_only', 'off', false);\nSELECT make_table('${table}');\nSELECT nextval('tickets');`)
    expect(result.status).toBe('verify_failed')
    expect(result.probes.map((p) => p.ok)).toEqual([true, false, false])
    expect(result.probes[1].message).toContain('read-only transaction')
    expect(await tableExists(table)).toBe(false)
    expect((await cluster.query<{ v: string }>(`SELECT last_value::text AS v, is_called FROM tickets`, db))[0]).toEqual({ v: '1', is_called: false })
  })

  it('runs each probe through the extended protocol, which refuses two statements in one', async () => {
    // Straight to the verifier, past the splitter: the protocol alone stops a smuggled second statement.
    const table = uniqueName('verify_wrote')
    const connect = makeConnector(resolveTarget(cluster.url(db), {}), 10_000)
    const report = await verifyDatabase(connect, db, {
      expectations: [],
      probes: [{ sql: `SELECT 1; COMMIT; CREATE TABLE ${table} (id int)`, line: 1 }],
      statementTimeoutMs: 10_000
    })
    const probe = report.checks.find((c) => c.check === 'probe') as VerifyCheck
    expect(probe).toMatchObject({ ok: false, message: expect.stringContaining('cannot insert multiple commands into a prepared statement') })
    expect(report.ok).toBe(false)
    expect(await tableExists(table)).toBe(false)
  })
})

describe('errors quote at most the failing statement', () => {
  it('cuts a long statement short and never quotes the rest of the input', async () => {
    const sql = `SELECT 1;\nSET application_name = '${'x'.repeat(3000)}';\nSELECT '${'secret-looking '.repeat(100)}'`
    const result = await verify(sql)
    expect(result.error).toMatch(/^INVALID_INPUT: input "verify-sql", line 2: a probe may not run SET \(session state\)/)
    expect(result.error!.length).toBeLessThan(420)
    expect(result.error).not.toContain('secret-looking')
  })

  it('cuts a failing probe short in the report', async () => {
    const result = await verify(`SELECT no_such_column, '${'y'.repeat(3000)}' FROM people`)
    expect(result.status).toBe('verify_failed')
    expect(result.probes[0].details).toEqual([expect.stringMatching(/^SELECT no_such_column, 'y+…$/)])
    expect(result.probes[0].details![0].length).toBeLessThanOrEqual(201)
  })
})
