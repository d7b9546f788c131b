import { describe, expect, it } from '@jest/globals'
import { CodedError } from '../src/core/errors.js'
import { splitStatements, type Probe } from '../src/core/sql-split.js'

/** Statements with their expectation, as `sql` or `sql => expect`. */
const shape = (probes: Probe[]) => probes.map((p) => (p.expect === undefined ? p.sql : `${p.sql} => ${p.expect}`))

function refusal(text: string): CodedError {
  try {
    splitStatements(text)
  } catch (error) {
    if (error instanceof CodedError) return error
    throw error
  }
  throw new Error(`accepted: ${text}`)
}

describe('splitStatements: where statements end', () => {
  it.each([
    ['plain', 'SELECT 1; SELECT 2', ['SELECT 1', 'SELECT 2']],
    ['standard string', "SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", 'SELECT 2']],
    ['doubled quote', "SELECT 'it''s; fine'; SELECT 2", ["SELECT 'it''s; fine'", 'SELECT 2']],
    ['backslash is literal in a standard string', "SELECT 'a\\'; SELECT 2", ["SELECT 'a\\'", 'SELECT 2']],
    ['E string with \\\'', "SELECT E'it\\'s; fine'; SELECT 2", ["SELECT E'it\\'s; fine'", 'SELECT 2']],
    ['lower-case e string', "SELECT e'it\\'s; fine'", ["SELECT e'it\\'s; fine'"]],
    ['E string ending in an escaped backslash', "SELECT E'\\\\'; SELECT 2", ["SELECT E'\\\\'", 'SELECT 2']],
    ['E string with a doubled quote', "SELECT E'a''b;c'; SELECT 2", ["SELECT E'a''b;c'", 'SELECT 2']],
    ['E only as a token of its own', "SELECT typE'a\\'; SELECT 2", ["SELECT typE'a\\'", 'SELECT 2']],
    ['U& string keeps standard quoting', "SELECT U&'d\\0061t\\'; SELECT 2", ["SELECT U&'d\\0061t\\'", 'SELECT 2']],
    ['N and B strings', "SELECT N'x;y', B'1;'; SELECT 2", ["SELECT N'x;y', B'1;'", 'SELECT 2']],
    ['dollar quote', 'SELECT $$a;b$$; SELECT 2', ['SELECT $$a;b$$', 'SELECT 2']],
    ['tagged dollar quote holding $$ and quotes', "SELECT $fn$ $$;' $fn$; SELECT 2", ["SELECT $fn$ $$;' $fn$", 'SELECT 2']],
    ['$ inside an identifier opens nothing', 'SELECT 1 AS x$$, $$;$$; SELECT 2', ['SELECT 1 AS x$$, $$;$$', 'SELECT 2']],
    ['positional parameter is no dollar quote', 'SELECT $1; SELECT 2', ['SELECT $1', 'SELECT 2']],
    ['quoted identifier with doubled quote', 'SELECT 1 AS "a;""b"; SELECT 2', ['SELECT 1 AS "a;""b"', 'SELECT 2']],
    ['line comment', 'SELECT 1 -- not; a split\n; SELECT 2', ['SELECT 1 -- not; a split', 'SELECT 2']],
    ['quotes inside a line comment', "SELECT 1 -- it's\n; SELECT 2", ["SELECT 1 -- it's", 'SELECT 2']],
    ['nested block comment', 'SELECT /* a /* b; */ c; */ 1; SELECT 2', ['SELECT /* a /* b; */ c; */ 1', 'SELECT 2']],
    ['empty statements', ';;SELECT 1;;', ['SELECT 1']],
    ['comments only', '-- a note\n/* and; another */\n', []],
    ['CRLF line ends', 'SELECT 1;\r\nSELECT 2;\r\n', ['SELECT 1', 'SELECT 2']],
    ['E prefix inside an E string', "select E'O\\'Brien'; select 2; -- expect: 1", ["select E'O\\'Brien'", 'select 2 => 1']]
  ])('%s', (_name, text, statements) => {
    expect(shape(splitStatements(text))).toEqual(statements)
  })

  it('gives each statement the line of its first token', () => {
    const probes = splitStatements('\n-- note\nSELECT 1;\n  /* c\n */ SELECT\n2;\nSELECT $$\n\n$$; SELECT 4')
    expect(probes.map((p) => p.line)).toEqual([3, 5, 7, 9])
  })
})

