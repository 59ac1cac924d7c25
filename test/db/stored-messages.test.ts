/**
 * error_message never holds raw control characters, unbounded text or a secret, whoever writes
 * it: the repository sanitizes what it stores, so every writer (the day job, a future one) is
 * covered. On both engines.
 */
import {randomUUID} from 'node:crypto'

import {expect} from 'chai'
import type {Kysely} from 'kysely'

import {MAX_ERROR_MESSAGE, claimDay, cleanupStale, finishDay, findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {registerSecret} from '../../src/lib/secrets.js'
import {backdateHeartbeat, describeOnEngines, useEngineDb} from '../support/db.js'

const DAY = '2025-07-07'
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001F\u007F-\u009F\u2028\u2029\u202A-\u202E\u2066-\u2069]/

describeOnEngines('stored error messages', (engine) => {
  let db: Kysely<Database>

  useEngineDb(engine, (opened) => (db = opened))

  async function finishWith(errorMessage: string): Promise<string | null> {
    const token = randomUUID()
    const claim = await claimDay(db, {day: DAY, token, staleAfterMinutes: 15, force: false})
    expect(claim.claimed).to.equal(true)
    expect(await finishDay(db, {day: DAY, token, status: 'FAILED', eventsCount: 0, errorMessage})).to.equal(true)
    return (await findDay(db, DAY))!.error_message
  }

  it('finishDay stores one line, control characters escaped visibly', async () => {
    const stored = await finishWith('Heroku API answered 500: \u001B]0;pwned\u0007\n ERROR 2024-01-01 FORGED LINE\r\n\u001B[32m✔ all good\u009B\u2028')
    expect(stored).to.equal('Heroku API answered 500: \\x1B]0;pwned\\x07 ERROR 2024-01-01 FORGED LINE \\x1B[32m✔ all good\\x9B')
    expect(CONTROL.test(stored!)).to.equal(false)
  })

  it('finishDay bounds what it stores', async () => {
    const stored = await finishWith(`boom ${'x'.repeat(1_000_000)}`)
    expect(stored!.length).to.be.at.most(2000)
    expect(stored!.length).to.equal(MAX_ERROR_MESSAGE)
    expect(stored!.endsWith('…')).to.equal(true)
  })

  it('finishDay never stores a registered secret, even one a cut or a fold would have split', async () => {
    registerSecret('Stored-Secret  9931')
    const stored = await finishWith('failed with Stored-Secret  9931 in it')
    expect(stored).to.equal('failed with [redacted] in it')
  })

  it('a SUCCESS stores no message; cleanup’s reason is safe as built', async () => {
    const token = randomUUID()
    await claimDay(db, {day: DAY, token, staleAfterMinutes: 15, force: false})
    await finishDay(db, {day: DAY, token, status: 'SUCCESS', eventsCount: 1, errorMessage: null})
    expect((await findDay(db, DAY))!.error_message).to.equal(null)

    await claimDay(db, {day: '2025-07-08', token: randomUUID(), staleAfterMinutes: 15, force: false})
    await backdateHeartbeat(db, '2025-07-08', 16 * 60)
    await cleanupStale(db, 15)
    const reason = (await findDay(db, '2025-07-08'))!.error_message!
    expect(reason).to.match(/^run stopped: no heartbeat since \d{4}-/)
    expect(CONTROL.test(reason)).to.equal(false)
  })
})
