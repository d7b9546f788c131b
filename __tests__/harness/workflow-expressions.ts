/**
 * GitHub Actions expressions (`${{ … }}`), as a runner evaluates them: a tokenizer, a
 * recursive-descent parser and an evaluator with GitHub's documented semantics — loose equality
 * that coerces mismatched types to numbers and compares strings case-insensitively, `&&`/`||`
 * returning an operand, object filters (`a.*.b`), case-insensitive property and function names,
 * and the status functions. Only what workflows use is here; anything else is an error, never a
 * silent guess.
 */

export type Value = null | boolean | number | string | Value[] | { [key: string]: Value }

export class ExpressionError extends Error {}

/** What the status functions see: has an earlier step failed, was the run cancelled. */
export interface JobStatus {
  failed: boolean
  cancelled: boolean
}

export interface ExpressionContext {
  contexts: Record<string, Value>
  status: JobStatus
}

export const CONTEXT_NAMES = ['github', 'env', 'vars', 'secrets', 'inputs', 'steps', 'runner', 'job', 'jobs', 'matrix', 'strategy', 'needs'] as const
const STATUS_FUNCTIONS = ['success', 'failure', 'always', 'cancelled']

// ---------------------------------------------------------------------------------------------
// Tokens

type Token =
  | { kind: 'punct'; text: string; at: number }
  | { kind: 'string'; value: string; at: number }
  | { kind: 'number'; value: number; at: number }
  | { kind: 'word'; text: string; at: number }
  | { kind: 'end'; at: number }

const PUNCTUATION = ['==', '!=', '<=', '>=', '&&', '||', '<', '>', '!', '(', ')', '[', ']', '.', ',', '*']
const NUMBER = /^-?(?:0x[0-9a-f]+|0o[0-7]+|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)/i
const WORD = /^[A-Za-z_][A-Za-z0-9_-]*/

export function tokenize(source: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  while (i < source.length) {
    const rest = source.slice(i)
    const space = /^\s+/.exec(rest)
    if (space) {
      i += space[0].length
      continue
    }
    if (rest[0] === "'") {
      let value = ''
      let j = i + 1
      for (;;) {
        if (j >= source.length) throw new ExpressionError(`unterminated string at ${i} in: ${source}`)
        if (source[j] === "'") {
          if (source[j + 1] === "'") {
            value += "'"
            j += 2
            continue
          }
          break
        }
        value += source[j++]
      }
      tokens.push({ kind: 'string', value, at: i })
      i = j + 1
      continue
    }
    // A number, unless the previous token ends a value (then `-` is not a sign: there is no minus).
    const number = NUMBER.exec(rest)
    if (number && (rest[0] !== '.' || !followsValue(tokens))) {
      const text = number[0]
      const negative = text.startsWith('-')
      const body = negative ? text.slice(1) : text
      const magnitude = /^0x/i.test(body) ? parseInt(body.slice(2), 16) : /^0o/i.test(body) ? parseInt(body.slice(2), 8) : Number(body)
      tokens.push({ kind: 'number', value: negative ? -magnitude : magnitude, at: i })
      i += text.length
      continue
    }
    const word = WORD.exec(rest)
    if (word) {
      tokens.push({ kind: 'word', text: word[0], at: i })
      i += word[0].length
      continue
    }
    const punct = PUNCTUATION.find((p) => rest.startsWith(p))
    if (!punct) throw new ExpressionError(`unexpected character ${JSON.stringify(rest[0])} at ${i} in: ${source}`)
    tokens.push({ kind: 'punct', text: punct, at: i })
    i += punct.length
  }
  tokens.push({ kind: 'end', at: source.length })
  return tokens
}

function followsValue(tokens: Token[]): boolean {
  const last = tokens[tokens.length - 1]
  return last !== undefined && (last.kind === 'word' || last.kind === 'string' || last.kind === 'number' || (last.kind === 'punct' && (last.text === ')' || last.text === ']' || last.text === '*')))
}

// ---------------------------------------------------------------------------------------------
// Syntax tree and parser

