import {Readable} from 'node:stream'

import type {FastifyInstance, FastifyRequest, onRequestHookHandler} from 'fastify'
import type {Kysely} from 'kysely'

import {type EventCursor, type EventFilter, findEvent, searchEvents, streamEvents} from '../db/event-queries.js'
import type {Database} from '../db/schema.js'
import {foldJsonText} from '../events/event-json.js'
import {FilterError, checkEventFilter} from '../events/filter.js'
import {safeErrorMessage} from '../secrets.js'
import {escapeControls} from '../text.js'
import type {RouteContext} from './app.js'
import {decodeCursor, encodeCursor} from './event-cursor.js'
import {DEFAULT_EVENTS_PAGE, eventDetailView, eventsPageView} from './event-view.js'
import {HttpError} from './http-error.js'
import {isLocalClient} from './security.js'

/** Most events on one page or one /api/events answer. */
export const MAX_EVENTS_PAGE = 200
/** Events read per query while streaming /api/events.ndjson: bounds the memory one download holds. */
const STREAM_BATCH = 500
/** Lines gathered into one write of the stream (not one chunk per event). */
const STREAM_CHUNK_CHARS = 64 * 1024

const text = {type: 'string', maxLength: 1000} as const

/** The events views' query string; checkEventFilter then checks the values. Unknown keys are dropped. */
const searchSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {actor: text, type: text, action: text, app: text, ip: text, from: text, to: text},
} as const

const pageSchema = {
  ...searchSchema,
  properties: {
    ...searchSchema.properties,
    cursor: {type: 'string', maxLength: 4096},
    size: {type: 'integer', minimum: 1, maximum: MAX_EVENTS_PAGE, default: DEFAULT_EVENTS_PAGE},
  },
} as const

type SearchQuery = Partial<Record<'actor' | 'type' | 'action' | 'app' | 'ip' | 'from' | 'to', string>>
type PageQuery = SearchQuery & {cursor?: string; size: number}

const idParams = {type: 'object', properties: {id: {type: 'string', maxLength: 256}}, required: ['id']} as const

export const STORE_OFF_MESSAGE =
  'The event store is off (EVENT_STORE=off): no events are kept, so there are none to show. Unset EVENT_STORE (or set it to on) to keep the events of the days processed from then on.'

/**
 * The events views: /events and /events/:id for people, /api/events (pages) and
 * /api/events.ndjson (everything, streamed) for programs. Events are personal data, so each route
 * first checks who is asking (see eventsAccess), then that the store is on.
 */
export function registerEventRoutes(app: FastifyInstance, context: RouteContext): void {
  const {db} = context
  const guard = eventsAccess(context)

  app.get<{Querystring: PageQuery}>('/events', {onRequest: guard, schema: {querystring: pageSchema}}, async (request, reply) => {
    const {filter, cursor, size} = pageRequest(request.query)
    const page = await searchEvents(db, filter, {order: 'newest', cursor, limit: size})
    return reply.viewAsync('pages/events.hbs', {title: 'Events', ...eventsPageView(page, filter, {size, cursor: request.query.cursor})})
  })

  app.get<{Params: {id: string}}>('/events/:id', {onRequest: guard, schema: {params: idParams}}, async (request, reply) => {
    const {id} = request.params
    if (id === '' || escapeControls(id) !== id) throw new HttpError(400, 'Bad request: an event id is 1 to 256 characters, without control characters.')
    const row = await findEvent(db, id)
    if (!row) throw new HttpError(404, `No event with id ${id} is stored.`)
    const event = eventDetailView(row)
    return reply.viewAsync('pages/event.hbs', {title: event.kind, event})
  })

  // Each event is the stored text itself, the API's bytes (line breaks aside): every field, key
  // order, big number and escape exactly as sent, not a parse-and-serialize copy.
  app.get<{Querystring: PageQuery}>('/api/events', {onRequest: guard, schema: {querystring: pageSchema}}, async (request, reply) => {
    const {filter, cursor, size} = pageRequest(request.query)
    const page = await searchEvents(db, filter, {order: 'newest', cursor, limit: size})
    const events = page.events.map((hit) => {
      assertJson(hit.event_json, hit.id)
      return foldJsonText(hit.event_json)
    })
    const next = page.next ? JSON.stringify(encodeCursor(page.next)) : 'null'
    return reply.type('application/json; charset=utf-8').send(`{"events":[${events.join(',')}],"next":${next}}`)
  })

  app.get<{Querystring: SearchQuery}>('/api/events.ndjson', {onRequest: guard, schema: {querystring: searchSchema}}, async (request, reply) => {
    const filter = searchFilter(request.query)
    const lines = await ndjsonLines(db, filter)
    lines.on('error', (error) => context.logger.warn(`GET /api/events.ndjson stopped: ${safeErrorMessage(error)}`))
    return reply.type('application/x-ndjson; charset=utf-8').send(lines)
  })
}

