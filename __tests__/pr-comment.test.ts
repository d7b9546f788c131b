import { afterAll, afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals'
import { writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import { temporaryDirectory } from './harness/postgres.js'

/*
 * The sticky pull request comment against a local HTTP server that stands in for the GitHub REST
 * API (GITHUB_API_URL, here with a GHES-style /api/v3 prefix), with a pull_request event payload
 * in GITHUB_EVENT_PATH, as on a runner. No mock of Octokit: the real @actions/github client talks
 * HTTP to the stand-in.
 */

interface StoredComment {
  id: number
  body: string
  html_url: string
  user: { login: string; type: string }
}

interface Recorded {
  method: string
  path: string
  query: URLSearchParams
  body: { body?: string } | undefined
  authorization: string | undefined
}

const OWNER = 'acme'
const REPO = 'app'
const PR = 17
const TOKEN = 'ghs_TESTtoken0123456789abcdefghijklmnop'
const API_PREFIX = '/api/v3'

const api = {
  comments: [] as StoredComment[],
  requests: [] as Recorded[],
  nextId: 1000,
  pageSize: 3,
  failWith: undefined as number | undefined,
  hang: false
}

function reply(res: ServerResponse, status: number, data: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers })
  res.end(JSON.stringify(data))
}

function handle(req: IncomingMessage, res: ServerResponse, raw: string) {
  const url = new URL(req.url ?? '/', 'http://stand-in')
  const body = raw ? (JSON.parse(raw) as { body?: string }) : undefined
  api.requests.push({ method: req.method ?? '', path: url.pathname, query: url.searchParams, body, authorization: req.headers.authorization })
  if (api.hang) return // never answers: the client's timeout must end the wait
  if (api.failWith) {
    return reply(res, api.failWith, { message: api.failWith === 403 ? 'Resource not accessible by integration' : 'Not Found', status: String(api.failWith) })
  }
  const issueComments = `${API_PREFIX}/repos/${OWNER}/${REPO}/issues/${PR}/comments`
  const oneComment = new RegExp(`^${API_PREFIX}/repos/${OWNER}/${REPO}/issues/comments/(\\d+)$`)
  if (req.method === 'GET' && url.pathname === issueComments) {
    const page = Number(url.searchParams.get('page') ?? '1')
    const pages = Math.max(1, Math.ceil(api.comments.length / api.pageSize))
    const link = (n: number) => `<http://${req.headers.host}${issueComments}?per_page=${url.searchParams.get('per_page') ?? 30}&page=${n}>`
    const links = page < pages ? [`${link(page + 1)}; rel="next"`, `${link(pages)}; rel="last"`] : []
    return reply(res, 200, api.comments.slice((page - 1) * api.pageSize, page * api.pageSize), links.length ? { link: links.join(', ') } : {})
  }
  if (req.method === 'POST' && url.pathname === issueComments) {
    const comment = { id: api.nextId++, body: body?.body ?? '', html_url: '', user: { login: 'github-actions[bot]', type: 'Bot' } }
    comment.html_url = `https://github.example/${OWNER}/${REPO}/pull/${PR}#issuecomment-${comment.id}`
    api.comments.push(comment)
    return reply(res, 201, comment)
  }
  const match = oneComment.exec(url.pathname)
  if (req.method === 'PATCH' && match) {
    const comment = api.comments.find((c) => c.id === Number(match[1]))
    if (!comment) return reply(res, 404, { message: 'Not Found' })
    comment.body = body?.body ?? ''
    return reply(res, 200, comment)
  }
  return reply(res, 404, { message: `no route for ${req.method} ${url.pathname}` })
}

const server = createServer((req, res) => {
  let raw = ''
  req.on('data', (chunk: Buffer) => (raw += chunk.toString('utf8')))
  req.on('end', () => handle(req, res, raw))
})
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
const API_URL = `http://127.0.0.1:${(server.address() as { port: number }).port}${API_PREFIX}`

// @actions/github reads GITHUB_API_URL when it is first imported: set it, then import.
process.env.GITHUB_API_URL = API_URL
const { upsertPlanComment, commentBody, commentMarker, stripCredentials, COMMENT_LIMIT } = await import('../src/action/pr-comment.js')

afterAll(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})

