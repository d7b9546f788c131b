import { describe, expect, it } from '@jest/globals'
import type { AvailableVersion, DatabaseFacts, InstalledExtension, ServerFacts } from '../src/core/catalog.js'
import type { ExtensionRequest } from '../src/core/extension-list.js'
import { checkProgress, fingerprintDatabase, fingerprintPlan, type DatabasePlan, type Plan, type PlanRequest } from '../src/core/plan.js'
import { buildPlan, orderByRequirements, planDatabase } from '../src/core/planner.js'
import { codes } from './helpers.js'

/*
 * The planner is pure: these tests build the facts the catalog inspection would return, for
 * situations a local server cannot produce (a loaded Citus library, a replica, a missing preload).
 */

type VersionSpec = string | (Partial<AvailableVersion> & { version: string })

function shipped(name: string, defaultVersion: string | null, versions: VersionSpec[], common: Partial<AvailableVersion> = {}) {
  return {
    name,
    defaultVersion,
    versions: versions.map((spec) => ({
      superuser: true,
      trusted: false,
      relocatable: false,
      schema: null,
      requires: [],
      ...common,
      ...(typeof spec === 'string' ? { version: spec } : spec)
    }))
  }
}

const CATALOG = [
  shipped('hstore', '1.8', ['1.4', '1.5', '1.6', '1.7', '1.8'], { trusted: true, relocatable: true }),
  shipped('citus', '12.1-1', ['12.0-1', '12.1-1']),
  shipped('pg_cron', '1.4-1', ['1.3', '1.4', '1.4-1']),
  shipped('pg_stat_statements', '1.10', ['1.4', '1.9', '1.10']),
  shipped('pgxu_trusted', '1.1', ['1.0', '1.1'], { trusted: true }),
  shipped('pgxu_fail', '1.2', ['1.0', '1.1', '1.2']),
  shipped('plain', '2.0', ['1.0', '2.0'], { superuser: false }),
  shipped('z_base', '1.1', ['1.0', '1.1'], { superuser: false }),
  shipped('m_middle', '1.1', ['1.0', { version: '1.1', requires: ['z_base'] }], { superuser: false }),
  shipped('a_top', '1.1', ['1.0', { version: '1.1', requires: ['m_middle'] }], { superuser: false })
]

function server(overrides: Partial<ServerFacts> = {}): ServerFacts {
  return {
    version: '15.20',
    versionNum: 150020,
    inRecovery: false,
    preloadLibraries: ['pg_stat_statements', 'pg_cron', 'citus'],
    role: 'postgres',
    superuser: true,
    available: Object.fromEntries(CATALOG.map((extension) => [extension.name, structuredClone(extension)])),
    ...overrides
  }
}

/** A database with `installed` at the given versions; paths are every later version reachable step by step. */
function database(installed: Record<string, string>, overrides: Partial<DatabaseFacts> = {}, owner: Partial<InstalledExtension> = {}): DatabaseFacts {
  const available = server().available
  const paths: DatabaseFacts['paths'] = {}
  for (const [name, version] of Object.entries(installed)) {
    const versions = available[name]?.versions.map((v) => v.version) ?? []
    const from = versions.indexOf(version)
    if (from < 0) continue
    paths[name] = Object.fromEntries(versions.slice(from + 1).map((target, i) => [target, versions.slice(from, from + i + 2)]))
  }
  return {
    name: 'app',
    canCreate: true,
    readOnly: false,
    inScope: Object.keys(installed).sort(),
    installed: Object.fromEntries(
      Object.entries(installed).map(([name, version]) => [
        name,
        { name, version, schema: 'public', owner: 'postgres', ownedByMe: true, relocatable: false, ...owner }
      ])
    ),
    paths,
    dependents: {},
    members: {},
    locks: [],
    longTransactions: [],
    libraries: {},
    ...overrides
  }
}

function request(extensions: string | ExtensionRequest[] = [], overrides: Partial<PlanRequest> = {}): PlanRequest {
  const list =
    typeof extensions === 'string'
      ? extensions.split(',').map((item) => {
          const [name, version] = item.trim().split('@')
          return version ? { name, version } : { name }
        })
      : extensions
  return { extensions: list, allowDowngrade: false, installMissing: false, stagedExtensions: [], ...overrides }
}

