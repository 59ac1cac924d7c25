import type {FastifyInstance} from 'fastify'
import type {Kysely} from 'kysely'

import {type ArchiveMonth, calendarDaysBetween, findArchiveMonth, listArchiveMonths} from '../db/archive-queries.js'
import {findDay} from '../db/audit-log-repository.js'
import {type LogFilter, deleteDays, findDays, listLogs, summarizeLogs} from '../db/log-queries.js'
import {type Database, STATUSES} from '../db/schema.js'
import {type SinkBacklog, sinkBacklogs} from '../db/sink-queries.js'
import type {RouteContext} from './app.js'
import {eventsQuery} from './event-view.js'
import {HttpError} from './http-error.js'
import {cacheKey} from './read-cache.js'
import {type LogQuery, assertCalendarDate, dateSchema, filterFromQuery, logQuerySchema} from './validation.js'
import {
  type CalendarCell,
  allColumns,
  calendarCells,
  calendarRange,
  formatDuration,
  formatUtc,
  logQuery,
  monthView,
  monthsStrip,
  provenanceLines,
  summaryView,
  toRecordView,
} from './view-model.js'
import {oneLine} from '../text.js'

const MAX_DELETE = 500

const deleteSelectionSchema = {
  type: 'object',
  properties: {
    date: {type: 'array', items: dateSchema, minItems: 1, maxItems: MAX_DELETE},
  },
  required: ['date'],
} as const

