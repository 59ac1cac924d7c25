/** Filling the event store in tests, the way the day job does. */
import type {Kysely} from 'kysely'

import {ensurePartitions, eventRecord, eventStoreFor, eventTexts} from '../../src/lib/db/event-store.js'
import type {Database} from '../../src/lib/db/schema.js'
import type {AuditEvent} from '../../src/lib/heroku/types.js'

/** An ordinary event of `day`: id `<day>-NNNN`, created at minute n of the day, a few actors, apps and addresses. */
export function sampleEvent(day: string, n: number, extra: Partial<AuditEvent> = {}): AuditEvent {
  return {
    id: `${day}-${String(n).padStart(4, '0')}`,
    type: n % 3 === 0 ? 'addon' : 'app',
    action: n % 2 === 0 ? 'create' : 'destroy',
    created_at: `${day}T${String(Math.floor(n / 60) % 24).padStart(2, '0')}:${String(n % 60).padStart(2, '0')}:00Z`,
    actor: {id: `actor-${n % 4}`, email: `user${n % 4}@example.com`},
    app: {id: `app-${n % 5}`, name: `app-${n % 5}`},
    owner: {email: 'owner@example.com'},
    enterprise_account: {id: 'ea-1', name: 'acme'},
    team: {name: 'ops'},
    request: {ip_address: `192.0.2.${n % 7}`},
    data: {},
    ...extra,
  }
}

/**
 * Stores a day's events in one transaction, as the day job does. Given a page's JSON text (an
 * array), each event is kept as those bytes, so tests can store what JSON.stringify never writes
 * (pretty-printing, big numbers).
 */
export async function seedEvents(db: Kysely<Database>, day: string, page: readonly AuditEvent[] | string): Promise<void> {
  const text = typeof page === 'string' ? page : JSON.stringify(page)
  const events = JSON.parse(text) as AuditEvent[]
  const texts = eventTexts(events, Buffer.from(text))
  await ensurePartitions(db, [day])
  await eventStoreFor(db).transaction((_trx, append) => append(events.map((event, k) => eventRecord(day, event, texts[k], k + 1))))
}
