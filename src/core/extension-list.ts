import { CodedError } from './errors.js'

/** What a user asked for: an extension and, optionally, an exact version (absent = control-file default). */
export interface ExtensionRequest {
  name: string
  version?: string
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+~-]*$/

/** Splits a list input on newlines and commas, dropping blanks and `#` comments. */
export function splitList(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.replace(/#.*$/, ''))
    .flatMap((line) => line.split(','))
    .map((item) => item.trim())
    .filter((item) => item.length > 0)
}

/** An entry as an error quotes it: in quotes, at most 100 characters. */
const shown = (entry: string) => `"${entry.length > 100 ? `${entry.slice(0, 100)}…` : entry}"`

export function parseExtensionEntry(entry: string): ExtensionRequest | string {
  const at = entry.indexOf('@')
  const name = (at < 0 ? entry : entry.slice(0, at)).trim()
  const version = at < 0 ? undefined : entry.slice(at + 1).trim()
  if (!NAME.test(name) || name.length > 63) {
    return `${shown(entry)} is not an extension name (letters, digits, "_", "-" and "." only)`
  }
  if (version === undefined || version === 'default') return { name }
  if (!VERSION.test(version) || version.includes('--') || version.length > 63) {
    return `${shown(entry)} has no valid version after "@" (use name@1.2.3, name@default or just name)`
  }
  return { name, version }
}

export function parseExtensionList(text: string): ExtensionRequest[] {
  const problems: string[] = []
  const byName = new Map<string, ExtensionRequest>()
  for (const entry of splitList(text)) {
    const parsed = parseExtensionEntry(entry)
    if (typeof parsed === 'string') {
      problems.push(parsed)
      continue
    }
    const earlier = byName.get(parsed.name)
    if (earlier && earlier.version !== parsed.version) {
      problems.push(`"${parsed.name}" is listed twice with different versions`)
    }
    byName.set(parsed.name, parsed)
  }
  if (problems.length > 0) {
    const listed = problems.slice(0, 10).join('; ')
    throw new CodedError('INVALID_INPUT', problems.length > 10 ? `${listed}; and ${problems.length - 10} more` : listed)
  }
  return [...byName.values()]
}

export function formatRequest(request: ExtensionRequest): string {
  return request.version ? `${request.name}@${request.version}` : request.name
}
