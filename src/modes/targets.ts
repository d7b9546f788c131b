import type { ModeContext } from './types.js'

/** The databases a mode works on (the database of database-url unless `databases` says otherwise). */
export async function targetDatabases(context: ModeContext): Promise<string[]> {
  return [context.target.database]
}
