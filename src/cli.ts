#!/usr/bin/env node
import { main } from './cli/main.js'
import { installInterruptHandlers } from './core/interrupt.js'

// The first Ctrl-C stops the work at a known state and reports it; a second one exits at once.
installInterruptHandlers()
process.exitCode = await main(process.argv.slice(2))
