/**
 * Generates the README's reference tables (inputs, outputs, codes) from action.yml and the codes
 * table, between `<!-- generated:<name> -->` markers. `npm run docs` rewrites them; a test fails
 * when they are stale, so the README cannot drift from the action.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parse } from 'yaml'
import { CODES } from '../src/core/codes.js'

const ROOT = resolve(import.meta.dirname, '..')

interface ActionYaml {
  inputs: Record<string, { description: string; required?: boolean; default?: string }>
  outputs: Record<string, { description: string }>
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ')

export function generatedTables(): Record<string, string> {
  const action = parse(readFileSync(join(ROOT, 'action.yml'), 'utf8')) as ActionYaml
  const inputs = [
    '| Input | Default | Description |',
    '| --- | --- | --- |',
    ...Object.entries(action.inputs).map(
      ([name, spec]) => `| \`${name}\` | ${spec.required ? '**required**' : spec.default === '' ? '' : `\`${cell(String(spec.default))}\``} | ${cell(spec.description)} |`
    )
  ].join('\n')
  const outputs = ['| Output | Description |', '| --- | --- |', ...Object.entries(action.outputs).map(([name, spec]) => `| \`${name}\` | ${cell(spec.description)} |`)].join('\n')
  const codes = ['| Code | Meaning |', '| --- | --- |', ...Object.entries(CODES).map(([code, meaning]) => `| \`${code}\` | ${cell(meaning)} |`)].join('\n')
  return { inputs, outputs, codes }
}

export function renderReadme(readme: string): string {
  let result = readme
  for (const [name, table] of Object.entries(generatedTables())) {
    const pattern = new RegExp(`(<!-- generated:${name} -->\\n)[\\s\\S]*?(<!-- /generated:${name} -->)`)
    if (!pattern.test(result)) throw new Error(`README.md has no <!-- generated:${name} --> section`)
    result = result.replace(pattern, `$1${table}\n$2`)
  }
  return result
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const file = join(ROOT, 'README.md')
  writeFileSync(file, renderReadme(readFileSync(file, 'utf8')))
  console.log('README.md tables regenerated')
}
