import { CodedError } from '../core/errors.js'
import { INPUT_NAMES, MODES, inputMeta, type InputName, type RawInputs } from '../inputs.js'

export interface CliArguments {
  inputs: RawInputs
  json: boolean
  help: boolean
  colour: boolean | undefined
}

const FLAGS = new Set(['json', 'help', 'color', 'no-color'])

/**
 * `pg-extension-upgrade <mode> --input-name value …`. Every input of the action is an option of
 * the same name; a boolean input may be given as a bare flag (`--allow-downgrade`).
 */
export function parseArguments(argv: string[]): CliArguments {
  const inputs: RawInputs = {}
  const result: CliArguments = { inputs, json: false, help: false, colour: undefined }
  const known = new Set<string>(INPUT_NAMES)
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]
    if (!token.startsWith('--')) {
      if (inputs.mode !== undefined) throw new CodedError('INVALID_INPUT', `unexpected argument "${token}"; the mode is already "${inputs.mode}"`)
      inputs.mode = token
      continue
    }
    const [flag, inline] = splitOption(token.slice(2))
    if (FLAGS.has(flag)) {
      if (flag === 'json') result.json = true
      if (flag === 'help') result.help = true
      if (flag === 'color' || flag === 'no-color') result.colour = flag === 'color'
      continue
    }
    if (!known.has(flag) || flag === 'mode') {
      throw new CodedError('INVALID_INPUT', `unknown option "--${flag}"; see --help for the options`)
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
  return result
}

function splitOption(option: string): [string, string | undefined] {
  const equals = option.indexOf('=')
  return equals < 0 ? [option, undefined] : [option.slice(0, equals), option.slice(equals + 1)]
}

export function usage(): string {
  const options = INPUT_NAMES.filter((name) => name !== 'mode').map((name) => {
    const meta = inputMeta(name)
    const shown = meta?.kind === 'boolean' ? `--${name}` : `--${name} <${meta?.kind ?? 'value'}>`
    const fallback = meta?.default ? ` (default ${meta.default})` : ''
    return `  ${shown.padEnd(40)}${fallback}`
  })
  return [
    'Usage: pg-extension-upgrade <mode> [options]',
    '',
    `Modes: ${MODES.join(', ')}`,
    '',
    'Options (the same as the GitHub Action inputs; an empty --database-url uses the PG* variables):',
    ...options,
    '  --json                                  print the plan or report as JSON on stdout',
    '  --color / --no-color                    force colour on or off (default: on for a terminal)',
    '',
    'Exit codes: 0 success (approved, nothing to do, verified, …); 1 the mode failed or was blocked;',
    '            2 invalid arguments or inputs.'
  ].join('\n')
}