const plan = (facts: ServerFacts, db: DatabaseFacts, req: PlanRequest): Plan => buildPlan({ server: facts, databases: [db], request: req })
const entryOf = (p: Plan, name: string) => {
  const found = p.databases[0].extensions.find((e) => e.name === name)
  if (!found) throw new Error(`${name} not planned`)
  return found
}

describe('RESTART_REQUIRED: the loaded library is older than the target', () => {
  it('blocks citus 12.0-1 → 12.1-1 while the server runs the 12.0.1 library', () => {
    const p = plan(server(), database({ citus: '12.0-1' }, { libraries: { citus: '12.0.1' } }), request('citus'))
    expect(p.status).toBe('dry_run_blocked')
    expect(codes(p.blockers)).toEqual(['RESTART_REQUIRED'])
    expect(p.blockers[0]).toMatchObject({ database: 'app', extension: 'citus' })
    expect(p.blockers[0].message).toContain('12.0.1')
    expect(p.blockers[0].message).toContain('12.1-1')
    expect(entryOf(p, 'citus')).toMatchObject({ action: 'blocked', library: '12.0.1', from: '12.0-1', to: '12.1-1' })
  })

  it('approves the same update once the 12.1 library is loaded', () => {
    const p = plan(server(), database({ citus: '12.0-1' }, { libraries: { citus: '12.1.2' } }), request('citus'))
    expect(p.blockers).toEqual([])
    expect(p.status).toBe('dry_run_approved')
    expect(entryOf(p, 'citus')).toMatchObject({ action: 'update', path: ['12.0-1', '12.1-1'], library: '12.1.2' })
  })
})

describe('PRELOAD_MISSING', () => {
  const noPreload = server({ preloadLibraries: [] })

  it('blocks pg_cron, whose library must be preloaded', () => {
    const p = plan(noPreload, database({ pg_cron: '1.3' }), request('pg_cron'))
    expect(p.status).toBe('dry_run_blocked')
    expect(codes(p.blockers)).toEqual(['PRELOAD_MISSING'])
    expect(p.blockers[0].message).toContain('pg_cron')
    expect(p.blockers[0].message).toContain('shared_preload_libraries')
    expect(entryOf(p, 'pg_cron').action).toBe('blocked')
  })

  it('only warns for pg_stat_statements, whose SQL update works without it', () => {
    const p = plan(noPreload, database({ pg_stat_statements: '1.4' }), request('pg_stat_statements'))
    expect(p.status).toBe('dry_run_approved')
    expect(p.blockers).toEqual([])
    expect(codes(p.warnings)).toEqual(['PRELOAD_MISSING'])
    expect(entryOf(p, 'pg_stat_statements')).toMatchObject({ action: 'update', path: ['1.4', '1.9', '1.10'] })
  })

  it('warns (cannot tell) when shared_preload_libraries is unreadable', () => {
    // A non-superuser cannot read the setting; the role owns pg_cron, whose scripts need no superuser here.
    const facts = server({ preloadLibraries: null, superuser: false, role: 'app' })
    for (const version of facts.available.pg_cron.versions) version.superuser = false
    const p = plan(facts, database({ pg_cron: '1.3' }), request('pg_cron'))
    expect(p.blockers).toEqual([])
    expect(codes(p.warnings)).toEqual(['PRELOAD_MISSING'])
    expect(p.warnings[0].message).toContain('pg_read_all_settings')
    expect(p.status).toBe('dry_run_approved')
  })

  it('says nothing when the library is preloaded', () => {
    const p = plan(server(), database({ pg_cron: '1.3', pg_stat_statements: '1.4' }), request('pg_cron, pg_stat_statements'))
    expect(p.blockers).toEqual([])
    expect(p.warnings).toEqual([])
  })

  it('is not reported for an extension that is already at its target', () => {
    const p = plan(noPreload, database({ pg_cron: '1.4-1' }), request('pg_cron'))
    expect(p.status).toBe('nothing_to_do')
    expect(p.blockers).toEqual([])
  })
})