/** The human pages: the log, a day's detail, and the two-step delete. */
export function registerPageRoutes(app: FastifyInstance, context: RouteContext): void {
  const {db, config} = context
  const readOnly = context.csrf === undefined
  // Deliveries do not go through the change feed: their backlog is read at most every few seconds.
  const recentBacklogs = backlogsEvery(db, 5000)
  // Nor do archive checks (audit_archives has no change trigger): read at most every few seconds too.
  const recentArchives = latestEvery(() => listArchiveMonths(db), 5000)

  app.get<{Querystring: LogQuery}>('/', {schema: {querystring: logQuerySchema}}, async (request, reply) => {
    const query = request.query
    const filter = filterFromQuery(query)
    const now = context.now()
    // Everything from the database, already shaped for the template; the clock matters only
    // through which days the calendar shows.
    const log = await context.reads.get(cacheKey('log view', filter, query.page, query.size, calendarRange(now)), () => loadLogView(db, filter, query, now))
    const [backlogs, archives] = await Promise.all([recentBacklogs(), recentArchives()])
    const delivery = deliveryView(backlogs)
    const months = monthsStrip(archives, now)
    return reply.viewAsync('pages/index.hbs', {...log, delivery, months, title: 'Audit log processing', readOnly, notice: noticeFrom(query), version: context.version})
  })

  app.get<{Params: {date: string}}>(
    '/logs/:date',
    {schema: {params: {type: 'object', properties: {date: dateSchema}, required: ['date']}}},
    async (request, reply) => {
      const {date} = request.params
      assertCalendarDate(date, 'date')
      const row = await findDay(db, date)
      if (!row) {
        reply.code(404)
        return reply.viewAsync('pages/day.hbs', {title: date, date, missing: true, readOnly})
      }

      const record = toRecordView(row)
      const month = date.slice(0, 7)
      return reply.viewAsync('pages/day.hbs', {
        title: date,
        date,
        readOnly,
        record,
        provenance: provenanceLines(record),
        settledText: record.settled_at ? formatUtc(record.settled_at) : undefined,
        settledDigest: record.settled_digest && record.settled_digest !== record.digest ? record.settled_digest : undefined,
        month: monthView(month, await findArchiveMonth(db, month)),
        durationText: formatDuration(record.durationSeconds),
        columns: allColumns(row),
        eventsHref: `/events${eventsQuery({from: date, to: date})}`,
      })
    },
  )

  // Every month checked against Heroku's archives (not personal data: the processing log's rules). Read fresh.
  app.get('/archives', async (_request, reply) => {
    const months = (await listArchiveMonths(db)).map((archive: ArchiveMonth) => archiveRowView(archive))
    return reply.viewAsync('pages/archives.hbs', {title: 'Monthly archives', months})
  })

  // Step 1 (changes nothing): show exactly what would go, with the token the POST needs.
  app.get<{Querystring: {date: string[]}}>('/delete', {schema: {querystring: deleteSelectionSchema}}, async (request, reply) => {
    if (readOnly) throw readOnlyError()
    const days = [...new Set(request.query.date)]
    for (const day of days) assertCalendarDate(day, 'date')
    const rows = await findDays(db, days)
    const records = rows.map((row) => ({...toRecordView(row), heartbeatText: formatUtc(row.heartbeat_at)}))
    return reply.viewAsync('pages/confirm-delete.hbs', {
      title: 'Confirm deletion',
      records,
      anyProcessing: records.some((r) => r.status === 'PROCESSING'),
      missing: days.filter((day) => !rows.some((row) => row.process_date === day)),
      // For exactly the records listed: the form posts those dates, and the token deletes no others.
      csrf: context.csrf!.issue(records.map((record) => record.date)),
    })
  })

  // Step 2: the only route that changes anything; needs the confirmation page's token.
  app.post<{Body: {date: string[]; csrf?: string; force?: string}}>(
    '/delete',
    {
      schema: {
        body: {
          type: 'object',
          properties: {...deleteSelectionSchema.properties, csrf: {type: 'string', maxLength: 200}, force: {type: 'string', maxLength: 10}},
          required: ['date'],
        },
      },
    },
    async (request, reply) => {
      if (readOnly) throw readOnlyError()
      const days = [...new Set(request.body.date)]
      if (!context.csrf!.verify(request.body.csrf, days)) {
        throw new HttpError(403, 'The form has expired, did not come from this page, or asks to delete other records than it listed: nothing was deleted. Select the records again.')
      }

      for (const day of days) assertCalendarDate(day, 'date')
      let outcome
      try {
        outcome = await deleteDays(db, days, {force: request.body.force === 'on', staleAfterMinutes: config.staleAfterMinutes})
      } finally {
        context.changes?.changed() // the page this redirects to must not be served from before the delete
      }

      context.logger.info(`status page: deleted ${outcome.deleted.join(', ') || 'nothing'}${outcome.refusedLive.length > 0 ? `; kept live ${outcome.refusedLive.join(', ')}` : ''}`)
      const query = new URLSearchParams({deleted: String(outcome.deleted.length), kept: String(outcome.refusedLive.length), missing: String(outcome.missing.length)})
      return reply.redirect(`/?${query}`, 303)
    },
  )
}

/** The log page's data: one page of records, the summary and the calendar, as the template shows them. */
async function loadLogView(db: Kysely<Database>, filter: LogFilter, query: LogQuery, now: Date) {
  const range = calendarRange(now)
  const offset = (query.page - 1) * query.size
  const [page, summary, calendarDays] = await Promise.all([
    listLogs(db, filter, {offset, limit: query.size}),
    summarizeLogs(db, filter),
    calendarDaysBetween(db, range.from, range.to),
  ])
  const pages = Math.max(1, Math.ceil(page.total / query.size))
  const records = page.rows.map((row) => {
    const record = toRecordView(row)
    return {
      ...record,
      durationText: formatDuration(record.durationSeconds),
      errorShort: oneLine(record.error, 80),
      createdText: formatUtc(record.createdAt),
      updatedText: formatUtc(record.updatedAt),
    }
  })
  return {
    records,
    filter: {status: filter.status ?? 'all', from: filter.from ?? '', to: filter.to ?? ''},
    statuses: ['all', ...STATUSES].map((status) => ({value: status, selected: (filter.status ?? 'all') === status})),
    paging: {
      page: query.page,
      pages,
      total: page.total,
      first: page.total === 0 ? 0 : offset + 1,
      last: Math.min(offset + query.size, page.total),
      previous: query.page > 1 ? logQuery(filter, {page: Math.min(query.page - 1, pages), size: query.size}) : undefined,
      next: query.page < pages ? logQuery(filter, {page: query.page + 1, size: query.size}) : undefined,
    },
    apiLink: `/api/logs${logQuery(filter, {page: query.page, size: query.size})}`,
    summary: summaryView(summary),
    calendar: calendarView(range, calendarCells(calendarDays, now)),
  }
}

