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
    const out = []
    const left = lines.filter((line) => line.outOfScope)
    if (left.length > 0) {
      out.push(``, `${left.length} test(s) not in this server-only run: they need what this major lacks here, and run in the main run`)
      for (const line of left) out.push(`  · ${line.test}: ${line.reasons.join('; ')}`)
    }
    const skipped = lines.filter((line) => !line.outOfScope)
    if (skipped.length > 0) {
      const commands = [...new Set(skipped.map((line) => line.command))]
      out.push(``, `\x1b[33m${skipped.length} test(s) skipped: this machine lacks what they need\x1b[0m`)
      for (const line of skipped) out.push(`  ○ ${line.test}: ${line.reasons.join('; ')}`)
      out.push(`Run them: ${commands.join(' ; ')}  (then run the tests again)`)
    }
    if (out.length > 0) process.stderr.write(out.join('\n') + '\n\n')
  }
}

module.exports = SkipReporter
