import { spawnSync } from 'node:child_process'
import { accessSync, constants, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { userInfo } from 'node:os'
import { join } from 'node:path'

/** An SQL-only extension written into the server's extension directory by the tests. */
export interface FixtureExtension {
  name: string
  control: Record<string, string | boolean>
  scripts: Record<string, string>
}

const control = (comment: string, defaultVersion: string, extra: Record<string, string | boolean> = {}) => ({
  comment,
  default_version: defaultVersion,
  relocatable: true,
  superuser: true,
  ...extra
})

/** Every fixture used by the tests; names start with `pgxu_` so they never clash with real extensions. */
export const FIXTURES: FixtureExtension[] = [
  {
    name: 'pgxu_fail',
    control: control('second hop fails by design', '1.2'),
    scripts: {
      '1.0': `CREATE FUNCTION pgxu_fail_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0' $$;`,
      '1.0--1.1': `CREATE FUNCTION pgxu_fail_hop_one() RETURNS int LANGUAGE sql AS $$ SELECT 11 $$;
CREATE TABLE pgxu_fail_hop_one_table (id int);`,
      '1.1--1.2': `DO $$ BEGIN RAISE EXCEPTION 'pgxu_fail: the 1.1 to 1.2 script fails by design'; END $$;`
    }
  },
  {
    name: 'pgxu_down',
    control: control('ships a downgrade script', '1.1'),
    scripts: {
      '1.0': `CREATE FUNCTION pgxu_down_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0' $$;`,
      '1.0--1.1': `CREATE FUNCTION pgxu_down_added() RETURNS int LANGUAGE sql AS $$ SELECT 11 $$;`,
      '1.1--1.0': `DROP FUNCTION pgxu_down_added();`
    }
  },
  {
    name: 'pgxu_base',
    control: control('required by pgxu_dep', '1.1'),
    scripts: {
      '1.0': `CREATE FUNCTION pgxu_base_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0' $$;`,
      '1.0--1.1': `CREATE OR REPLACE FUNCTION pgxu_base_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.1' $$;`
    }
  },
  {
    name: 'pgxu_dep',
    control: control('requires pgxu_base', '1.1', { requires: 'pgxu_base' }),
    scripts: {
      '1.0': `CREATE FUNCTION pgxu_dep_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0' $$;`,
      '1.0--1.1': `CREATE OR REPLACE FUNCTION pgxu_dep_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.1 on ' || pgxu_base_version() $$;`
    }
  },
  {
    name: 'pgxu_lock',
    control: control('its update takes an ACCESS EXCLUSIVE lock on a table it owns', '1.1'),
    scripts: {
      '1.0': `CREATE TABLE pgxu_lock_data (id int);
INSERT INTO pgxu_lock_data VALUES (1), (2);`,
      '1.0--1.1': `ALTER TABLE pgxu_lock_data ADD COLUMN note text;`
    }
  },
  {
    name: 'pgxu_slow',
    control: control('its update sleeps, to be interrupted or raced', '1.1'),
    scripts: {
      '1.0': `CREATE FUNCTION pgxu_slow_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0' $$;`,
      '1.0--1.1': `SELECT pg_sleep(2.5);
CREATE OR REPLACE FUNCTION pgxu_slow_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.1' $$;`
    }
  },
  {
    // Its C function lives in pgxu_badlib.so, which the tests provide: first a copy of hstore.so
    // (has the symbol), then a library without it, as after a binary rollback.
    name: 'pgxu_badlib',
    control: control('a C function whose library the tests swap underneath the catalog', '1.0'),
    scripts: {
      '1.0': `CREATE FUNCTION pgxu_badlib_diag() RETURNS int AS '$libdir/pgxu_badlib', 'hstore_version_diag' LANGUAGE C STRICT;`
    }
  },
  {
    name: 'pgxu_staged',
    control: control('records the transaction of each hop', '1.2'),
    scripts: {
      '1.0': `CREATE TABLE pgxu_staged_log (version text, xid xid8 DEFAULT pg_current_xact_id());
INSERT INTO pgxu_staged_log (version) VALUES ('1.0');`,
      '1.0--1.1': `INSERT INTO pgxu_staged_log (version) VALUES ('1.1');`,
      '1.1--1.2': `INSERT INTO pgxu_staged_log (version) VALUES ('1.2');`
    }
  },
  {
    name: 'pgxu_hop',
    control: control('its only path to 2.0 goes through the lower 0.9', '2.0'),
    scripts: {
      '1.0': `CREATE FUNCTION pgxu_hop_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0' $$;`,
      '1.0--0.9': `SELECT 1;`,
      '0.9--2.0': `SELECT 1;`,
      '3.0': `CREATE FUNCTION pgxu_hop_version() RETURNS text LANGUAGE sql AS $$ SELECT '3.0' $$;`
    }
  },
  {
    // Its update succeeds but changes behaviour an application relies on: verify catches it.
    name: 'pgxu_breaking',
    control: control('1.1 changes what greeting() returns', '1.1'),
    scripts: {
      '1.0': `CREATE FUNCTION greeting() RETURNS text LANGUAGE sql AS $$ SELECT 'hello' $$;`,
      '1.0--1.1': `CREATE OR REPLACE FUNCTION greeting() RETURNS text LANGUAGE sql AS $$ SELECT 'HELLO!' $$;`
    }
  },
  {
    name: 'pgxu_trusted',
    control: control('trusted: a database owner may install it', '1.1', { trusted: true }),
    scripts: {
      '1.0': `CREATE FUNCTION pgxu_trusted_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0' $$;`,
      '1.0--1.1': `CREATE OR REPLACE FUNCTION pgxu_trusted_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.1' $$;`
    }
  }
]

function controlText(fixture: FixtureExtension): string {
  return Object.entries(fixture.control)
    .map(([key, value]) => `${key} = ${typeof value === 'boolean' ? value : `'${value}'`}`)
    .join('\n')
    .concat('\n')
}

export function fixtureFiles(fixture: FixtureExtension): Record<string, string> {
  const files: Record<string, string> = { [`${fixture.name}.control`]: controlText(fixture) }
  for (const [version, sql] of Object.entries(fixture.scripts)) files[`${fixture.name}--${version}.sql`] = `${sql}\n`
  return files
}

/**
 * True when this process may write into the directory itself: as root, or into an npm build's
 * directories (inside node_modules); a system server's directories need passwordless sudo.
 */
function writable(dir: string): boolean {
  if (userInfo().uid === 0) return true
  try {
    accessSync(dir, constants.W_OK)
    return true
  } catch {
    return false
  }
}

/**
 * Writes files into the extension directory: directly when writable, else (a system server, as on
 * GitHub runners) through passwordless sudo, which the hosted runners have.
 */
export function writeExtensionFiles(shareDir: string, files: Record<string, string>): void {
  const dir = join(shareDir, 'extension')
  const direct = writable(dir)
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name)
    if (existsSync(path) && readFileSync(path, 'utf8') === content) continue
    if (direct) {
      writeFileSync(path, content)
      continue
    }
    const result = spawnSync('sudo', ['-n', 'tee', path], { input: content, encoding: 'utf8', stdio: ['pipe', 'ignore', 'pipe'] })
    if (result.status !== 0) {
      throw new Error(`cannot write ${path} (the tests install fixture extensions there; run as root or with passwordless sudo): ${result.stderr}`)
    }
  }
}

