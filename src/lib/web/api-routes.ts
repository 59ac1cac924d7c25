import type {FastifyInstance} from 'fastify'

import {findDay} from '../db/audit-log-repository.js'
import {listLogs, summarizeLogs} from '../db/log-queries.js'
import {safeErrorMessage} from '../secrets.js'
import type {RouteContext} from './app.js'
import {checkHealth, gapReport} from './health.js'
import {HttpError} from './http-error.js'
import {type LogQuery, assertCalendarDate, dateSchema, filterFromQuery, logQuerySchema} from './validation.js'
import {toRecordView} from './view-model.js'

/** The machine interfaces: the log as JSON, one day as JSON, and a health check for monitors. */
export function registerApiRoutes(app: FastifyInstance, context: RouteContext): void {
  const {db} = context

  app.get<{Querystring: LogQuery}>('/api/logs', {schema: {querystring: logQuerySchema}}, async (request) => {
    const query = request.query
    const filter = filterFromQuery(query)
    const [page, summary, gaps] = await Promise.all([
      listLogs(db, filter, {offset: (query.page - 1) * query.size, limit: query.size}),
      summarizeLogs(db, filter),
      gapReport(db, context.now(), filter),
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

  // No auth and no secrets: for uptime monitors and the router.
  app.get('/healthz', async (_request, reply) => {
    try {
      const health = await checkHealth(db, context.now(), context.config.requireYesterdayAfterHour)
      return reply.code(health.statusCode).send(health.body)
    } catch (error) {
      context.logger.warn(`healthz: database unreachable: ${safeErrorMessage(error)}`)
      return reply.code(503).send({ok: false, database: 'unreachable'})
    }
  })
}
