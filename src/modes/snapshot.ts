import { CodedError } from '../core/errors.js'
import type { ModeContext, ModeResult } from './types.js'

export async function snapshot(_context: ModeContext): Promise<ModeResult> {
  throw new CodedError('NOT_IMPLEMENTED', 'mode "snapshot" is not available in this version yet; nothing was done')
}