function calendarView(range: {from: string; to: string}, cells: CalendarCell[]) {
  return {
    ...range,
    cells,
    missing: cells.filter((cell) => cell.status === 'MISSING').length,
    unsettled: cells.filter((cell) => cell.settle === 'unsettled').length,
  }
}

/** A month of the archives page: its check, and its counts and times as shown. */
function archiveRowView(archive: ArchiveMonth) {
  return {
    ...monthView(archive.month, archive),
    createdText: archive.archive_created_at ? formatUtc(archive.archive_created_at) : '—',
    detailShort: archive.detail ? oneLine(archive.detail, 300) : undefined,
  }
}

function readOnlyError(): HttpError {
  return new HttpError(403, 'This status page is read-only: set STATUS_PAGE_USERNAME and STATUS_PAGE_PASSWORD to enable deleting records.')
}

/** The message after a delete, built from counts only: no text from the URL reaches the page. */
function noticeFrom(query: LogQuery): string | undefined {
  if (query.deleted === undefined) return undefined
  const parts = [`Deleted ${query.deleted} record${query.deleted === 1 ? '' : 's'}.`]
  if (query.kept) parts.push(`Kept ${query.kept} record${query.kept === 1 ? '' : 's'} still being processed by a live run (tick "delete anyway" to force).`)
  if (query.missing) parts.push(`${query.missing} had no record.`)
  return parts.join(' ')
}

/** `load()`'s value, read again once `maxAgeMs` old (one read shared by concurrent requests; a failed read is not kept). */
export function latestEvery<T>(load: () => Promise<T>, maxAgeMs: number): () => Promise<T> {
  let latest: {at: number; value: Promise<T>} | undefined
  return () => {
    const now = Date.now()
    if (!latest || now - latest.at > maxAgeMs) {
      const value = load()
      latest = {at: now, value}
      value.catch(() => {
        if (latest?.value === value) latest = undefined
      })
    }

    return latest.value
  }
}

/** The sinks' backlogs, read again once `maxAgeMs` old (one read shared by concurrent requests). */
export function backlogsEvery(db: Kysely<Database>, maxAgeMs: number): () => Promise<SinkBacklog[]> {
  let latest: {at: number; value: Promise<SinkBacklog[]>} | undefined
  return () => {
    const now = Date.now()
    if (!latest || now - latest.at > maxAgeMs) {
      const value = sinkBacklogs(db)
      latest = {at: now, value}
      value.catch(() => {
        if (latest?.value === value) latest = undefined
      })
    }

    return latest.value
  }
}

/** What the log page shows of delivery: each sink's backlog, or nothing when there is no sink. */
function deliveryView(backlogs: SinkBacklog[]) {
  if (backlogs.length === 0) return undefined
  return backlogs.map((b) => ({
    target: b.target,
    pending: b.pending_events,
    oldestPendingDay: b.oldest_pending_day,
    delivered: b.delivered_events,
    lastSuccessText: b.last_success_at ? formatUtc(b.last_success_at) : 'never',
    stopped: b.stopped_at ? {at: formatUtc(b.stopped_at), reason: oneLine(b.stop_reason, 200)} : undefined,
    lastError: !b.stopped_at && b.pending_events > 0 && b.last_error ? oneLine(b.last_error, 200) : undefined,
  }))
}
