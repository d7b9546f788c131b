#!/usr/bin/env node
import { main } from './cli/main.js'
import { installInterruptHandlers } from './core/interrupt.js'

installInterruptHandlers()

process.exitCode = await main(process.argv.slice(2))
