import { CodedError } from '../core/errors.js'
import { INPUT_NAMES, MODES, inputMeta, type InputName, type Mode, type RawInputs } from '../inputs.js'
import { DESCRIPTIONS } from './descriptions.js'
import { ACTION_ONLY, ASKS_FIRST, MODE_HELP } from './modes.js'
import { nearest } from './suggest.js'

export interface CliArguments {
  inputs: RawInputs
  json: boolean
  help: boolean
  version: boolean
  /** --yes: do not ask before changing anything. */
  yes: boolean
  /** --out FILE: write the bare plan there. */
  out: string | undefined
  colour: boolean | undefined
  /** Options given that the mode does not read (a warning, not an error: the action accepts them too). */
  unused: InputName[]
}

/** The CLI's own options, besides the action's inputs. */
const CLI_FLAGS = ['json', 'help', 'version', 'yes', 'out', 'color', 'no-color'] as const
const SHORT: Record<string, string> = { '-h': 'help', '-y': 'yes' }

/** The inputs the CLI takes as options: every input of the action but `mode` (positional) and the Action-only ones. */
export const CLI_INPUTS = INPUT_NAMES.filter((name) => name !== 'mode' && !ACTION_ONLY.includes(name))

const didYouMean = (word: string, candidates: readonly string[], prefix = '') => {
  const guess = nearest(word, candidates)
  return guess ? `; did you mean "${prefix}${guess}"?` : ''
}

/**
 * `pg-extension-upgrade <mode> --input-name value …`. Every input of the action is an option of
 * the same name; a boolean input may be given as a bare flag (`--allow-downgrade`).
 */
export function parseArguments(argv: string[]): CliArguments {
  const inputs: RawInputs = {}
  const result: CliArguments = { inputs, json: false, help: false, version: false, yes: false, out: undefined, colour: undefined, unused: [] }
  for (let i = 0; i < argv.length; i++) {
    const token = SHORT[argv[i]] ? `--${SHORT[argv[i]]}` : argv[i]
    if (!token.startsWith('--')) {
      if (inputs.mode !== undefined) throw new CodedError('INVALID_INPUT', `unexpected argument "${token}"; the mode is already "${inputs.mode}"`)
      inputs.mode = token
      continue
    }
    const [flag, inline] = splitOption(token.slice(2))
    if (flag === 'out') {
      result.out = inline ?? argv[++i]
      if (!result.out) throw new CodedError('INVALID_INPUT', 'option "--out" needs a file name')
      continue
    }
    if ((CLI_FLAGS as readonly string[]).includes(flag)) {
      if (flag === 'json') result.json = true
      if (flag === 'help') result.help = true
      if (flag === 'version') result.version = true
      if (flag === 'yes') result.yes = true
      if (flag === 'color' || flag === 'no-color') result.colour = flag === 'color'
      continue
    }
    if (ACTION_ONLY.includes(flag as InputName)) {
      throw new CodedError('INVALID_INPUT', `option "--${flag}" is an input of the GitHub Action only; the CLI posts no pull request comments`)
    }
    if (!(CLI_INPUTS as string[]).includes(flag)) {
      throw new CodedError('INVALID_INPUT', `unknown option "--${flag}"${didYouMean(flag, [...CLI_INPUTS, ...CLI_FLAGS], '--')}`)
    }
    const name = flag as InputName
    const boolean = inputMeta(name)?.kind === 'boolean'
    let value = inline
    if (value === undefined) {
      const next = argv[i + 1]
      if (boolean && (next === undefined || next.startsWith('--') || !/^(true|false)$/i.test(next))) {
        value = 'true'
      } else if (next === undefined) {
        throw new CodedError('INVALID_INPUT', `option "--${flag}" needs a value`)
      } else {
        value = next
        i++
      }
    }
    inputs[name] = value
  }
  const mode = inputs.mode
  if (mode !== undefined && !(MODES as readonly string[]).includes(mode)) {
    throw new CodedError('INVALID_INPUT', `input "mode": "${mode}" is not a mode; use one of ${MODES.join(', ')}${didYouMean(mode, MODES)}`)
  }
  if (mode !== undefined) {
    const reads = MODE_HELP[mode as Mode].options
    result.unused = (Object.keys(inputs) as InputName[]).filter((name) => name !== 'mode' && !reads.includes(name))
  }
  return result
}