const dir = temporaryDirectory('pgxu-pr-comment-')
let eventCounter = 0

/** The environment of a runner on a pull request: event payload file and GITHUB_* variables. */
function prEnv(options: { event?: string; head?: string | null; job?: string; workflow?: string } = {}): NodeJS.ProcessEnv {
  const head = options.head === undefined ? `${OWNER}/${REPO}` : options.head
  const payload = {
    action: 'synchronize',
    number: PR,
    pull_request: {
      number: PR,
      head: { ref: 'feature', repo: head === null ? null : { full_name: head } },
      base: { ref: 'main', repo: { full_name: `${OWNER}/${REPO}` } }
    },
    repository: { full_name: `${OWNER}/${REPO}` }
  }
  const path = join(dir, `event-${++eventCounter}.json`)
  writeFileSync(path, JSON.stringify(payload))
  return {
    GITHUB_API_URL: API_URL,
    GITHUB_EVENT_PATH: path,
    GITHUB_EVENT_NAME: options.event ?? 'pull_request',
    GITHUB_REPOSITORY: `${OWNER}/${REPO}`,
    GITHUB_WORKFLOW: options.workflow ?? 'PR gate',
    GITHUB_JOB: options.job ?? 'plan',
    GITHUB_RUN_ID: '4242',
    GITHUB_SERVER_URL: 'https://github.example'
  }
}

const RUN_URL = `https://github.example/${OWNER}/${REPO}/actions/runs/4242`
const MARKER = '<!-- pg-extension-upgrade:PR gate:plan -->'

const summary = (status: string) => `## pg-extension-upgrade · dry-run\n\n✅ **${status}** · postgresql://ci:***@db.internal:5432/app\n\n### Plan\n\n| Database | Extension |\n| --- | --- |\n| app | hstore |\n`

let stdout: string[] = []
beforeEach(() => {
  api.comments = []
  api.requests = []
  api.nextId = 1000
  api.failWith = undefined
  api.hang = false
  api.pageSize = 3
  stdout = []
  jest.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array) => {
    stdout.push(String(chunk))
    return true
  }) as typeof process.stdout.write)
})
afterEach(() => {
  jest.restoreAllMocks()
})

const printed = () => stdout.join('')
const writes = () => api.requests.filter((r) => r.method !== 'GET')
const post = (markdown: string, env: NodeJS.ProcessEnv, extra: { secrets?: string[]; enabled?: boolean; token?: string; timeoutMs?: number } = {}) =>
  upsertPlanComment({ markdown, token: extra.token ?? TOKEN, enabled: extra.enabled ?? true, secrets: extra.secrets ?? [], env, timeoutMs: extra.timeoutMs })

const otherComment = (id: number, body: string): StoredComment => ({ id, body, html_url: `https://github.example/c/${id}`, user: { login: 'someone', type: 'User' } })

