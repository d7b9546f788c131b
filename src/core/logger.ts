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

/** For work running side by side: every line names its database instead of opening a group. */
export function prefixedLogger(log: Logger, prefix: string): Logger {
  const tag = (message: string) => `[${prefix}] ${message}`
  return {
    info: (message) => log.info(tag(message)),
    warn: (message) => log.warn(tag(message)),
    debug: (message) => log.debug(tag(message)),
    group: (title, work) => {
      log.info(tag(title))
      return work()
    }
  }
}
