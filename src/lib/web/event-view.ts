import type {EventFilter, EventHit, EventPage} from '../db/event-queries.js'
import type {StoredEventRow} from '../db/schema.js'
import {FilterError, checkEventFilter} from '../events/filter.js'
import {prettyJson} from '../events/event-json.js'
import {escapeControls} from '../text.js'
import {encodeCursor} from './event-cursor.js'
import {formatUtc} from './view-model.js'

/*
 * The events views' data, shaped for the templates. Every value from an event is hostile: the
 * templates escape it as HTML, control characters are shown as escapes, and an event's values
 * reach an href only URL-encoded, and only when the route they lead to would accept them.
 */

export const DEFAULT_EVENTS_PAGE = 50
const FILTER_NAMES = ['actor', 'type', 'action', 'app', 'ip', 'from', 'to'] as const

/** A query string for the events views: the filter, then paging (so a search is a link to share). */
export function eventsQuery(filter: EventFilter, extra: {size?: number; cursor?: string} = {}): string {
  const params = new URLSearchParams()
  for (const name of FILTER_NAMES) if (filter[name]) params.set(name, filter[name])
  if (extra.size !== undefined && extra.size !== DEFAULT_EVENTS_PAGE) params.set('size', String(extra.size))
  if (extra.cursor) params.set('cursor', extra.cursor)
  const text = params.toString()
  return text ? `?${text}` : ''
}

/** An event's value as text: control characters visible, never acted on; a dash for none. */
const shown = (value: string | null) => (value === null || value === '' ? '—' : escapeControls(value))

/** The search for one value (`/events?actor=…`), when a search can be made of it exactly as stored. */
export function filterHref(name: 'actor' | 'app' | 'ip', value: string | null): string | undefined {
  if (!value) return undefined
  try {
    if (checkEventFilter({[name]: value})[name] !== value) return undefined
  } catch (error) {
    if (error instanceof FilterError) return undefined
    throw error
  }

  return `/events${eventsQuery({[name]: value})}`
}

/** Can /events/:id be asked for this id (see the route's checks)? */
export function isLinkableId(id: string): boolean {
  // A browser resolves the path segments "." and ".." (however encoded) before it asks.
  return id.length > 0 && id.length <= 256 && escapeControls(id) === id && id !== '.' && id !== '..'
}

export const eventHref = (id: string) => (isLinkableId(id) ? `/events/${encodeURIComponent(id)}` : undefined)

export function eventRowView(hit: EventHit) {
  return {
    id: shown(hit.id),
    href: eventHref(hit.id),
    day: hit.day,
    createdText: formatUtc(hit.created_at),
    kind: shown(`${hit.type}.${hit.action}`),
    actor: shown(hit.actor_email),
    actorHref: filterHref('actor', hit.actor_email),
    app: shown(hit.app_name),
    appHref: filterHref('app', hit.app_name),
    ip: shown(hit.ip_address),
    ipHref: filterHref('ip', hit.ip_address),
  }
}

/** The /events page: one page of rows, the filter form's values, and the links around it. */
export function eventsPageView(page: EventPage, filter: EventFilter, paging: {size: number; cursor?: string}) {
  const next = page.next ? encodeCursor(page.next) : undefined
  return {
    rows: page.events.map((hit) => eventRowView(hit)),
    filter: Object.fromEntries(FILTER_NAMES.map((name) => [name, filter[name] ?? ''])),
    paging: {
      count: page.events.length,
      continued: paging.cursor !== undefined,
      next: next ? `/events${eventsQuery(filter, {size: paging.size, cursor: next})}` : undefined,
      newest: paging.cursor === undefined ? undefined : `/events${eventsQuery(filter, {size: paging.size})}`,
    },
    apiLink: `/api/events${eventsQuery(filter, {size: paging.size, cursor: paging.cursor})}`,
    ndjsonLink: `/api/events.ndjson${eventsQuery(filter)}`,
  }
}

/** /events/:id: the event pretty-printed, its day and when it was collected, and its search columns. */
export function eventDetailView(row: StoredEventRow) {
  const pretty = prettyJson(row.event_json)
  const columns: Array<{name: string; value: string; href?: string}> = [
    {name: 'id', value: shown(row.id)},
    {name: 'created_at', value: formatUtc(row.created_at)},
    {name: 'type', value: shown(row.type)},
    {name: 'action', value: shown(row.action)},
    {name: 'actor_email', value: shown(row.actor_email), href: filterHref('actor', row.actor_email)},
    {name: 'actor_id', value: shown(row.actor_id)},
    {name: 'app_name', value: shown(row.app_name), href: filterHref('app', row.app_name)},
    {name: 'app_id', value: shown(row.app_id)},
    {name: 'owner_email', value: shown(row.owner_email)},
    {name: 'team_name', value: shown(row.team_name)},
    {name: 'ip_address', value: shown(row.ip_address), href: filterHref('ip', row.ip_address)},
    {name: 'account', value: shown(row.account)},
  ]
  return {
    id: shown(row.id),
    kind: shown(`${row.type}.${row.action}`),
    createdText: formatUtc(row.created_at),
    day: row.day,
    dayHref: `/logs/${row.day}`,
    dayEventsHref: `/events${eventsQuery({from: row.day, to: row.day})}`,
    collectedText: formatUtc(row.collected_at),
    columns,
    // Not JSON (only a hand edit of the table makes that): shown as it is, escaped.
    json: pretty ?? escapeControls(row.event_json),
    unparsable: pretty === undefined,
  }
}