describe('INSUFFICIENT_PRIVILEGE', () => {
  const app = server({ superuser: false, role: 'app' })

  it('blocks a role that does not own the extension, naming the owner', () => {
    const p = plan(app, database({ plain: '1.0' }, {}, { owner: 'postgres', ownedByMe: false }), request('plain'))
    expect(codes(p.blockers)).toEqual(['INSUFFICIENT_PRIVILEGE'])
    expect(p.blockers[0].message).toContain('owned by postgres')
    expect(p.blockers[0].message).toContain('app')
    expect(entryOf(p, 'plain').action).toBe('blocked')
  })

  it('lets the owner update an extension whose scripts need no superuser', () => {
    const p = plan(app, database({ plain: '1.0' }), request('plain'))
    expect(p.status).toBe('dry_run_approved')
  })

  it('lets a superuser do anything, owner or not', () => {
    const p = plan(server(), database({ plain: '1.0', pgxu_fail: '1.0' }, { canCreate: false }, { ownedByMe: false }), request('plain, pgxu_fail@1.1'))
    expect(p.blockers).toEqual([])
  })

  it('blocks an untrusted version for a non-superuser, even the owner', () => {
    const update = plan(app, database({ pgxu_fail: '1.0' }), request('pgxu_fail@1.1'))
    expect(codes(update.blockers)).toEqual(['INSUFFICIENT_PRIVILEGE'])
    expect(update.blockers[0].message).toContain('untrusted')
    expect(update.blockers[0].message).toContain('1.1')
    const install = plan(app, database({}), request('pgxu_fail', { installMissing: true }))
    expect(codes(install.blockers)).toEqual(['INSUFFICIENT_PRIVILEGE'])
    expect(install.blockers[0].message).toContain('superuser')
  })

  it('blocks a trusted version without CREATE on the database, and allows it with CREATE', () => {
    const without = plan(app, database({}, { canCreate: false }), request('pgxu_trusted', { installMissing: true }))
    expect(codes(without.blockers)).toEqual(['INSUFFICIENT_PRIVILEGE'])
    expect(without.blockers[0].message).toContain('CREATE on database app')
    const withCreate = plan(app, database({}, { canCreate: true }), request('pgxu_trusted', { installMissing: true }))
    expect(withCreate.status).toBe('dry_run_approved')
    expect(entryOf(withCreate, 'pgxu_trusted')).toMatchObject({ action: 'install', path: ['1.1'] })
  })
})

describe('READ_ONLY_SERVER', () => {
  it('blocks every change on a replica, and says so in the plan', () => {
    const p = plan(server({ inRecovery: true }), database({ hstore: '1.4', plain: '1.0' }), request('hstore, plain'))
    expect(p.status).toBe('dry_run_blocked')
    expect(codes(p.blockers)).toEqual(['READ_ONLY_SERVER'])
    expect(p.blockers[0]).toMatchObject({ database: 'app' })
    expect(p.blockers[0].message).toContain('replica')
    expect(p.server.isReplica).toBe(true)
    expect(p.databases[0].extensions.map((e) => e.action)).toEqual(['blocked', 'blocked'])
  })

  it('blocks when default_transaction_read_only is on', () => {
    const p = plan(server(), database({ hstore: '1.4' }, { readOnly: true }), request('hstore'))
    expect(codes(p.blockers)).toEqual(['READ_ONLY_SERVER'])
    expect(p.blockers[0].message).toContain('default_transaction_read_only')
    expect(p.server.isReplica).toBe(false)
  })

  it('has nothing to block when nothing needs to change', () => {
    const p = plan(server({ inRecovery: true }), database({ hstore: '1.8' }), request('hstore'))
    expect(p.status).toBe('nothing_to_do')
    expect(p.blockers).toEqual([])
  })
})

describe('default mode (no extensions listed)', () => {
  it('plans those behind their default and warns about a catalog ahead of it (CATALOG_AHEAD)', () => {
    const facts = server()
    facts.available.plain.defaultVersion = '1.0'
    const p = plan(facts, database({ hstore: '1.4', plain: '2.0' }), request())
    expect(codes(p.warnings)).toEqual(['CATALOG_AHEAD'])
    expect(p.warnings[0]).toMatchObject({ extension: 'plain' })
    expect(p.blockers).toEqual([])
    expect(p.status).toBe('dry_run_approved')
    expect(p.databases[0].extensions.map((e) => e.name)).toEqual(['hstore'])
  })

  it('answers nothing_to_do when only a catalog ahead is found', () => {
    const facts = server()
    facts.available.plain.defaultVersion = '1.0'
    const p = plan(facts, database({ plain: '2.0' }), request())
    expect(p.status).toBe('nothing_to_do')
    expect(codes(p.warnings)).toEqual(['CATALOG_AHEAD'])
  })
})

