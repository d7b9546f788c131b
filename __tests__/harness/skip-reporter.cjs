// Lists, in the run's closing lines, the tests that requires() (__tests__/helpers.ts) skipped
// because the machine lacks something, with the one command that installs it.
const { mkdtempSync, readFileSync, rmSync, existsSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')

class SkipReporter {
  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'pgxu-skips-'))
    this.log = join(this.dir, 'skipped.jsonl')
    // Read by requires(); the test environments copy process.env after reporters are built.
    process.env.PGXU_SKIP_LOG = this.log
  }

  onRunComplete() {
    const lines = existsSync(this.log) ? readFileSync(this.log, 'utf8').trim().split('\n').filter(Boolean).map((line) => JSON.parse(line)) : []
    rmSync(this.dir, { recursive: true, force: true })
    if (lines.length === 0) return
    const commands = [...new Set(lines.map((line) => line.command))]
    const out = [``, `\x1b[33m${lines.length} test(s) skipped: this machine lacks what they need\x1b[0m`]
    for (const line of lines) out.push(`  ○ ${line.test}: ${line.reasons.join('; ')}`)
    out.push(`Run them: ${commands.join(' ; ')}  (then run the tests again)`, ``)
    process.stderr.write(out.join('\n') + '\n')
  }
}

module.exports = SkipReporter
