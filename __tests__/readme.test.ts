import { describe, expect, it } from '@jest/globals'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { renderReadme } from '../scripts/readme-tables.js'
import { ROOT } from './harness/action.js'

describe('README', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')

  it('has the generated input, output and code tables up to date (npm run docs)', () => {
    expect(readme).toBe(renderReadme(readme))
  })

  it('shows exactly the two set-up commands', () => {
    const commands = [...readme.matchAll(/^npm ci && npm (?:run )?\w+$/gm)].map((m) => m[0])
    expect(commands).toEqual(['npm ci && npm run demo', 'npm ci && npm test'])
  })
})
