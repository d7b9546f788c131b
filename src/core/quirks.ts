import { compareVersions } from './versions.js'

/**
 * What generic `ALTER EXTENSION … UPDATE` handling gets wrong for particular extensions, as data.
 * Evidence for each row: research/peers.md §3 and §5.
 */
export interface ExtensionQuirk {
  /** The library must be in shared_preload_libraries; `blocking` when the update itself needs it. */
  preload?: { library: string; blocking: boolean; reason: string }
  /** Apply one hop per transaction (resumable), because the scripts must not share one. */
  staged?: { reason: string }
  /** Reads the version of the library the server has loaded, reduced to what the catalog version is compared with. */
  libraryProbe?: { sql: string; comparable: (version: string) => string }
  /**
   * The first-statement rule: the ALTER must be the first statement of a fresh session, because
   * the extension loads a versioned library on first use and even a `SET` can load the old one.
   * These (and those listed in `first-statement-extensions`) are updated on a fresh session of
   * their own, settings in its startup options. Every other extension is updated on the
   * coordinator, the session that holds the advisory lock and has only read catalogs: each update
   * in its own transaction, `BEGIN; SET LOCAL …; ALTER EXTENSION …; COMMIT` in one round trip, so
   * the update dies with the lock and a lock timeout aborts only its transaction.
   */
  firstStatement?: { reason: string }
}

const leading = (pattern: RegExp) => (version: string) => pattern.exec(version)?.[1] ?? version

export const QUIRKS: Readonly<Record<string, ExtensionQuirk>> = {
  pg_stat_statements: {
    preload: {
      library: 'pg_stat_statements',
      blocking: false,
      reason: 'its SQL update works without the library, but its views fail until the library is preloaded'
    }
  },
  timescaledb: {
    preload: { library: 'timescaledb', blocking: true, reason: 'the loader must be preloaded for any update to run' },
    firstStatement: { reason: 'the loader loads the versioned library on first use: ALTER EXTENSION must be the first command of its session' }
  },
  citus: {
    preload: { library: 'citus', blocking: true, reason: 'Citus refuses to run unless it is preloaded' },
    firstStatement: { reason: 'a session that used the old library before the ALTER fails it with a version mismatch' },
    libraryProbe: {
      sql: "SELECT substring(citus_version() from 'Citus ([0-9.]+)')",
      comparable: leading(/^(\d+\.\d+)/)
    }
  },
  pg_cron: {
    preload: { library: 'pg_cron', blocking: true, reason: 'pg_cron can only be loaded via shared_preload_libraries' }
  },
  pgaudit: {
    preload: { library: 'pgaudit', blocking: true, reason: 'pgaudit must be loaded via shared_preload_libraries' }
  },
  pg_pathman: {
    firstStatement: { reason: 'its update must run on a session where the old library was never loaded' }
  },
  pg_partman: {
    preload: {
      library: 'pg_partman_bgw',
      blocking: false,
      reason: 'only its background worker needs the library; updates run without it'
    },
    staged: {
      reason:
        'pg_partman 5.0.0→5.0.1 fails with "pending trigger events" when hops share a transaction (pg_partman_5.0.1_upgrade.md)'
    }
  },
  postgis: {
    libraryProbe: { sql: 'SELECT postgis_lib_version()', comparable: leading(/^(\d+\.\d+\.\d+)/) }
  },
  postgis_raster: {
    libraryProbe: { sql: 'SELECT postgis_raster_lib_version()', comparable: leading(/^(\d+\.\d+\.\d+)/) }
  }
}

export function quirkOf(name: string): ExtensionQuirk {
  return QUIRKS[name] ?? {}
}

/** Compares a probed library version with an extension version, on the part both carry. */
export function compareLibrary(name: string, library: string, extensionVersion: string): number {
  const probe = quirkOf(name).libraryProbe
  if (!probe) return 0
  return compareVersions(probe.comparable(library), probe.comparable(extensionVersion))
}
