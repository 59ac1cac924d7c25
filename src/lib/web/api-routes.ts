import type {FastifyInstance} from 'fastify'
import type {Kysely} from 'kysely'

import {yesterdayUtc} from '../dates.js'
import {listArchiveMonths} from '../db/archive-queries.js'
import {findDay} from '../db/audit-log-repository.js'
import {type LogFilter, listLogs, summarizeLogs} from '../db/log-queries.js'
import type {Database} from '../db/schema.js'
import {sinkBacklogs} from '../db/sink-queries.js'
import {deliveryStatus} from '../delivery/delivery-status.js'
import {safeErrorMessage} from '../secrets.js'
import type {RouteContext} from './app.js'
import {createHealthCheck, gapReport} from './health.js'
import {HttpError} from './http-error.js'
import {cacheKey} from './read-cache.js'
import {type LogQuery, assertCalendarDate, dateSchema, filterFromQuery, logQuerySchema} from './validation.js'
import {toRecordView} from './view-model.js'

/** The machine interfaces: the log as JSON, one day as JSON, and a health check for monitors. */
export function registerApiRoutes(app: FastifyInstance, context: RouteContext): void {
  const {db} = context

  app.get<{Querystring: LogQuery}>('/api/logs', {schema: {querystring: logQuerySchema}}, async (request) => {
    const query = request.query
    const filter = filterFromQuery(query)
    const now = context.now()
    // The clock matters only through which day is yesterday (the gap window's end).
    return context.reads.get(cacheKey('api logs', filter, query.page, query.size, yesterdayUtc(now)), () => loadLogs(db, filter, query, now))
  })

  app.get<{Params: {date: string}}>(
    '/api/logs/:date',
    {schema: {params: {type: 'object', properties: {date: dateSchema}, required: ['date']}}},
    async (request) => {
      assertCalendarDate(request.params.date, 'date')
      const row = await findDay(db, request.params.date)
      if (!row) throw new HttpError(404, `No record for ${request.params.date}.`)
      return toRecordView(row)
    },
  )

  // Each sink's backlog (no URL: only its format and host). Read fresh: deliveries bypass the change feed.
  app.get('/api/delivery', async () => {
    const sinks = deliveryStatus(await sinkBacklogs(db), undefined, 0).map(({configured: _configured, ...sink}) => sink)
    return {sinks}
  })

  // The months checked against Heroku's monthly archives, newest first (as `archives status --json`). Read
  // fresh: audit_archives is written without notifying the change feed. Not personal data: the log's rules.
  app.get('/api/archives', async () => ({months: await listArchiveMonths(db)}))

  // No auth and no secrets: for uptime monitors and the router. Cheap under any load (see createHealthCheck).
  const health = createHealthCheck({
    db,
    reads: context.reads,
    clock: context.now,
    requireYesterdayAfterHour: context.config.requireYesterdayAfterHour,
    onUnreachable: (error) => context.logger.warn(`healthz: database unreachable: ${safeErrorMessage(error)}`),
  })
  app.get('/healthz', async (_request, reply) => {
    const {statusCode, body} = await health()
    return reply.code(statusCode).send(body)
  })
}

/** /api/logs' answer: one page of records, the summary, and the missing days. */
async function loadLogs(db: Kysely<Database>, filter: LogFilter, query: LogQuery, now: Date) {
  const offset = (query.page - 1) * query.size
  const [page, summary, gaps] = await Promise.all([
    listLogs(db, filter, {offset, limit: query.size}),
    summarizeLogs(db, filter),
    gapReport(db, now, filter),
  ])
  return {
    filter,
    page: query.page,
    size: query.size,
    total: page.total,
    pages: Math.max(1, Math.ceil(page.total / query.size)),
    records: page.rows.map((row) => toRecordView(row)),
    summary,
    missing: {...gaps.window, days: gaps.missing},
    yesterday: gaps.yesterday,
  }
}
