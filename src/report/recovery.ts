import type { ModeResult } from '../modes/types.js'
import type { Section } from './document.js'

/** Summary sections of the snapshot mode. */
export function snapshotSections(_result: ModeResult): Section[] {
  return []
}

/** Summary sections of the rollback mode. */
export function rollbackSections(_result: ModeResult): Section[] {
  return []
}