/**
 * Replaces a shared library in the server's library directory by renaming a copy into place,
 * so backends that already mapped the old file keep it intact.
 */
export function installLibrary(pkgLibDir: string, name: string, copyOf: string): void {
  const target = join(pkgLibDir, `${name}.so`)
  const staging = join(pkgLibDir, `.${name}.so.tmp`)
  const commands = [['cp', join(pkgLibDir, `${copyOf}.so`), staging], ['mv', '-f', staging, target]]
  for (const [command, ...args] of commands) {
    const result = writable(pkgLibDir) ? spawnSync(command, args, { encoding: 'utf8' }) : spawnSync('sudo', ['-n', command, ...args], { encoding: 'utf8' })
    if (result.status !== 0) throw new Error(`cannot install ${target}: ${result.stderr}`)
  }
}

export function removeExtensionFiles(shareDir: string, names: string[]): void {
  for (const name of names) {
    const path = join(shareDir, 'extension', name)
    if (!existsSync(path)) continue
    if (writable(join(shareDir, 'extension'))) rmSync(path)
    else spawnSync('sudo', ['-n', 'rm', '-f', path])
  }
}

export function installFixtures(shareDir: string): void {
  for (const fixture of FIXTURES) writeExtensionFiles(shareDir, fixtureFiles(fixture))
}
