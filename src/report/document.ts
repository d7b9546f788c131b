/** A mode's outcome as something to read: rendered as Markdown (summary, PR comment) or text (CLI). */
export interface Table {
  columns: string[]
  rows: string[][]
  /** Shown under a table that was capped. */
  note?: string
}

export interface Section {
  heading: string
  table?: Table
  items?: string[]
  text?: string
  /** Long content folded away in Markdown (a <details> block). */
  folded?: boolean
}

export interface Document {
  title: string
  ok: boolean
  headline: string
  sections: Section[]
}

/** Caps a list for display, saying how many were left out and where they are. */
export function capped<T>(items: T[], limit: number): { shown: T[]; note?: string } {
  if (items.length <= limit) return { shown: items }
  return { shown: items.slice(0, limit), note: `${items.length - limit} more not shown here; the full list is in the JSON file.` }
}