export type Node =
  | { kind: 'literal'; value: Value }
  | { kind: 'context'; name: string }
  | { kind: 'index'; target: Node; index: Node | 'wildcard' }
  | { kind: 'call'; name: string; args: Node[] }
  | { kind: 'not'; operand: Node }
  | { kind: 'logical'; op: '&&' | '||'; left: Node; right: Node }
  | { kind: 'compare'; op: '==' | '!=' | '<' | '<=' | '>' | '>='; left: Node; right: Node }

const FUNCTIONS: Record<string, [number, number]> = {
  contains: [2, 2],
  startswith: [2, 2],
  endswith: [2, 2],
  format: [1, Infinity],
  join: [1, 2],
  tojson: [1, 1],
  fromjson: [1, 1],
  success: [0, 0],
  failure: [0, 0],
  always: [0, 0],
  cancelled: [0, 0]
}

export function parse(source: string): Node {
  const tokens = tokenize(source)
  let position = 0
  const peek = () => tokens[position]
  const isPunct = (text: string) => {
    const token = peek()
    return token.kind === 'punct' && token.text === text
  }
  const fail = (what: string): never => {
    throw new ExpressionError(`${what} at ${peek().at} in: ${source}`)
  }
  const expect = (text: string) => {
    if (!isPunct(text)) fail(`expected ${JSON.stringify(text)}`)
    position++
  }

  const or = (): Node => {
    let left = and()
    while (isPunct('||')) {
      position++
      left = { kind: 'logical', op: '||', left, right: and() }
    }
    return left
  }
  const and = (): Node => {
    let left = equality()
    while (isPunct('&&')) {
      position++
      left = { kind: 'logical', op: '&&', left, right: equality() }
    }
    return left
  }
  const equality = (): Node => {
    let left = comparison()
    while (isPunct('==') || isPunct('!=')) {
      const op = (tokens[position++] as { text: '==' | '!=' }).text
      left = { kind: 'compare', op, left, right: comparison() }
    }
    return left
  }
  const comparison = (): Node => {
    let left = unary()
    while (isPunct('<') || isPunct('<=') || isPunct('>') || isPunct('>=')) {
      const op = (tokens[position++] as { text: '<' | '<=' | '>' | '>=' }).text
      left = { kind: 'compare', op, left, right: unary() }
    }
    return left
  }
  const unary = (): Node => {
    if (isPunct('!')) {
      position++
      return { kind: 'not', operand: unary() }
    }
    return postfix(primary())
  }
  const postfix = (node: Node): Node => {
    for (;;) {
      if (isPunct('.')) {
        position++
        const token = peek()
        if (token.kind === 'punct' && token.text === '*') {
          position++
          node = { kind: 'index', target: node, index: 'wildcard' }
        } else if (token.kind === 'word') {
          position++
          node = { kind: 'index', target: node, index: { kind: 'literal', value: token.text } }
        } else fail('expected a property name or * after "."')
      } else if (isPunct('[')) {
        position++
        if (isPunct('*')) {
          position++
          node = { kind: 'index', target: node, index: 'wildcard' }
        } else node = { kind: 'index', target: node, index: or() }
        expect(']')
      } else return node
    }
  }
  const primary = (): Node => {
    const token = peek()
    position++
    if (token.kind === 'string' || token.kind === 'number') return { kind: 'literal', value: token.value }
    if (token.kind === 'punct' && token.text === '(') {
      const inner = or()
      expect(')')
      return inner
    }
    if (token.kind === 'word') {
      if (token.text === 'true' || token.text === 'false') return { kind: 'literal', value: token.text === 'true' }
      if (token.text === 'null') return { kind: 'literal', value: null }
      if (token.text === 'NaN' || token.text === 'Infinity') return { kind: 'literal', value: token.text === 'NaN' ? NaN : Infinity }
      if (isPunct('(')) {
        position++
        const name = token.text.toLowerCase()
        const arity = FUNCTIONS[name]
        if (!arity) throw new ExpressionError(`unrecognized function ${token.text} in: ${source}`)
        const args: Node[] = []
        if (!isPunct(')')) {
          args.push(or())
          while (isPunct(',')) {
            position++
            args.push(or())
          }
        }
        expect(')')
        if (args.length < arity[0] || args.length > arity[1]) throw new ExpressionError(`${token.text} takes ${arity[0]}${arity[1] === arity[0] ? '' : '+'} arguments, got ${args.length} in: ${source}`)
        return { kind: 'call', name, args }
      }
      const name = token.text.toLowerCase()
      if (!(CONTEXT_NAMES as readonly string[]).includes(name)) throw new ExpressionError(`unrecognized named-value ${token.text} in: ${source}`)
      return { kind: 'context', name }
    }
    position--
    return fail('unexpected token')
  }

  const tree = or()
  if (peek().kind !== 'end') fail('unexpected token')
  return tree
}