describe('upsertPlanComment against a stand-in GitHub API', () => {
  it('the first run creates one comment with the marker, the summary and a link to the run', async () => {
    const outcome = await post(summary('dry_run_approved'), prEnv())
    expect(outcome).toEqual({ action: 'created', id: 1000, url: `https://github.example/${OWNER}/${REPO}/pull/${PR}#issuecomment-1000` })
    expect(api.comments).toHaveLength(1)
    const body = api.comments[0].body
    expect(body.startsWith(`${MARKER}\n## pg-extension-upgrade · dry-run`)).toBe(true)
    expect(body).toContain('| app | hstore |')
    expect(body).toContain(`[workflow run](${RUN_URL})`)
    expect(api.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      `GET ${API_PREFIX}/repos/${OWNER}/${REPO}/issues/${PR}/comments`,
      `POST ${API_PREFIX}/repos/${OWNER}/${REPO}/issues/${PR}/comments`
    ])
    expect(api.requests[0].authorization).toBe(`token ${TOKEN}`)
    expect(printed()).toContain(`Posted the plan comment on pull request #${PR}`)
  })

  it('the second run updates the same comment in place, never a second one', async () => {
    const env = prEnv()
    const first = await post(summary('dry_run_blocked'), env)
    const second = await post(summary('dry_run_approved'), env)
    expect(first.action).toBe('created')
    expect(second).toMatchObject({ action: 'updated', id: (first as { id: number }).id })
    expect(api.comments).toHaveLength(1)
    expect(api.comments[0].body).toContain('dry_run_approved')
    expect(api.comments[0].body).not.toContain('dry_run_blocked')
    expect(writes().map((r) => `${r.method} ${r.path}`)).toEqual([
      `POST ${API_PREFIX}/repos/${OWNER}/${REPO}/issues/${PR}/comments`,
      `PATCH ${API_PREFIX}/repos/${OWNER}/${REPO}/issues/comments/1000`
    ])
    // A third run, later: still one comment.
    await post(summary('nothing_to_do'), env)
    expect(api.comments).toHaveLength(1)
  })

  it('keeps one comment per workflow and job', async () => {
    await post(summary('dry_run_approved'), prEnv({ job: 'staging' }))
    await post(summary('dry_run_approved'), prEnv({ job: 'production' }))
    await post(summary('dry_run_blocked'), prEnv({ job: 'staging' }))
    await post(summary('dry_run_approved'), prEnv({ workflow: 'Other', job: 'staging' }))
    expect(api.comments.map((c) => c.body.split('\n')[0])).toEqual([
      '<!-- pg-extension-upgrade:PR gate:staging -->',
      '<!-- pg-extension-upgrade:PR gate:production -->',
      '<!-- pg-extension-upgrade:Other:staging -->'
    ])
    expect(api.comments[0].body).toContain('dry_run_blocked')
  })

  it('follows pagination to find its comment on a later page, and stops there', async () => {
    api.pageSize = 3
    api.comments = [
      otherComment(1, 'LGTM'),
      otherComment(2, `quoting the bot:\n> ${MARKER}`),
      otherComment(3, 'ship it'),
      otherComment(4, 'one more'),
      { ...otherComment(5, `${MARKER}\nold plan`), user: { login: 'github-actions[bot]', type: 'Bot' } },
      otherComment(6, 'thanks'),
      otherComment(7, 'page three')
    ]
    const outcome = await post(summary('dry_run_approved'), prEnv())
    expect(outcome).toMatchObject({ action: 'updated', id: 5 })
    const reads = api.requests.filter((r) => r.method === 'GET')
    expect(reads.map((r) => r.query.get('page') ?? '1')).toEqual(['1', '2'])
    expect(reads[0].query.get('per_page')).toBe('100')
    expect(writes().map((r) => `${r.method} ${r.path}`)).toEqual([`PATCH ${API_PREFIX}/repos/${OWNER}/${REPO}/issues/comments/5`])
    expect(api.comments).toHaveLength(7)
    expect(api.comments[1].body).toBe(`quoting the bot:\n> ${MARKER}`)
    expect(api.comments[4].body).toContain('dry_run_approved')
  })

  it('reads every page when no comment is its own, then creates one', async () => {
    api.comments = Array.from({ length: 8 }, (_, i) => otherComment(i + 1, `comment ${i + 1}`))
    const outcome = await post(summary('dry_run_approved'), prEnv())
    expect(outcome.action).toBe('created')
    expect(api.requests.filter((r) => r.method === 'GET').map((r) => r.query.get('page') ?? '1')).toEqual(['1', '2', '3'])
    expect(api.comments).toHaveLength(9)
  })

  it('trims a huge summary under the limit, on a line boundary, with the link to the run', async () => {
    const rows = Array.from({ length: 5000 }, (_, i) => `| tenant_${String(i).padStart(5, '0')} | hstore | 1.4 → 1.8 | update | ✓ passed |`)
    const markdown = `## pg-extension-upgrade · dry-run\n\n### Plan\n\n${rows.join('\n')}\n\n<details><summary>Fingerprint</summary>\n\nsha256:abc\n\n</details>\n`
    expect(markdown.length).toBeGreaterThan(COMMENT_LIMIT * 3)
    const outcome = await post(markdown, prEnv())
    expect(outcome.action).toBe('created')
    const body = api.comments[0].body
    expect(body.length).toBeLessThanOrEqual(COMMENT_LIMIT)
    expect(body.length).toBeGreaterThan(COMMENT_LIMIT - 1000)
    expect(body.startsWith(MARKER)).toBe(true)
    expect(body).toContain('trimmed to fit GitHub’s comment size limit')
    expect(body).toContain(`[workflow run](${RUN_URL})`)
    // Whole rows only: the last kept row is complete.
    const kept = body.split('\n').filter((line) => line.startsWith('| tenant_'))
    expect(kept.length).toBeGreaterThan(100)
    expect(kept.at(-1)).toMatch(/^\| tenant_\d{5} \| hstore \| 1\.4 → 1\.8 \| update \| ✓ passed \|$/)
  })

  it('a fork pull request gets no API call and a notice saying why', async () => {
    const outcome = await post(summary('dry_run_approved'), prEnv({ head: 'mallory/app' }))
    expect(outcome).toMatchObject({ action: 'skipped' })
    expect(api.requests).toEqual([])
    const notice = stdout.find((line) => line.startsWith('::notice'))
    expect(notice).toContain('fork mallory/app')
    expect(notice).toContain('read-only token')
    expect(notice).toContain('job summary')
  })

  it('a pull request from a deleted fork is a fork too', async () => {
    const outcome = await post(summary('dry_run_approved'), prEnv({ head: null }))
    expect(outcome.action).toBe('skipped')
    expect(api.requests).toEqual([])
    expect(stdout.some((line) => line.startsWith('::notice'))).toBe(true)
  })

  it('a 403 becomes a warning with the permissions to add, not a failure', async () => {
    api.failWith = 403
    const outcome = await post(summary('dry_run_approved'), prEnv())
    expect(outcome).toEqual({ action: 'failed', reason: expect.stringContaining('403') })
    const warning = stdout.find((line) => line.startsWith('::warning'))
    expect(warning).toBeDefined()
    const text = decodeURIComponent(warning!.replace(/%0A/g, '\n'))
    expect(text).toContain('Resource not accessible by integration')
    expect(text).toContain('permissions:\n  contents: read\n  pull-requests: write')
    expect(text).toContain('comment-on-pr: false')
    expect(stdout.some((line) => line.startsWith('::error'))).toBe(false)
    expect(process.exitCode ?? 0).toBe(0)
  })

  it('a 404 (token that cannot see the repository) is a warning too', async () => {
    api.failWith = 404
    const outcome = await post(summary('dry_run_approved'), prEnv())
    expect(outcome).toMatchObject({ action: 'failed' })
    expect(stdout.find((line) => line.startsWith('::warning'))).toContain('pull-requests: write')
  })

  it('a server error is a warning without the permissions advice', async () => {
    api.failWith = 502
    const outcome = await post(summary('dry_run_approved'), prEnv())
    expect(outcome).toMatchObject({ action: 'failed', reason: expect.stringContaining('502') })
    const warning = stdout.find((line) => line.startsWith('::warning'))
    expect(warning).toContain('does not fail')
    expect(warning).not.toContain('pull-requests: write')
  })

  it('an API that never answers is given up after the timeout, as a warning', async () => {
    api.hang = true
    const started = Date.now()
    const outcome = await post(summary('dry_run_approved'), prEnv(), { timeoutMs: 300 })
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(outcome).toMatchObject({ action: 'failed', reason: expect.stringContaining('did not answer') })
    expect(stdout.some((line) => line.startsWith('::warning'))).toBe(true)
  })

  it('the body never contains a secret, the token, or credentials of a connection URI', async () => {
    const password = 'S3cr3t-p@ss/w0rd'
    const url = `postgresql://admin:${encodeURIComponent(password)}@db.internal:5432/app?sslmode=require`
    const markdown = [
      summary('dry_run_blocked'),
      `- **CONNECTION_FAILED**: cannot connect to ${url} with ${password}`,
      `- raw form: ${encodeURIComponent(password)} and the token ${TOKEN}`,
      `- key/value form: host=db.internal password=hunter2 dbname=app`,
      `- redacted: postgresql://admin:***@db.internal:5432/app`
    ].join('\n')
    await post(markdown, prEnv(), { secrets: [url, password, encodeURIComponent(password)] })
    const body = api.comments[0].body
    for (const leaked of [password, encodeURIComponent(password), 'S3cr3t', url, TOKEN, 'hunter2', 'admin:', 'ci:***@']) {
      expect({ leaked, found: body.includes(leaked) }).toEqual({ leaked, found: false })
    }
    expect(body).toContain('postgresql://db.internal:5432/app')
    expect(body).toContain('password=***')
    for (const request of api.requests) expect(JSON.stringify(request.body ?? {})).not.toContain('S3cr3t')
  })

  it('works for pull_request_target too', async () => {
    const outcome = await post(summary('dry_run_approved'), prEnv({ event: 'pull_request_target' }))
    expect(outcome.action).toBe('created')
  })

  it('does nothing on other events, or with comment-on-pr false', async () => {
    expect(await post(summary('x'), { ...prEnv(), GITHUB_EVENT_NAME: 'push' })).toMatchObject({ action: 'skipped' })
    expect(await post(summary('x'), { ...prEnv(), GITHUB_EVENT_NAME: 'workflow_dispatch' })).toMatchObject({ action: 'skipped' })
    expect(await post(summary('x'), prEnv(), { enabled: false })).toEqual({ action: 'skipped', reason: 'comment-on-pr is false' })
    expect(await post(summary('x'), { ...prEnv(), GITHUB_EVENT_PATH: join(dir, 'missing.json') })).toMatchObject({ action: 'skipped' })
    expect(api.requests).toEqual([])
    expect(stdout.some((line) => /^::(warning|error|notice)/.test(line))).toBe(false)
  })

  it('an empty token is a warning with the permissions advice, and no call', async () => {
    const outcome = await post(summary('x'), prEnv(), { token: '' })
    expect(outcome).toMatchObject({ action: 'failed' })
    expect(api.requests).toEqual([])
    expect(stdout.find((line) => line.startsWith('::warning'))).toContain('github-token')
  })
})