function splitOption(option: string): [string, string | undefined] {
  const equals = option.indexOf('=')
  return equals < 0 ? [option, undefined] : [option.slice(0, equals), option.slice(equals + 1)]
}

const WIDTH = 100
const COLUMN = 34

/** A description wrapped to the terminal width, under the option column. */
function wrap(text: string, indent: number): string {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(/\s+/)) {
    if (line && indent + line.length + 1 + word.length > WIDTH) {
      lines.push(line)
      line = word
    } else line = line ? `${line} ${word}` : word
  }
  if (line) lines.push(line)
  return lines.join(`\n${' '.repeat(indent)}`)
}

function optionLine(shown: string, description: string): string {
  const head = `  ${shown}`
  return head.length < COLUMN ? `${head.padEnd(COLUMN)}${wrap(description, COLUMN)}` : `${head}\n${' '.repeat(COLUMN)}${wrap(description, COLUMN)}`
}

function inputLine(name: InputName): string {
  const meta = inputMeta(name)
  const shown = meta?.kind === 'boolean' ? `--${name}` : `--${name} <${meta?.kind ?? 'value'}>`
  const fallback = meta?.default && meta.default !== '' ? ` (default: ${meta.default})` : ''
  return optionLine(shown, `${DESCRIPTIONS[name] ?? ''}${fallback}`)
}

function commonLines(mode: Mode | undefined): string[] {
  return [
    optionLine('--json', 'Print the result as JSON on stdout: the fields the action sets as outputs.'),
    ...(mode === undefined || MODE_HELP[mode].options.includes('plan')
      ? [optionLine('--plan -', 'Read the plan from stdin. --plan also takes what dry-run --json printed.')]
      : []),
    ...(mode === undefined || mode === 'dry-run' ? [optionLine('--out <file>', 'Write the plan as JSON to this file (what --plan reads).')] : []),
    ...(mode === undefined || ASKS_FIRST.includes(mode) ? [optionLine('-y, --yes', 'Do not ask for confirmation on a terminal (execute, run, rollback).')] : []),
    optionLine('--color, --no-color', 'Force colour on or off (default: on for a terminal, off with NO_COLOR).'),
    optionLine('-h, --help', 'Show this help.'),
    ...(mode === undefined ? [optionLine('--version', 'Print the version.')] : [])
  ]
}

const CONNECTION_NOTE =
  'Connection: --database-url, else the DATABASE_URL environment variable, else the libpq PG* variables (PGHOST, PGUSER, PGPASSWORD, …) and ~/.pgpass; no password needs to be on the command line.'

const EXIT_NOTE = 'Exit codes: 0 success (approved, nothing to do, verified, …); 1 the mode failed or was blocked; 2 invalid arguments or inputs.'

/** The help: every mode and option, or with a mode only what that mode reads, and an example. */
export function usage(mode?: Mode): string {
  if (mode) {
    const help = MODE_HELP[mode]
    return [
      `Usage: pg-extension-upgrade ${mode} [options]`,
      '',
      help.summary,
      '',
      'Options:',
      ...help.options.map(inputLine),
      ...commonLines(mode),
      '',
      'Example:',
      `  ${help.example}`,
      '',
      wrap(CONNECTION_NOTE, 0),
      wrap(EXIT_NOTE, 0)
    ].join('\n')
  }
  return [
    'Usage: pg-extension-upgrade <mode> [options]',
    '       pg-extension-upgrade <mode> --help      the options of one mode, with an example',
    '',
    'Modes:',
    ...MODES.map((m) => optionLine(m, MODE_HELP[m].summary)),
    '',
    'Options (the inputs of the GitHub Action, under the same names):',
    ...CLI_INPUTS.map(inputLine),
    ...commonLines(undefined),
    '',
    wrap(CONNECTION_NOTE, 0),
    wrap(EXIT_NOTE, 0)
  ].join('\n')
}
