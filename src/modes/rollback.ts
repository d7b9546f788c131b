import { CodedError } from '../core/errors.js'
import type { ModeContext, ModeResult } from './types.js'

export async function rollback(_context: ModeContext): Promise<ModeResult> {
  throw new CodedError('NOT_IMPLEMENTED', 'mode "rollback" is not available in this version yet; nothing was done')
}