/** Whether the tree calls success(), failure(), always() or cancelled() anywhere. */
export function callsStatusFunction(node: Node): boolean {
  switch (node.kind) {
    case 'call':
      return STATUS_FUNCTIONS.includes(node.name) || node.args.some(callsStatusFunction)
    case 'index':
      return callsStatusFunction(node.target) || (node.index !== 'wildcard' && callsStatusFunction(node.index))
    case 'not':
      return callsStatusFunction(node.operand)
    case 'logical':
    case 'compare':
      return callsStatusFunction(node.left) || callsStatusFunction(node.right)
    default:
      return false
  }
}

// ---------------------------------------------------------------------------------------------
// Values and coercion (https://docs.github.com/en/actions/reference/workflows-and-actions/expressions)

/** The result of `.*`: later property accesses apply to each element and drop those that miss. */
const FILTERED = Symbol('filtered array')
type Filtered = Value[] & { [FILTERED]: true }
const filtered = (items: Value[]): Filtered => Object.defineProperty(items, FILTERED, { value: true }) as Filtered
const isFiltered = (value: unknown): value is Filtered => Array.isArray(value) && (value as Partial<Filtered>)[FILTERED] === true
const isObject = (value: Value): value is { [key: string]: Value } => typeof value === 'object' && value !== null && !Array.isArray(value)

export function truthy(value: Value): boolean {
  if (value === null) return false
  if (typeof value === 'boolean') return value
  if (typeof value === 'number') return value !== 0 && !Number.isNaN(value)
  if (typeof value === 'string') return value !== ''
  return true
}

/** GitHub's number coercion: null 0, booleans 1/0, strings as JSON numbers (empty 0, else NaN), collections NaN. */
export function toNumber(value: Value): number {
  if (value === null) return 0
  if (typeof value === 'boolean') return value ? 1 : 0
  if (typeof value === 'number') return value
  if (typeof value === 'string') {
    const text = value.trim()
    if (text === '') return 0
    if (/^-?0x[0-9a-f]+$/i.test(text)) return (text.startsWith('-') ? -1 : 1) * parseInt(text.replace(/^-?0x/i, ''), 16)
    if (/^-?0o[0-7]+$/i.test(text)) return (text.startsWith('-') ? -1 : 1) * parseInt(text.replace(/^-?0o/i, ''), 8)
    if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(text) || /^[+-]?Infinity$/.test(text)) return Number(text)
    return NaN
  }
  return NaN
}

/** String conversion for interpolation, join and format. */
export function toText(value: Value): string {
  if (value === null) return ''
  if (typeof value === 'boolean') return value ? 'true' : 'false'
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : Object.is(value, -0) ? '0' : String(value)
  if (typeof value === 'string') return value
  return Array.isArray(value) ? 'Array' : 'Object'
}

const kindOf = (value: Value) => (value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value)

export function looseEquals(left: Value, right: Value): boolean {
  const kind = kindOf(left)
  if (kind !== kindOf(right)) {
    const [a, b] = [toNumber(left), toNumber(right)]
    return !Number.isNaN(a) && a === b
  }
  if (typeof left === 'string') return left.toUpperCase() === (right as string).toUpperCase()
  if (typeof left === 'number') return left === right
  return left === right
}