describe('ordering by requires', () => {
  it('puts required extensions first, whatever the alphabet says', () => {
    const p = plan(server(), database({ a_top: '1.0', m_middle: '1.0', z_base: '1.0' }), request('a_top, m_middle, z_base'))
    expect(p.status).toBe('dry_run_approved')
    const order = Object.fromEntries(p.databases[0].extensions.map((e) => [e.name, e.order]))
    expect(order).toEqual({ z_base: 1, m_middle: 2, a_top: 3 })
    expect(p.databases[0].extensions.map((e) => e.name)).toEqual(['z_base', 'm_middle', 'a_top'])
  })

  it('installs a missing requirement first with install-missing, and blocks without it', () => {
    const facts = server()
    const without = plan(facts, database({ m_middle: '1.0' }), request('m_middle'))
    expect(codes(without.blockers)).toEqual(['REQUIRES_MISSING'])
    expect(without.blockers[0].message).toContain('z_base')
    const cascade = plan(facts, database({ m_middle: '1.0' }), request('m_middle', { installMissing: true }))
    expect(cascade.status).toBe('dry_run_approved')
    expect(entryOf(cascade, 'z_base')).toMatchObject({ action: 'install', requiredBy: 'm_middle', order: 1 })
    expect(entryOf(cascade, 'm_middle').order).toBe(2)
  })

  it('orderByRequirements is a stable topological sort that survives a cycle', () => {
    const e = (name: string, requires: string[] = []) => ({ name, from: '1', to: '2', path: [], action: 'update' as const, defaultTarget: false, order: 0, schema: null, requires })
    expect(orderByRequirements([e('b'), e('a', ['c']), e('c')]).map((x) => x.name)).toEqual(['b', 'c', 'a'])
    expect(orderByRequirements([e('x', ['y']), e('y', ['x'])]).map((x) => x.name).sort()).toEqual(['x', 'y'])
  })
})

describe('buildPlan', () => {
  it('splits findings into blockers and warnings and sets the plan fields', () => {
    const now = new Date('2030-01-02T03:04:05Z')
    const db = database({ hstore: '1.4', pg_stat_statements: '1.4' }, { members: { hstore: ['type hstore', 'function akeys(hstore)'] } })
    const p = buildPlan({ server: server({ preloadLibraries: [] }), databases: [db], request: request('hstore, pg_stat_statements, nope'), now })
    expect(p).toMatchObject({ schemaVersion: 1, status: 'dry_run_blocked', createdAt: '2030-01-02T03:04:05.000Z' })
    expect(p.server).toEqual({ version: '15.20', versionNum: 150020, isReplica: false })
    expect(codes(p.blockers)).toEqual(['EXTENSION_NOT_AVAILABLE'])
    expect(codes(p.warnings)).toEqual(['PRELOAD_MISSING'])
    expect(p.members).toEqual({ 'hstore@1.4': ['type hstore', 'function akeys(hstore)'] })
    expect(p.fingerprint).toBe(fingerprintPlan(p.databases))
    expect(p.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/)
  })

  it('planDatabase is deterministic', () => {
    const a = planDatabase(server(), database({ hstore: '1.4', citus: '12.0-1' }), request('hstore, citus'))
    const b = planDatabase(server(), database({ hstore: '1.4', citus: '12.0-1' }), request('hstore, citus'))
    expect(a).toEqual(b)
  })
})

