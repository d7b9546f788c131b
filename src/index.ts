import { run } from './action/main.js'
import { installInterruptHandlers } from './core/interrupt.js'

installInterruptHandlers()

await run()
