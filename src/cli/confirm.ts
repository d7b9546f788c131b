import { createInterface } from 'node:readline'
import { isChange, type Plan } from '../core/plan.js'
import type { SnapshotManifest } from '../core/recovery/manifest.js'

export interface Terminal {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean }
  stdout: NodeJS.WritableStream & { isTTY?: boolean }
  stderr: NodeJS.WritableStream
}

/** Ask only a person: both ends must be a terminal. A pipe, a file or CI never gets a question. */
export const isInteractive = (streams: Terminal): boolean => Boolean(streams.stdin.isTTY && streams.stdout.isTTY)

/**
 * Asks `question [y/N]` and resolves true only for y or yes. End of input or an interrupt (Ctrl-C,
 * which the process-wide handler turns into `stop`) is no. The question goes to `output` (stderr),
 * so stdout stays the result.
 */
export function confirm(question: string, input: NodeJS.ReadableStream, output: NodeJS.WritableStream, stop?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const reader = createInterface({ input, output, terminal: false })
    let answered = false
    const finish = (yes: boolean) => {
      if (answered) return
      answered = true
      reader.close()
      resolve(yes)
    }
    reader.on('close', () => finish(false))
    if (stop?.aborted) return finish(false)
    stop?.addEventListener('abort', () => finish(false), { once: true })
    output.write(`${question} [y/N] `)
    reader.once('line', (line) => finish(/^\s*y(es)?\s*$/i.test(line)))
  })
}

/** What a plan will change, one line per database with changes. */
export function planChanges(plan: Plan): string[] {
  return plan.databases
    .map((database) => {
      const changes = database.extensions.filter(isChange).map((e) => `${e.name} ${e.from ?? '(not installed)'} → ${e.to}`)
      return changes.length ? `  ${database.name}: ${changes.join(', ')}` : ''
    })
    .filter(Boolean)
}

/** What a rollback to a snapshot restores: the snapshot, and per database the versions it goes back to. */
export function snapshotLines(manifest: SnapshotManifest, path: string): string[] {
  return [
    `Snapshot ${manifest.id} (${manifest.strategy}, ${manifest.createdAt}): ${path}`,
    ...(manifest.restorePoint ? [`Restore point ${manifest.restorePoint.name}`] : []),
    'Databases and the versions they go back to:',
    ...manifest.databases.map((d) => `  ${d.name}: ${d.extensions.map((e) => `${e.name} ${e.version}`).join(', ') || '(no extensions)'}`)
  ]
}