function compareOrdered(left: Value, right: Value): number {
  if (kindOf(left) === kindOf(right) && typeof left === 'string') {
    const [a, b] = [left.toUpperCase(), (right as string).toUpperCase()]
    return a < b ? -1 : a > b ? 1 : 0
  }
  const [a, b] = [toNumber(left), toNumber(right)]
  if (Number.isNaN(a) || Number.isNaN(b)) return NaN
  return a < b ? -1 : a > b ? 1 : 0
}

function lookup(target: Value, key: Value): Value | undefined {
  if (isObject(target) && typeof key === 'string') {
    if (Object.hasOwn(target, key)) return target[key]
    const found = Object.keys(target).find((k) => k.toLowerCase() === key.toLowerCase())
    return found === undefined ? undefined : target[found]
  }
  if (Array.isArray(target)) {
    const n = typeof key === 'number' ? key : typeof key === 'string' ? toNumber(key) : NaN
    if (Number.isInteger(n) && n >= 0 && n < target.length) return target[n]
  }
  return undefined
}

function index(target: Value, key: Value | 'wildcard'): Value {
  if (isFiltered(target)) {
    const out: Value[] = []
    for (const item of target) {
      if (key === 'wildcard') {
        if (Array.isArray(item)) out.push(...item)
        else if (isObject(item)) out.push(...Object.values(item))
      } else {
        const found = lookup(item, key)
        if (found !== undefined) out.push(found)
      }
    }
    return filtered(out)
  }
  if (key === 'wildcard') {
    if (Array.isArray(target)) return filtered([...target])
    if (isObject(target)) return filtered(Object.values(target))
    return null
  }
  return lookup(target, key) ?? null
}

function format(pattern: string, args: Value[]): string {
  let out = ''
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]
    if (c === '{' && pattern[i + 1] === '{') {
      out += '{'
      i++
    } else if (c === '}' && pattern[i + 1] === '}') {
      out += '}'
      i++
    } else if (c === '{') {
      const end = pattern.indexOf('}', i)
      const n = end < 0 ? NaN : Number(pattern.slice(i + 1, end))
      if (!Number.isInteger(n) || n < 0) throw new ExpressionError(`format: invalid placeholder in ${JSON.stringify(pattern)}`)
      if (n >= args.length) throw new ExpressionError(`format: {${n}} has no argument in ${JSON.stringify(pattern)}`)
      out += toText(args[n])
      i = end
    } else if (c === '}') throw new ExpressionError(`format: unmatched } in ${JSON.stringify(pattern)}`)
    else out += c
  }
  return out
}

function call(name: string, args: Value[], status: JobStatus): Value {
  switch (name) {
    case 'success':
      return !status.failed && !status.cancelled
    case 'failure':
      return status.failed
    case 'always':
      return true
    case 'cancelled':
      return status.cancelled
    case 'contains': {
      const [search, item] = args
      if (Array.isArray(search)) return search.some((element) => looseEquals(element, item))
      return toText(search).toUpperCase().includes(toText(item).toUpperCase())
    }
    case 'startswith':
      return toText(args[0]).toUpperCase().startsWith(toText(args[1]).toUpperCase())
    case 'endswith':
      return toText(args[0]).toUpperCase().endsWith(toText(args[1]).toUpperCase())
    case 'format':
      return format(toText(args[0]), args.slice(1))
    case 'join': {
      const separator = args.length > 1 ? toText(args[1]) : ','
      return Array.isArray(args[0]) ? args[0].map(toText).join(separator) : toText(args[0])
    }
    case 'tojson':
      return JSON.stringify(args[0], null, 2)
    case 'fromjson': {
      const text = toText(args[0])
      if (text.trim() === '') throw new ExpressionError('fromJSON: empty input')
      try {
        return JSON.parse(text) as Value
      } catch (error) {
        throw new ExpressionError(`fromJSON: ${(error as Error).message}`)
      }
    }
    default:
      throw new ExpressionError(`unrecognized function ${name}`)
  }
}

