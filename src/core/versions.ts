/**
 * PostgreSQL gives extension versions no order. This comparison is a heuristic used only to
 * recognise downgrades (`1.10` > `1.9`, `13.2-1` > `13.1-2`, `3.3.0rc1` < `3.3.0`); the update path
 * itself always comes from the server.
 */
export function compareVersions(a: string, b: string): number {
  const left = tokens(a)
  const right = tokens(b)
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const x = left[i]
    const y = right[i]
    if (x === undefined || y === undefined) {
      // "3.3.0" vs "3.3.0rc1": a trailing alphabetic part marks a pre-release.
      const rest = (x ?? y) as string | number
      const preRelease = typeof rest === 'string'
      const sign = x === undefined ? -1 : 1
      return preRelease ? -sign : sign
    }
    if (x === y) continue
    if (typeof x === 'number' && typeof y === 'number') return x < y ? -1 : 1
    if (typeof x === 'number') return 1
    if (typeof y === 'number') return -1
    return x < y ? -1 : 1
  }
  return 0
}

function tokens(version: string): Array<string | number> {
  return (version.toLowerCase().match(/\d+|[a-z]+/g) ?? []).map((t) => (/^\d+$/.test(t) ? Number(t) : t))
}

/** `pg_extension_update_paths` reports paths as `1.4--1.5--1.6`. */
export function splitPath(path: string): string[] {
  return path.split('--')
}