describe('splitStatements: every -- expect: belongs to its statement', () => {
  it.each([
    ['after the ;', 'SELECT 1; -- expect: 1', ['SELECT 1 => 1']],
    ['after the ; with spacing and any case', 'SELECT 1;   --   EXPECT :  1  ', ['SELECT 1 => 1']],
    ['before the ;, on the line above it', "SELECT 'a' -- expect: b\n;", ["SELECT 'a' -- expect: b => b"]],
    ['inside the statement, on a line of its own', 'SELECT count(*)\n-- expect: 3\nFROM t;', ['SELECT count(*)\n-- expect: 3\nFROM t => 3']],
    ['last statement without ;', "SELECT 'a' -- expect: b", ["SELECT 'a' -- expect: b => b"]],
    ['last statement without ;, after others', "SELECT 1; -- expect: 1\nSELECT 'a' -- expect: b\n", ['SELECT 1 => 1', "SELECT 'a' -- expect: b => b"]],
    ['a statement after a ; on the same line', 'SELECT 1; SELECT 2 -- expect: 2', ['SELECT 1', 'SELECT 2 -- expect: 2 => 2']],
    ['an E string does not hide it', "SELECT E'\\'' -- expect: '\n;", ["SELECT E'\\'' -- expect: ' => '"]],
    ['one per statement', 'SELECT 1; -- expect: 1\nSELECT 2; -- expect: 2', ['SELECT 1 => 1', 'SELECT 2 => 2']],
    ['not inside a string', "SELECT '-- expect: x'", ["SELECT '-- expect: x'"]],
    ['not inside a block comment', 'SELECT 1 /* -- expect: x */', ['SELECT 1 /* -- expect: x */']],
    ['not inside a dollar quote', 'SELECT $$\n-- expect: x\n$$', ['SELECT $$\n-- expect: x\n$$']],
    ['an empty expectation is the empty string', "SELECT ''; -- expect:", ["SELECT '' => "]]
  ])('%s', (_name, text, statements) => {
    expect(shape(splitStatements(text))).toEqual(statements)
  })

  it.each([
    ['two for one statement', 'SELECT 1 -- expect: 1\n; -- expect: 2', 2, 'a second "-- expect:" for the statement on line 1'],
    ['two inside one statement', 'SELECT 1\n-- expect: 1\n-- expect: 2', 3, 'a second "-- expect:"'],
    ['on the line after the ;', 'SELECT 1;\n-- expect: 1', 2, 'belongs to no statement'],
    ['before its statement', 'SELECT 1;\n-- expect: 1\nSELECT 2;', 2, 'belongs to no statement'],
    ['at the very start', '-- expect: 1\nSELECT 1', 1, 'belongs to no statement'],
    ['after an empty statement', 'SELECT 1;; -- expect: 1', 1, 'belongs to no statement'],
    ['after a comment that follows the ;', 'SELECT 1; /* note */ -- expect: 1', 1, 'belongs to no statement']
  ])('refuses an expectation %s', (_name, text, line, message) => {
    const error = refusal(text)
    expect(error.code).toBe('INVALID_INPUT')
    expect(error.message).toContain(`input "verify-sql", line ${line}: `)
    expect(error.message).toContain(message)
  })

  it('names the input it was given', () => {
    expect(() => splitStatements('SELECT 1;\n-- expect: 1', 'explain-sql')).toThrow('input "explain-sql", line 2')
  })
})

