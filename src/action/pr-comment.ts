import * as core from '@actions/core'
import { getOctokit } from '@actions/github'
import { existsSync, readFileSync } from 'node:fs'
import { scrub } from '../core/connection.js'
import { formatDuration } from '../core/duration.js'
import { errorMessage } from '../core/errors.js'

/*
 * The plan as one sticky pull request comment per workflow and job (dry-run and run, on
 * pull_request and pull_request_target events). The comment is found again by a hidden marker
 * (atlas-action, buf-action) through the paginated list of the pull request's comments and edited
 * in place, so re-runs and new pushes never add a second one. A comment is a convenience: no
 * failure here ever fails the step; it becomes a warning that says how to fix it.
 */

/** GitHub rejects an issue comment longer than 65,536 characters; the marker counts. */
export const COMMENT_LIMIT = 65_536

const PULL_REQUEST_EVENTS = new Set(['pull_request', 'pull_request_target'])

/** The whole comment operation (list, then create or update) gives up after this long. */
const DEFAULT_TIMEOUT_MS = 60_000

export const PERMISSIONS_HELP = ['permissions:', '  contents: read', '  pull-requests: write'].join('\n')

export interface PlanCommentOptions {
  /** The job summary's Markdown: renderMarkdown(present(result)). */
  markdown: string
  /** Input github-token (defaults to the workflow token in action.yml). */
  token: string
  /** Input comment-on-pr. */
  enabled: boolean
  /** Everything that must never be shown: inputSecrets(raw, env). The token is added. */
  secrets: readonly string[]
  env?: NodeJS.ProcessEnv
  timeoutMs?: number
}

export type PlanCommentOutcome =
  | { action: 'created' | 'updated'; id: number; url?: string }
  | { action: 'skipped'; reason: string }
  | { action: 'failed'; reason: string }

interface PullRequestPayload {
  number?: number
  pull_request?: {
    number?: number
    head?: { repo?: { full_name?: string } | null }
    base?: { repo?: { full_name?: string } | null }
  }
  repository?: { full_name?: string }
}

/** What the comment needs to know about the run, read from the runner's environment. */
export interface PullRequestContext {
  event: string
  owner: string
  repo: string
  number: number
  /** The pull request comes from another repository (head repo ≠ base repo, or a deleted fork). */
  fromFork: boolean
  headRepo: string | undefined
  workflow: string
  job: string
  runUrl: string | undefined
}

/**
 * The pull request this run belongs to, or why there is none. Read at call time from `env`
 * (not from @actions/github's `context`, which is frozen when the module is first imported).
 */
export function pullRequestContext(env: NodeJS.ProcessEnv): PullRequestContext | { skip: string } {
  const event = env.GITHUB_EVENT_NAME ?? ''
  if (!PULL_REQUEST_EVENTS.has(event)) return { skip: `the event is ${event || 'not set'}, not pull_request or pull_request_target` }
  let payload: PullRequestPayload = {}
  try {
    if (env.GITHUB_EVENT_PATH && existsSync(env.GITHUB_EVENT_PATH)) payload = JSON.parse(readFileSync(env.GITHUB_EVENT_PATH, 'utf8')) as PullRequestPayload
  } catch (error) {
    return { skip: `the event payload cannot be read (${errorMessage(error)})` }
  }
  const pr = payload.pull_request
  const number = pr?.number ?? payload.number
  if (!pr || typeof number !== 'number') return { skip: 'the event payload has no pull request' }
  const repository = env.GITHUB_REPOSITORY || payload.repository?.full_name || pr.base?.repo?.full_name || ''
  const [owner, repo] = repository.split('/')
  if (!owner || !repo) return { skip: 'GITHUB_REPOSITORY is not set' }
  const baseRepo = pr.base?.repo?.full_name ?? repository
  const headRepo = pr.head?.repo?.full_name ?? undefined
  const server = (env.GITHUB_SERVER_URL || 'https://github.com').replace(/\/+$/, '')
  return {
    event,
    owner,
    repo,
    number,
    fromFork: headRepo === undefined || headRepo.toLowerCase() !== baseRepo.toLowerCase(),
    headRepo,
    workflow: env.GITHUB_WORKFLOW ?? '',
    job: env.GITHUB_JOB ?? '',
    runUrl: env.GITHUB_RUN_ID ? `${server}/${owner}/${repo}/actions/runs/${env.GITHUB_RUN_ID}` : undefined
  }
}

/** The hidden marker of this workflow's and job's comment; nothing in it can end the HTML comment. */
export function commentMarker(workflow: string, job: string): string {
  const clean = (part: string) => part.replace(/[\r\n]+/g, ' ').replace(/-{2,}/g, '-').replace(/[<>]/g, '').trim()
  return `<!-- pg-extension-upgrade:${clean(workflow)}:${clean(job)} -->`
}

/**
 * Removes what a comment must never show even in redacted form: the user and password of any
 * connection URI (`postgresql://user:***@host/db` → `postgresql://host/db`) and `password=`
 * keywords of key/value connection strings.
 */
export function stripCredentials(text: string): string {
  return text
    .replace(/\b(postgres(?:ql)?:\/\/)[^\s/@|<>()`'"]*@/gi, '$1')
    .replace(/\b(password\s*=\s*)('[^']*'|"[^"]*"|[^\s&|<>`]+)/gi, '$1***')
}

/**
 * The comment: marker, the summary (trimmed on a line boundary to fit `limit`, with any open
 * <details> closed and a pointer to the run), and a footer linking the run.
 */