/**
 * Who may see events. With credentials, whoever signed in (the basic-auth hook ran first).
 * Without them: nobody on a dyno, which the internet reaches; elsewhere only this machine, judged
 * by the socket, since X-Forwarded-For is the client's to write.
 */
function eventsAccess(context: RouteContext): onRequestHookHandler {
  const {config} = context
  return async (request: FastifyRequest) => {
    if (!config.auth) {
      if (config.onDyno) {
        throw new HttpError(403, 'Events hold personal data (emails, IP addresses), so on a dyno they need sign-in: set STATUS_PAGE_USERNAME and STATUS_PAGE_PASSWORD (heroku config:set STATUS_PAGE_USERNAME=… STATUS_PAGE_PASSWORD=…).')
      }

      if (!isLocalClient(request.socket.remoteAddress, request.headers['x-forwarded-for'])) {
        throw new HttpError(403, 'Events hold personal data (emails, IP addresses): without STATUS_PAGE_USERNAME and STATUS_PAGE_PASSWORD they are shown only on this machine (localhost). Set both to let others sign in.')
      }
    }

    if (context.store?.enabled === false) throw new HttpError(404, STORE_OFF_MESSAGE)
  }
}

function searchFilter(query: SearchQuery): EventFilter {
  try {
    return checkEventFilter(query)
  } catch (error) {
    if (error instanceof FilterError) throw new HttpError(400, `Bad request: ${error.message}.`)
    throw error
  }
}

function pageRequest(query: PageQuery): {filter: EventFilter; cursor?: EventCursor; size: number} {
  const filter = searchFilter(query)
  if (query.cursor === undefined || query.cursor === '') return {filter, size: query.size}
  const cursor = decodeCursor(query.cursor)
  if (!cursor) throw new HttpError(400, 'Bad request: cursor is not one this server gave out. Start again from the newest events (leave cursor out).')
  return {filter, cursor, size: query.size}
}

/** The store holds what the API sent, which was JSON; only a hand edit of the table could break that. */
function assertJson(text: string, id: string): void {
  try {
    JSON.parse(text)
  } catch {
    throw new Error(`the stored event ${escapeControls(id.slice(0, 80))} is not valid JSON`)
  }
}

/**
 * Every matching event, newest first, one stored text per line, as a stream that reads the store
 * only as fast as the client takes the lines (a batch at a time: memory stays bounded whatever
 * the number of matches). The first batch is read before anything is sent, so an unreachable
 * database is still an error answer rather than an empty download.
 */
export async function ndjsonLines(db: Kysely<Database>, filter: EventFilter, batch = STREAM_BATCH): Promise<Readable> {
  const hits = streamEvents(db, filter, {order: 'newest', batch})
  const first = await hits.next()
  async function* chunks() {
    if (first.done) return
    let chunk = `${foldJsonText(first.value.event_json)}\n`
    for await (const hit of hits) {
      if (chunk.length >= STREAM_CHUNK_CHARS) {
        yield chunk
        chunk = ''
      }

      chunk += `${foldJsonText(hit.event_json)}\n`
    }

    yield chunk
  }

  return Readable.from(chunks(), {objectMode: false, highWaterMark: STREAM_CHUNK_CHARS})
}