describe('splitStatements: statements a probe may not run', () => {
  it.each([
    ['COMMIT', 'COMMIT'],
    ['begin read write', 'BEGIN'],
    ['start transaction read write', 'START'],
    ['end', 'END'],
    ['rollback', 'ROLLBACK'],
    ['abort', 'ABORT'],
    ['savepoint s', 'SAVEPOINT'],
    ['release s', 'RELEASE'],
    ["prepare transaction 'x'", 'PREPARE'],
    ["commit prepared 'x'", 'COMMIT'],
    ["rollback prepared 'x'", 'ROLLBACK'],
    ['prepare p as select 1', 'PREPARE'],
    ['execute p', 'EXECUTE'],
    ['deallocate all', 'DEALLOCATE'],
    ['set transaction read write', 'SET'],
    ['set session characteristics as transaction read write', 'SET'],
    ['SET ROLE postgres', 'SET'],
    ['set session authorization postgres', 'SET'],
    ['set default_transaction_read_only = off', 'SET'],
    ['reset all', 'RESET'],
    ['discard all', 'DISCARD'],
    ['listen c', 'LISTEN'],
    ['unlisten *', 'UNLISTEN'],
    ['notify c', 'NOTIFY'],
    ["load 'plpgsql'", 'LOAD'],
    ['do $$ begin perform 1; end $$', 'DO'],
    ['call p()', 'CALL'],
    ["copy t to program 'id'", 'COPY'],
    ['vacuum', 'VACUUM'],
    ['analyze t', 'ANALYZE'],
    ['analyse t', 'ANALYSE'],
    ['cluster t', 'CLUSTER'],
    ['reindex table t', 'REINDEX'],
    ['checkpoint', 'CHECKPOINT'],
    ['declare c cursor with hold for select 1', 'DECLARE'],
    ['fetch c', 'FETCH'],
    ['move c', 'MOVE'],
    ['close c', 'CLOSE'],
    ['lock t', 'LOCK'],
    ["alter system set work_mem = '1GB'", 'ALTER SYSTEM'],
    ['/* hidden */ Commit', 'COMMIT']
  ])('%s', (statement, name) => {
    const error = refusal(`SELECT 1;\n\n  ${statement};\nSELECT 2`)
    expect(error.code).toBe('INVALID_INPUT')
    expect(error.message).toContain(`input "verify-sql", line 3: a probe may not run ${name} (`)
  })

  it('refuses the statements an E string used to hide', () => {
    const error = refusal("select E'\\''; commit; begin read write; create table verify_wrote_2(id int); commit; select '1'")
    expect(error.message).toMatch(/^input "verify-sql", line 1: a probe may not run COMMIT \(transaction control\)/)
    expect(error.message).toContain('"commit"')
  })

  it('refuses a final statement without ;', () => {
    expect(refusal('SELECT 1;\nrollback').message).toContain('line 2: a probe may not run ROLLBACK')
  })

  it.each([
    "SELECT 'commit'",
    'SELECT "commit" FROM t',
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    'EXPLAIN SELECT 1',
    'SHOW search_path',
    'WITH x AS (SELECT 1) SELECT * FROM x',
    'TABLE t',
    'VALUES (1)',
    'ALTER TABLE t ADD COLUMN c int',
    "INSERT INTO t VALUES ('x')",
    'SELECT commit_ts FROM t'
  ])('leaves %s to the server and its read-only transaction', (statement) => {
    expect(shape(splitStatements(statement))).toEqual([statement])
  })

  it('quotes at most the failing statement, cut short', () => {
    const long = `SET application_name = '${'x'.repeat(5000)}'`
    const error = refusal(`SELECT 1;\n${long};\nSELECT '${'y'.repeat(5000)}'`)
    expect(error.message.length).toBeLessThan(400)
    expect(error.message).toContain('…"')
    expect(error.message).not.toContain('yyyy')
  })
})

describe('splitStatements: unterminated quotes and comments', () => {
  it.each([
    ['string', "SELECT 1;\nSELECT 'abc", 2, 'the string opened here is never closed'],
    ['E string ending in \\\'', "SELECT E'abc\\'", 1, 'the string opened here is never closed'],
    ['quoted identifier', 'SELECT 1 AS "a', 1, 'the quoted identifier opened here is never closed'],
    ['dollar quote', 'SELECT 1;\n\nSELECT $x$ a $$', 3, 'the dollar quote $x$ opened here is never closed'],
    ['nested block comment', 'SELECT 1 /* a /* b */', 1, 'the block comment opened here is never closed']
  ])('%s', (_name, text, line, message) => {
    const error = refusal(text)
    expect(error.code).toBe('INVALID_INPUT')
    expect(error.message).toContain(`input "verify-sql", line ${line}: ${message}`)
  })
})
