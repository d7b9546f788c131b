/** The fields of a PostgreSQL error (pg's DatabaseError) that reports need. */
export interface PgErrorFields {
  sqlstate?: string
  message: string
  detail?: string
  hint?: string
  where?: string
}

export function pgErrorFields(error: unknown): PgErrorFields {
  if (!(error instanceof Error)) return { message: String(error) }
  const e = error as Error & { code?: unknown; detail?: string; hint?: string; where?: string }
  const sqlstate = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined
  return { sqlstate, message: e.message, detail: e.detail, hint: e.hint, where: e.where }
}

/** `message (SQLSTATE 42501). detail. hint` — every PostgreSQL error we report carries its SQLSTATE. */
export function describePgError(error: unknown): string {
  const { sqlstate, message, detail, hint } = pgErrorFields(error)
  const parts = [sqlstate ? `${message} (SQLSTATE ${sqlstate})` : message]
  if (detail) parts.push(detail)
  if (hint) parts.push(`Hint: ${hint}`)
  return parts.join('. ').replace(/\.\./g, '.')
}
