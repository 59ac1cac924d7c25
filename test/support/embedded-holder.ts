/**
 * Another process on an embedded data directory, for test/db/embedded.test.ts. Started as
 * `node --import tsx test/support/embedded-holder.ts DIR MODE`; it opens the directory, migrates,
 * records DAY as SUCCESS, prints `ready`, then:
 *   hold  waits for a line `close` on stdin, closes, prints `closed` and exits 0;
 *   exit  exits at once without closing (the 'exit' handler must release the directory).
 * (Not importable: it runs on load.) A failure to open prints `error <message> — <hint>` and exits 3.
 */
import {randomUUID} from 'node:crypto'
import {createInterface} from 'node:readline'

import {claimDay, finishDay} from '../../src/lib/db/audit-log-repository.js'
import {openEmbeddedDb} from '../../src/lib/db/embedded.js'
import {migrateToLatest} from '../../src/lib/db/migrate.js'
import {UsageError} from '../../src/lib/errors.js'

const HOLDER_DAY = '2025-03-01'
const HOLDER_EVENTS = 31

const [dir, mode = 'hold'] = process.argv.slice(2)

try {
  const embedded = await openEmbeddedDb(dir, {lockWaitMs: 0})
  await migrateToLatest(embedded.db)
  const token = randomUUID()
  const claim = await claimDay(embedded.db, {day: HOLDER_DAY, token, staleAfterMinutes: 15, force: true})
  if (claim.claimed) await finishDay(embedded.db, {day: HOLDER_DAY, token, status: 'SUCCESS', eventsCount: HOLDER_EVENTS, errorMessage: null})
  process.stdout.write('ready\n')
  if (mode === 'exit') process.exit(0)

  for await (const line of createInterface({input: process.stdin})) {
    if (line.trim() === 'close') break
  }

  await embedded.close()
  process.stdout.write('closed\n')
} catch (error) {
  const text = error instanceof UsageError ? `${error.message} — ${error.hint ?? ''}` : String(error)
  process.stdout.write(`error ${text}\n`)
  process.exit(3)
}