export function commentBody(markdown: string, options: { marker: string; runUrl?: string; limit?: number }): string {
  const limit = options.limit ?? COMMENT_LIMIT
  const run = options.runUrl ? `[workflow run](${options.runUrl})` : 'workflow run'
  const header = `${options.marker}\n`
  const footer = `\n\n<sub>Posted by pg-extension-upgrade from the ${run}; updated in place on every run.</sub>\n`
  const text = markdown.replace(/\s+$/, '')
  if (header.length + text.length + footer.length <= limit) return header + text + footer

  const notice = `\n\n_…trimmed to fit GitHub’s comment size limit: the full plan is in the job summary and the plan-file output of the ${run}._`
  let kept = text.slice(0, Math.max(0, limit - header.length - footer.length - notice.length))
  for (;;) {
    kept = kept.slice(0, Math.max(0, kept.lastIndexOf('\n')))
    const open = (kept.match(/<details>/g) ?? []).length - (kept.match(/<\/details>/g) ?? []).length
    const closers = open > 0 ? '\n\n</details>'.repeat(open) : ''
    const body = header + kept + closers + notice + footer
    if (body.length <= limit || kept.length === 0) return body
  }
}

interface IssueComment {
  id: number
  body?: string | null
  html_url?: string
}

const statusOf = (error: unknown) => (typeof (error as { status?: unknown })?.status === 'number' ? (error as { status: number }).status : undefined)

/**
 * Posts or updates the plan comment. Call it after the summary is rendered, for dry-run and run.
 * Never throws: skips quietly when it does not apply, emits a notice for a fork, a warning with
 * the permissions needed when GitHub refuses.
 */
export async function upsertPlanComment(options: PlanCommentOptions): Promise<PlanCommentOutcome> {
  const env = options.env ?? process.env
  const token = options.token.trim()
  const secrets = token ? [...options.secrets, token] : [...options.secrets]
  const clean = (text: string) => stripCredentials(scrub(text, secrets))

  if (!options.enabled) return skipped('comment-on-pr is false')
  const context = pullRequestContext(env)
  if ('skip' in context) return skipped(context.skip)

  const where = `pull request #${context.number}`
  if (context.fromFork) {
    const reason = `${where} comes from ${context.headRepo ? `the fork ${context.headRepo}` : 'a fork that no longer exists'}, and GitHub gives workflows that forks trigger a read-only token`
    core.notice(`No plan comment on ${reason}. The plan is in this run's job summary.`, { title: 'pg-extension-upgrade: no pull request comment' })
    return { action: 'skipped', reason }
  }
  if (!token) {
    const reason = 'input github-token is empty'
    core.warning(`No plan comment on ${where}: ${reason}. Leave github-token at its default (the workflow token) and give the job:\n${PERMISSIONS_HELP}\nor set comment-on-pr: false.`, {
      title: 'pg-extension-upgrade: no pull request comment'
    })
    return { action: 'failed', reason }
  }

  const marker = commentMarker(context.workflow, context.job)
  const body = commentBody(clean(options.markdown), { marker, runUrl: context.runUrl })
  const signal = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS)
  const github = getOctokit(token, { baseUrl: (env.GITHUB_API_URL || 'https://api.github.com').replace(/\/+$/, '') })
  // Every request, the pages that paginate() fetches included (it drops per-call request options).
  github.hook.before('request', (request) => {
    request.request = { ...request.request, signal }
  })
  const target = { owner: context.owner, repo: context.repo }

  try {
    let existing: IssueComment | undefined
    const pages = github.paginate.iterator(github.rest.issues.listComments, { ...target, issue_number: context.number, per_page: 100 })
    for await (const page of pages) {
      existing = (page.data as IssueComment[]).find((comment) => (comment.body ?? '').trimStart().startsWith(marker))
      if (existing) break
    }
    if (existing) {
      const { data } = await github.rest.issues.updateComment({ ...target, comment_id: existing.id, body })
      core.info(`Updated the plan comment on ${where}: ${data.html_url ?? existing.html_url ?? existing.id}`)
      return { action: 'updated', id: data.id ?? existing.id, url: data.html_url ?? existing.html_url }
    }
    const { data } = await github.rest.issues.createComment({ ...target, issue_number: context.number, body })
    core.info(`Posted the plan comment on ${where}: ${data.html_url ?? data.id}`)
    return { action: 'created', id: data.id, url: data.html_url }
  } catch (error) {
    const status = statusOf(error)
    const detail = clean(errorMessage(error).split('\n')[0] ?? '')
    const title = 'pg-extension-upgrade: no pull request comment'
    if (status === 401 || status === 403 || status === 404) {
      const reason = `GitHub answered ${status} (${detail})`
      core.warning(
        `Could not post the plan comment on ${where}: ${reason}. The token needs write access to pull request comments; give the workflow or the job:\n${PERMISSIONS_HELP}\nor set comment-on-pr: false. The plan is in the job summary; the step does not fail for this.`,
        { title }
      )
      return { action: 'failed', reason }
    }
    const timedOut = signal.aborted
    const reason = timedOut ? `GitHub did not answer within ${formatDuration(options.timeoutMs ?? DEFAULT_TIMEOUT_MS)}` : status ? `GitHub answered ${status} (${detail})` : detail
    core.warning(`Could not post the plan comment on ${where}: ${reason}. The plan is in the job summary; the step does not fail for this.`, { title })
    return { action: 'failed', reason }
  }
}

function skipped(reason: string): PlanCommentOutcome {
  core.debug(`No pull request comment: ${reason}.`)
  return { action: 'skipped', reason }
}
