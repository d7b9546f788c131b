import { createHash } from 'node:crypto'

/**
 * Tamper evidence for the JSON documents this tool writes and later trusts (plans, snapshot
 * manifests): a sha256 over the document's canonical form — every field but `digest` itself,
 * object keys sorted at every level, values as JSON writes them. Fields added later are covered
 * without any change here.
 */

export const DIGEST_FIELD = 'digest'

/** The document as JSON with keys sorted at every level; undefined fields are left out, as JSON.stringify does. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(JSON.parse(JSON.stringify(value ?? null)) as unknown))
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value === null || typeof value !== 'object') return value
  const record = value as Record<string, unknown>
  return Object.fromEntries(
    Object.keys(record)
      .sort()
      .map((key) => [key, sortKeys(record[key])])
  )
}

/** `sha256:<hex>` over the canonical form of `document` without its `digest` field. */
export function contentDigest(document: object): string {
  const { [DIGEST_FIELD]: _ignored, ...content } = document as Record<string, unknown>
  return `sha256:${createHash('sha256').update(canonicalJson(content)).digest('hex')}`
}

/** Why `document` (as parsed from its file) fails its digest, or undefined when it matches. */
export function digestProblem(document: unknown): string | undefined {
  if (document === null || typeof document !== 'object' || Array.isArray(document)) return 'it is not a JSON object'
  const recorded = (document as Record<string, unknown>)[DIGEST_FIELD]
  if (recorded === undefined) return `it carries no "${DIGEST_FIELD}" (written by an older version of this tool, or assembled by hand)`
  if (typeof recorded !== 'string') return `its "${DIGEST_FIELD}" is not a string`
  const actual = contentDigest(document)
  if (actual !== recorded) return `its content does not match its "${DIGEST_FIELD}" (${recorded.slice(0, 19)}…, the content hashes to ${actual.slice(0, 19)}…): it was changed after it was written`
  return undefined
}