export function evaluateNode(node: Node, context: ExpressionContext): Value {
  switch (node.kind) {
    case 'literal':
      return node.value
    case 'context':
      return context.contexts[node.name] ?? null
    case 'index':
      return index(evaluateNode(node.target, context), node.index === 'wildcard' ? 'wildcard' : evaluateNode(node.index, context))
    case 'call':
      return call(node.name, node.args.map((arg) => evaluateNode(arg, context)), context.status)
    case 'not':
      return !truthy(evaluateNode(node.operand, context))
    case 'logical': {
      const left = evaluateNode(node.left, context)
      if (node.op === '&&') return truthy(left) ? evaluateNode(node.right, context) : left
      return truthy(left) ? left : evaluateNode(node.right, context)
    }
    case 'compare': {
      const [left, right] = [evaluateNode(node.left, context), evaluateNode(node.right, context)]
      if (node.op === '==') return looseEquals(left, right)
      if (node.op === '!=') return !looseEquals(left, right)
      const order = compareOrdered(left, right)
      if (Number.isNaN(order)) return false
      return node.op === '<' ? order < 0 : node.op === '<=' ? order <= 0 : node.op === '>' ? order > 0 : order >= 0
    }
  }
}

export function evaluate(expression: string, context: ExpressionContext): Value {
  return evaluateNode(parse(expression), context)
}

// ---------------------------------------------------------------------------------------------
// Templates: `${{ … }}` inside workflow strings

type Part = { text: string } | { expression: string }

/** Splits a string into literal text and `${{ … }}` expressions; `}}` inside a string literal does not end one. */
export function templateParts(template: string): Part[] {
  const parts: Part[] = []
  let i = 0
  while (i < template.length) {
    const start = template.indexOf('${{', i)
    if (start < 0) {
      parts.push({ text: template.slice(i) })
      break
    }
    if (start > i) parts.push({ text: template.slice(i, start) })
    let j = start + 3
    let inString = false
    for (; j < template.length; j++) {
      if (template[j] === "'") inString = !inString
      else if (!inString && template.startsWith('}}', j)) break
    }
    if (j >= template.length) throw new ExpressionError(`unterminated \${{ in: ${template}`)
    parts.push({ expression: template.slice(start + 3, j).trim() })
    i = j + 2
  }
  return parts
}

/**
 * A workflow string with its expressions replaced. A string that is one whole `${{ … }}` keeps
 * the expression's value; an object or array there is an error, as for a runner where a string
 * (an input, an env value) is expected.
 */
export function interpolate(template: string, context: ExpressionContext): string {
  const parts = templateParts(template)
  return parts
    .map((part) => {
      if ('text' in part) return part.text
      const value = evaluate(part.expression, context)
      if (typeof value === 'object' && value !== null) throw new ExpressionError(`a ${Array.isArray(value) ? 'sequence' : 'mapping'} was not expected: \${{ ${part.expression} }}`)
      return toText(value)
    })
    .join('')
}

/**
 * A step's or job's `if:`, as a runner decides it: `${{ }}` around the whole condition is
 * optional; a condition that calls no status function means `success() && (condition)`.
 */
export function evaluateCondition(condition: string | undefined, context: ExpressionContext): boolean {
  const text = (condition ?? '').trim()
  if (text === '') return truthy(call('success', [], context.status))
  const whole = /^\$\{\{([\s\S]*)\}\}$/.exec(text)
  const parts = templateParts(text)
  let tree: Node
  if (whole && parts.length === 1) tree = parse(whole[1])
  else if (parts.some((part) => 'expression' in part)) tree = { kind: 'literal', value: interpolate(text, context) }
  else tree = parse(text)
  if (!callsStatusFunction(tree)) tree = { kind: 'logical', op: '&&', left: { kind: 'call', name: 'success', args: [] }, right: tree }
  return truthy(evaluateNode(tree, context))
}
