import { run } from './action/main.js'
import { installInterruptHandlers } from './core/interrupt.js'

// A cancelled job gets SIGINT, then SIGTERM, then SIGKILL: the first stops the work at a known
// state; the later ones are ignored so that the summary and outputs can still be written.
installInterruptHandlers(() => undefined)
await run()