describe('fingerprintDatabase', () => {
  const planned = ['hstore']
  const base = () => database({ hstore: '1.4', plain: '1.0', z_base: '1.0' })
  const fp = (db: DatabaseFacts, facts: ServerFacts = server()) => fingerprintDatabase(db, facts, planned)

  it('is stable for equal facts, whatever the key order', () => {
    const reordered = base()
    reordered.installed = Object.fromEntries(Object.entries(reordered.installed).reverse())
    expect(fp(base())).toBe(fp(base()))
    expect(fp(reordered)).toBe(fp(base()))
    expect(fp(base())).toMatch(/^sha256:[0-9a-f]{64}$/)
  })

  it('changes when a non-planned extension is installed, removed, updated or moved', () => {
    const original = fp(base())
    const installed = database({ hstore: '1.4', plain: '1.0', z_base: '1.0', pg_cron: '1.3' })
    const removed = database({ hstore: '1.4', plain: '1.0' })
    const updated = database({ hstore: '1.4', plain: '2.0', z_base: '1.0' })
    const moved = base()
    moved.installed.plain = { ...moved.installed.plain, schema: 'extensions' }
    const prints = [original, fp(installed), fp(removed), fp(updated), fp(moved)]
    expect(new Set(prints).size).toBe(prints.length)
  })

  it('changes when a version of a planned extension appears, or its default moves', () => {
    const appeared = server()
    appeared.available.hstore.versions.push({ ...appeared.available.hstore.versions[0], version: '1.9' })
    const newDefault = server()
    newDefault.available.hstore.defaultVersion = '1.7'
    expect(fp(base(), appeared)).not.toBe(fp(base()))
    expect(fp(base(), newDefault)).not.toBe(fp(base()))
  })

  it('does not change when only a planned extension moves along its path', () => {
    const progressed = base()
    progressed.installed.hstore = { ...progressed.installed.hstore, version: '1.6' }
    expect(fp(progressed)).toBe(fp(base()))
  })

  it('is the fingerprint planDatabase puts on the database plan', () => {
    const { plan: dbPlan } = planDatabase(server(), base(), request('hstore'))
    expect(dbPlan.fingerprint).toBe(fp(base()))
  })

  it('fingerprintPlan does not depend on the order of the databases', () => {
    const a = { name: 'a', fingerprint: 'sha256:1' }
    const b = { name: 'b', fingerprint: 'sha256:2' }
    expect(fingerprintPlan([a, b])).toBe(fingerprintPlan([b, a]))
    expect(fingerprintPlan([a, b])).not.toBe(fingerprintPlan([a, { ...b, fingerprint: 'sha256:3' }]))
  })
})

describe('checkProgress', () => {
  const dbPlan: DatabasePlan = planDatabase(
    server(),
    database({ hstore: '1.4', plain: '2.0' }),
    request('hstore, plain, pgxu_trusted', { installMissing: true })
  ).plan
  const now = (installed: Record<string, string>, schema: Partial<InstalledExtension> = {}) => database(installed, {}, schema)

  it('the plan under test has an update, an extension at its target and an install', () => {
    expect(dbPlan.extensions.map((e) => [e.name, e.action])).toEqual([
      ['hstore', 'update'],
      ['pgxu_trusted', 'install'],
      ['plain', 'none']
    ])
  })

  it('accepts every version on the planned path, and the install done or not yet done', () => {
    for (const version of ['1.4', '1.5', '1.7', '1.8']) expect(checkProgress(now({ hstore: version, plain: '2.0' }), dbPlan)).toEqual([])
    expect(checkProgress(now({ hstore: '1.8', plain: '2.0', pgxu_trusted: '1.1' }), dbPlan)).toEqual([])
  })

  it('rejects a version off the path', () => {
    const problems = checkProgress(now({ hstore: '1.3', plain: '2.0' }), dbPlan)
    expect(problems).toHaveLength(1)
    expect(problems[0]).toContain('hstore is at 1.3')
    expect(checkProgress(now({ hstore: '1.4', plain: '1.0' }), dbPlan)).toEqual([expect.stringContaining('plain is at 1.0')])
    expect(checkProgress(now({ hstore: '1.4', plain: '2.0', pgxu_trusted: '1.0' }), dbPlan)).toEqual([expect.stringContaining('pgxu_trusted was installed at 1.0')])
  })

  it('rejects a dropped extension', () => {
    expect(checkProgress(now({ plain: '2.0' }), dbPlan)).toEqual([expect.stringContaining('hstore was dropped')])
  })

  it('rejects a schema move', () => {
    const problems = checkProgress(now({ hstore: '1.5', plain: '2.0' }, { schema: 'extensions' }), dbPlan)
    expect(problems).toEqual(expect.arrayContaining([expect.stringContaining('hstore moved from schema public to extensions')]))
  })
})
