import { describe, expect, it } from '@jest/globals'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { runAction, type ActionRun } from './harness/action.js'
import { SUPERUSER_PASSWORD, temporaryDirectory } from './harness/postgres.js'
import { requires, testCluster, uniqueName } from './helpers.js'

/**
 * The bundled action (dist/index.js) run as a GitHub runner runs it, each step fed the previous
 * step's outputs: snapshot → execute → verify (fails) → rollback.
 */
const cluster = await testCluster({ archive: true })

function noSecrets(run: ActionRun): void {
  const printed = run.stdout.split('\n').filter((line) => !line.startsWith('::add-mask::'))
  const everything = [...printed, run.stderr, run.summary, JSON.stringify(run.outputs)].join('\n')
  for (const form of [SUPERUSER_PASSWORD, encodeURIComponent(SUPERUSER_PASSWORD)]) expect(everything).not.toContain(form)
}

requires('pg_basebackup').describe('snapshot → execute → verify → rollback through the bundled action', () => {
  it('rolls the cluster back with pitr after a failed verify, chained by step outputs', async () => {
    const db = uniqueName('e2e_pitr')
    await cluster.createDatabase(db, { hstore: '1.7' })
    await cluster.query(`CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)`, db)
    const url = cluster.url(db)
    const snapshotDir = temporaryDirectory('pgxu-e2e-snapshots-')

    const snap = await runAction({ mode: 'snapshot', 'database-url': url, 'snapshot-dir': snapshotDir })
    expect(snap.stderr).toBe('')
    expect(snap.code).toBe(0)
    expect(snap.outputs.status).toBe('snapshot_created')
    expect(snap.outputs['snapshot-strategy']).toBe('basebackup')
    expect(snap.outputs['restore-point']).toMatch(/^pgxu_/)
    expect(snap.outputs['restore-lsn']).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/)
    expect(existsSync(snap.outputs.snapshot)).toBe(true)
    expect(JSON.parse(snap.outputs.report).manifest.restorePoint.name).toBe(snap.outputs['restore-point'])
    expect(snap.summary).toContain('### Snapshot')
    expect(snap.summary).toContain(`Restore point: \`${snap.outputs['restore-point']}\``)
    expect(snap.summary).toContain('| base backup (pg_basebackup) |')
    expect(snap.summary).toContain('### How to roll back to this snapshot')
    expect(snap.stdout).toContain('▶ base backup (pg_basebackup)')

    const upgrade = await runAction({ mode: 'execute', 'database-url': url, extensions: 'hstore@1.8' })
    expect(upgrade.code).toBe(0)
    expect(upgrade.outputs.status).toBe('success')
    await cluster.query('INSERT INTO orders VALUES (2)', db)

    const proof = await runAction({ mode: 'verify', 'database-url': url, extensions: 'hstore@1.8', 'verify-sql': `SELECT count(*) FROM orders WHERE id = 2; -- expect: 0` })
    expect(proof.code).toBe(1)
    expect(proof.outputs.status).toBe('verify_failed')

    // if: failure() → rollback, with the snapshot step's output.
    const back = await runAction({
      mode: 'rollback',
      'database-url': url,
      snapshot: snap.outputs.snapshot,
      'rollback-strategy': 'pitr',
      pgdata: cluster.dataDir,
      'confirm-data-loss': 'true'
    })
    expect(back.outputs.error).toBeUndefined()
    expect(back.outputs.status).toBe('rolled_back')
    expect(back.code).toBe(0)
    expect(back.outputs.changed).toBe('true')
    const report = JSON.parse(back.outputs.report)
    expect(report).toMatchObject({ mode: 'rollback', status: 'rolled_back', strategy: 'pitr', pitr: { recoveryTimeline: 1, newTimeline: 2 } })
    expect(back.summary).toContain('### What was discarded')
    expect(back.summary).toContain('Strategy: **pitr**')
    expect(back.summary).toMatch(/\| promote \| [\d.]+ (ms|s) \| ✓ \|/)
    expect(back.summary).toContain('### Kept for safety (keep-previous)')
    expect(back.stdout).toContain('▶ stop the server')
    expect((await cluster.extensionVersions(db)).hstore).toBe('1.7')
    expect((await cluster.query<{ id: number }>('SELECT id FROM orders ORDER BY id', db)).map((r) => r.id)).toEqual([1])

    const again = await runAction({ mode: 'rollback', 'database-url': url, snapshot: snap.outputs.snapshot, 'rollback-strategy': 'pitr', pgdata: cluster.dataDir, 'confirm-data-loss': 'true' })
    expect(again.code).toBe(0)
    expect(again.outputs.status).toBe('nothing_to_do')
    for (const run of [snap, upgrade, proof, back, again]) noSecrets(run)
    expect(readFileSync(snap.outputs.snapshot, 'utf8')).not.toContain(SUPERUSER_PASSWORD)
  })

  it('fails the steps with annotations on refusals: no confirmation for pitr, and a restore point name in use', async () => {
    const db = uniqueName('e2e_refuse')
    await cluster.createDatabase(db, { hstore: '1.7' })
    const url = cluster.url(db)
    const snapshotDir = temporaryDirectory('pgxu-e2e-snapshots-')
    const snap = await runAction({ mode: 'snapshot', 'database-url': url, 'snapshot-dir': snapshotDir, 'restore-point': `e2e_${process.pid}` })
    expect(snap.outputs.status).toBe('snapshot_created')
    const duplicate = await runAction({ mode: 'snapshot', 'database-url': url, 'snapshot-dir': snapshotDir, 'restore-point': `e2e_${process.pid}` })
    expect(duplicate.code).toBe(1)
    expect(duplicate.outputs.status).toBe('failed')
    expect(duplicate.outputs.error).toContain('RESTORE_POINT_EXISTS')
    expect(duplicate.annotations).toContainEqual(expect.objectContaining({ kind: 'error', properties: expect.stringContaining('RESTORE_POINT_EXISTS') }))
    expect(duplicate.summary).toContain('Nothing: a precondition failed')

    await cluster.query(`ALTER EXTENSION hstore UPDATE TO '1.8'`, db)
    const refused = await runAction({ mode: 'rollback', 'database-url': url, snapshot: snap.outputs.snapshot, pgdata: cluster.dataDir })
    expect(refused.code).toBe(1)
    expect(refused.outputs.status).toBe('rollback_failed')
    expect(refused.outputs.error).toContain('CONFIRMATION_REQUIRED')
    expect(refused.summary).toContain('### What this rollback discards')
    expect(refused.summary).toContain(db)
    expect((await cluster.extensionVersions(db)).hstore).toBe('1.8')
    for (const run of [snap, duplicate, refused]) noSecrets(run)
  })
})
