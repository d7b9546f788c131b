/*
 * A runner reads every line a step prints to stdout or stderr as a possible workflow command:
 * a line that starts with `::` (after leading blanks), and `##[name]` anywhere in a line (the
 * older syntax). A value a user controls (a path, a name, a server's error text) must never become
 * one, so everything this tool prints outside @actions/core's own commands goes through here.
 */

const LINE_BREAK = /\r\n|\r|\n/
const COMMAND_START = /^\s*::/
const LEGACY_COMMAND = /##\[/g

/**
 * The data of an annotation (@actions/core escapes its line breaks): `##[` broken up all the same,
 * in case a runner parses the older syntax inside a command line too.
 */
export function inertData(text: string): string {
  return text.replace(LEGACY_COMMAND, '## [')
}

/** One line that no runner reads as a command: `##[` is broken up, a line starting with `::` is quoted with `| `. */
export function inertLine(line: string): string {
  const broken = line.replace(LEGACY_COMMAND, '## [')
  return COMMAND_START.test(broken) ? `| ${broken}` : broken
}

/** Text of any number of lines (any line break), each made inert; line breaks become `\n`. */
export function inertText(text: string): string {
  return text.split(LINE_BREAK).map(inertLine).join('\n')
}
