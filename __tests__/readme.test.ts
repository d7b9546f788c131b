import { describe, expect, it } from '@jest/globals'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { REFERENCE, renderReference } from '../scripts/readme-tables.js'
import { ROOT } from './harness/action.js'

describe('README', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')

  it('docs/reference.md has the generated input, output and code tables up to date (npm run docs)', () => {
    const reference = readFileSync(REFERENCE, 'utf8')
    expect(reference).toBe(renderReference(reference))
  })

  it('starts small: a quickstart and the prerequisites come first, the reference lives in docs/', () => {
    expect([...readme.matchAll(/^## (.+)$/gm)].map((m) => m[1]).slice(0, 2)).toEqual(['Quickstart', 'Prerequisites'])
    expect(readme).not.toContain('<!-- generated:')
    expect(Buffer.byteLength(readme)).toBeLessThan(28 * 1024)
  })

  it('shows exactly the two set-up commands', () => {
    const commands = [...readme.matchAll(/^npm ci && npm (?:run )?\w+$/gm)].map((m) => m[0])
    expect(commands).toEqual(['npm ci && npm run demo', 'npm ci && npm test'])
  })
})
