import { describe, expect, it } from '@jest/globals'
import { chmodSync, writeFileSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { CodedError } from '../src/core/errors.js'
import { findCompatibleProgram, findProgram, ProgramError, runProgram, shellQuote } from '../src/core/programs.js'
import type { ClusterFacts } from '../src/core/recovery/inventory.js'
import { inDependencyOrder } from '../src/core/recovery/inventory.js'
import { generateSnapshotId, restorePointProblem } from '../src/core/recovery/manifest.js'
import { archiveDirectoryOf, archivedAtLeast, formatLsn, parseLsn, parseSegmentName, segmentName, segmentRange } from '../src/core/recovery/wal.js'
import { withoutRecoverySettings, withRecoverySettings } from '../src/core/rollback/data-directory.js'
import { asideName } from '../src/core/rollback/dump-restore.js'
import { archivingProblems } from '../src/core/snapshot/preflight.js'
import { renderMarkdown } from '../src/report/markdown.js'
import { present } from '../src/report/present.js'
import { clusterOwner, temporaryDirectory } from './harness/postgres.js'

const SEGMENT = 16 * 1024 * 1024

describe('WAL names and positions', () => {
  it('parses and formats LSNs and segment names like PostgreSQL', () => {
    expect(formatLsn(parseLsn('1A/2B3C4D5E'))).toBe('1A/2B3C4D5E')
    expect(segmentName({ timeline: 1, segno: 0x1a2bn }, SEGMENT)).toBe('000000010000001A0000002B')
    expect(parseSegmentName('000000020000001A0000002B.partial', SEGMENT)).toEqual({ timeline: 2, segno: 0x1a2bn })
    expect(parseSegmentName('00000002.history', SEGMENT)).toBeUndefined()
    expect(segmentRange('0000000100000000000000FE', '000000010000000100000001', SEGMENT)).toEqual([
      '0000000100000000000000FE',
      '0000000100000000000000FF',
      '000000010000000100000000',
      '000000010000000100000001'
    ])
  })

  it('knows when a segment counts as archived', () => {
    expect(archivedAtLeast('000000010000000000000005', '000000010000000000000005', SEGMENT)).toBe(true)
    expect(archivedAtLeast('000000010000000000000004', '000000010000000000000005', SEGMENT)).toBe(false)
    expect(archivedAtLeast('000000020000000000000005', '000000010000000000000005', SEGMENT)).toBe(true)
    expect(archivedAtLeast('000000010000000000000006', '000000020000000000000005', SEGMENT)).toBe(false)
    // A backup history file names a segment that is still being written.
    expect(archivedAtLeast('000000010000000000000005.00000028.backup', '000000010000000000000005', SEGMENT)).toBe(false)
    expect(archivedAtLeast(null, '000000010000000000000005', SEGMENT)).toBe(false)
  })

  it('finds the archive directory in the usual archive_command forms, and only there', () => {
    expect(archiveDirectoryOf('test ! -f /mnt/arch/%f && cp %p /mnt/arch/%f')).toBe('/mnt/arch')
    expect(archiveDirectoryOf('cp %p "/mnt/wal archive/%f"')).toBe('/mnt/wal archive')
    expect(archiveDirectoryOf("rsync -a %p '/srv/wal/%f'")).toBe('/srv/wal')
    expect(archiveDirectoryOf('gzip < %p > /srv/wal/%f.gz')).toBeNull()
    expect(archiveDirectoryOf('pgbackrest --stanza=main archive-push %p')).toBeNull()
    expect(archiveDirectoryOf('')).toBeNull()
  })
})

describe('restore point names', () => {
  it('accepts at most 63 bytes of [A-Za-z0-9_.-]', () => {
    expect(restorePointProblem('pgxu_1.2-3')).toBeUndefined()
    expect(restorePointProblem('x'.repeat(63))).toBeUndefined()
    expect(restorePointProblem('x'.repeat(64))).toContain('64 bytes')
    expect(restorePointProblem('é'.repeat(32))).toContain('64 bytes')
    expect(restorePointProblem('a b')).toContain('characters outside')
    expect(restorePointProblem("a'b")).toContain('characters outside')
  })

  it('derives unique names from the repository, run id and attempt, within 63 bytes', () => {
    const env = { GITHUB_REPOSITORY: 'our-org/a-very-long-repository-name-that-goes-on-and-on', GITHUB_RUN_ID: '12345678901', GITHUB_RUN_ATTEMPT: '2' }
    const names = new Set(Array.from({ length: 50 }, () => generateSnapshotId(env, new Date('2026-01-02T03:04:05Z'))))
    expect(names.size).toBeGreaterThan(40)
    for (const name of names) {
      expect(restorePointProblem(name)).toBeUndefined()
      expect(name).toMatch(/^pgxu_a-very-long-repo[A-Za-z0-9-]*_12345678901_2_20260102T030405Z_[0-9a-f]{4}$/)
    }
    expect(generateSnapshotId({}, new Date('2026-01-02T03:04:05Z'))).toMatch(/^pgxu_local_20260102T030405Z_[0-9a-f]{4}$/)
  })

  it('names the database kept aside within 63 bytes', () => {
    expect(asideName('app', '20260102_030405')).toBe('app__pre_rollback_20260102_030405')
    const long = asideName('t'.repeat(63), '20260102_030405')
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(63)
    expect(long.endsWith('__pre_rollback_20260102_030405')).toBe(true)
  })
})

describe('recovery settings in postgresql.auto.conf', () => {
  it('comments out stale targets, appends ours quoted, and removes exactly ours after promotion', () => {
    const original = "# Do not edit this file manually!\nwork_mem = '8MB'\nrecovery_target_time = '2020-01-01'\nrestore_command = 'false'\n"
    const marker = 'pg-extension-upgrade rollback'
    const prepared = withRecoverySettings(original, { restore_command: "cp '/a b'/%f %p", recovery_target_name: 'rp', recovery_target_timeline: '3' }, marker)
    expect(prepared).toContain("work_mem = '8MB'")
    expect(prepared).toMatch(/^# pg-extension-upgrade rollback commented out: recovery_target_time = '2020-01-01'$/m)
    expect(prepared).not.toMatch(/^recovery_target_time\s*=/m)
    expect(prepared).toContain("restore_command = 'cp ''/a b''/%f %p'")
    expect(prepared).toContain("recovery_target_timeline = '3'")
    const cleaned = withoutRecoverySettings(prepared, marker)
    expect(cleaned).not.toMatch(/^\s*(recovery_target|restore_command)/m)
    expect(cleaned).toContain("work_mem = '8MB'")
    expect(withRecoverySettings('', { recovery_target_name: 'x' }, marker).split('\n')[0]).toBe(`# ${marker} begin: recovery settings, removed after promotion`)
  })
})

describe('extension order', () => {
  it('puts required extensions first', () => {
    const ext = (name: string, requires: string[] = []) => ({ name, version: '1', schema: 'public', relocatable: true, requires })
    const ordered = inDependencyOrder([ext('postgis_topology', ['postgis']), ext('earthdistance', ['cube']), ext('postgis'), ext('cube'), ext('zzz')])
    const names = ordered.map((e) => e.name)
    expect(names.indexOf('cube')).toBeLessThan(names.indexOf('earthdistance'))
    expect(names.indexOf('postgis')).toBeLessThan(names.indexOf('postgis_topology'))
    expect(names).toHaveLength(5)
  })
})

describe('archiving checks', () => {
  const healthy: ClusterFacts = {
    walLevel: 'replica',
    archiveMode: 'on',
    archiveCommand: 'cp %p /a/%f',
    archiveLibrary: '',
    archiver: { archivedCount: 3, lastArchivedWal: 'x', lastArchivedTime: '2026-01-01T00:00:02Z', failedCount: 1, lastFailedWal: 'y', lastFailedTime: '2026-01-01T00:00:01Z' }
  } as ClusterFacts
  it('passes a working archiver and names each broken condition', () => {
    expect(archivingProblems(healthy)).toEqual([])
    expect(archivingProblems({ ...healthy, walLevel: 'minimal' })[0]).toContain('wal_level is minimal')
    expect(archivingProblems({ ...healthy, archiveMode: 'off' })[0]).toContain('archive_mode is off')
    expect(archivingProblems({ ...healthy, archiveCommand: '' })[0]).toContain('archive_command and archive_library are empty')
    expect(archivingProblems({ ...healthy, archiveCommand: '/bin/true' })[0]).toContain('discards every segment')
    expect(archivingProblems({ ...healthy, archiveCommand: '', archiveLibrary: 'basic_archive' })).toEqual([])
    const failing = { ...healthy, archiver: { ...healthy.archiver, lastFailedTime: '2026-01-01T00:00:03Z' } }
    expect(archivingProblems(failing)[0]).toContain('the archiver is failing')
  })
})

describe('running programs', () => {
  it('captures stderr into the error, and reports the duration', async () => {
    await expect(runProgram('sh', ['-c', 'echo to-stdout; echo "the real reason" >&2; exit 3'])).rejects.toThrow(/exited with code 3 after .*: the real reason/)
    const error = await runProgram('sh', ['-c', 'exit 4']).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ProgramError)
    expect((error as ProgramError).result.code).toBe(4)
    const ok = await runProgram('sh', ['-c', 'sleep 0.05; echo fine'])
    expect(ok.stdout).toBe('fine\n')
    expect(ok.durationMs).toBeGreaterThanOrEqual(45)
    await expect(runProgram('/no/such/program', [])).rejects.toThrow(/could not be started/)
    await expect(runProgram('sh', ['-c', 'sleep 5'], { timeoutMs: 100 })).rejects.toThrow(/timed out/)
  })

  it('masks secrets in what it reports, and never hands the password down except in PGPASSWORD', async () => {
    const error = await runProgram('sh', ['-c', 'echo "password hunter2 refused" >&2; exit 1'], { secrets: ['hunter2'] }).catch((e: Error) => e)
    expect((error as Error).message).toContain('password *** refused')
    const env = await runProgram('sh', ['-c', 'echo "$PGPASSWORD|$PGOPTIONS"'], { env: { PATH: process.env.PATH, PGOPTIONS: '-c inherited=1' }, extraEnv: { PGPASSWORD: 'p' } })
    expect(env.stdout.trim()).toBe('p|')
  })

  it('runs as the data directory owner', async () => {
    const owner = clusterOwner()
    const result = await runProgram('id', ['-u'], { as: owner })
    expect(Number(result.stdout.trim())).toBe(owner.uid)
    if (userInfo().uid === 0) expect(owner.uid).not.toBe(0)
  })

  it('finds programs in pg-bin-dir and checks their major version', async () => {
    expect(() => findProgram('pg_dump', { binDir: '/nonexistent' })).toThrow(CodedError)
    const dir = temporaryDirectory('pgxu-bin-')
    const fake = join(dir, 'pg_verifybackup')
    writeFileSync(fake, '#!/bin/sh\necho "pg_verifybackup (PostgreSQL) 14.9"\n')
    chmodSync(fake, 0o755)
    await expect(findCompatibleProgram('pg_verifybackup', 15, { binDir: dir }, 'exact')).rejects.toThrow(/is PostgreSQL 14, but the server is 15/)
    await expect(findCompatibleProgram('pg_verifybackup', 14, { binDir: dir }, 'exact')).resolves.toBe(fake)
    await expect(findCompatibleProgram('pg_verifybackup', 13, { binDir: dir }, 'atLeast')).resolves.toBe(fake)
    expect(shellQuote("it's")).toBe(`'it'\\''s'`)
  })
})

describe('summary sections', () => {
  it('says that a refused snapshot changed nothing, and shows the phases', () => {
    const markdown = renderMarkdown(
      present({
        mode: 'snapshot',
        status: 'failed',
        changed: false,
        errors: [{ code: 'ARCHIVING_DISABLED', message: 'archive_mode is off' }],
        warnings: [],
        error: 'ARCHIVING_DISABLED: archive_mode is off. Nothing was changed.',
        report: { schemaVersion: 1, mode: 'snapshot', status: 'failed', strategy: 'basebackup', reason: 'snapshot-strategy: basebackup', durationMs: 12, phases: [{ name: 'inspect the server', durationMs: 10, ok: true }], changed: false, leftBehind: [] }
      })
    )
    expect(markdown).toContain('Strategy: **basebackup**')
    expect(markdown).toContain('| inspect the server | 10 ms | ✓ |')
    expect(markdown).toContain('Nothing: a precondition failed before anything was written or any restore point created.')
    expect(markdown).toContain('**ARCHIVING_DISABLED**')
  })
})