describe('comment body helpers', () => {
  it('the marker is hidden and cannot be ended early by a workflow name', () => {
    expect(commentMarker('PR gate', 'plan')).toBe('<!-- pg-extension-upgrade:PR gate:plan -->')
    const tricky = commentMarker('evil --> <b>x</b>\nname', 'job')
    expect(tricky.startsWith('<!-- ')).toBe(true)
    expect(tricky.indexOf('-->')).toBe(tricky.length - 3)
    expect(tricky).not.toContain('\n')
  })

  it('a body that fits is kept whole', () => {
    const body = commentBody('## title\n\ntext\n', { marker: MARKER, runUrl: RUN_URL })
    expect(body).toBe(`${MARKER}\n## title\n\ntext\n\n<sub>Posted by pg-extension-upgrade from the [workflow run](${RUN_URL}); updated in place on every run.</sub>\n`)
  })

  it('trimming closes an open <details> so the notice and the footer stay visible', () => {
    const lines = Array.from({ length: 400 }, (_, i) => `- item ${i}`)
    const markdown = `## t\n\n<details><summary>Many</summary>\n\n${lines.join('\n')}\n\n</details>\n`
    const body = commentBody(markdown, { marker: MARKER, runUrl: RUN_URL, limit: 2000 })
    expect(body.length).toBeLessThanOrEqual(2000)
    expect((body.match(/<details>/g) ?? []).length).toBe((body.match(/<\/details>/g) ?? []).length)
    expect(body.indexOf('</details>')).toBeLessThan(body.indexOf('trimmed to fit'))
    expect(body).toContain(RUN_URL)
  })

  it('trimming counts the marker: the limit is never exceeded at any size', () => {
    for (const size of [COMMENT_LIMIT - 200, COMMENT_LIMIT, COMMENT_LIMIT + 1, COMMENT_LIMIT * 2]) {
      const markdown = Array.from({ length: Math.ceil(size / 50) }, (_, i) => `line ${i} `.padEnd(49, 'x')).join('\n')
      expect(commentBody(markdown, { marker: MARKER, runUrl: RUN_URL }).length).toBeLessThanOrEqual(COMMENT_LIMIT)
    }
  })

  it('strips user and password from connection URIs and key/value strings', () => {
    expect(stripCredentials('at postgresql://u:***@h:5432/db and postgres://h/db2 and postgresql://u@h/d')).toBe(
      'at postgresql://h:5432/db and postgres://h/db2 and postgresql://h/d'
    )
    expect(stripCredentials("host=h password='a b' user=u")).toBe('host=h password=*** user=u')
  })
})
