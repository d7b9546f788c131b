/** How the core reports progress; the action and the CLI each provide one. */
export interface Logger {
  info(message: string): void
  warn(message: string): void
  debug(message: string): void
  /** A collapsible section (a log group in GitHub, an indented block in a terminal). */
  group<T>(title: string, work: () => Promise<T>): Promise<T>
}

export const silentLogger: Logger = {
  info: () => undefined,
  warn: () => undefined,
  debug: () => undefined,
  group: (_title, work) => work()
}
