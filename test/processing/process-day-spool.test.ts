/**
 * The day job with its spool: the day's lines wait off the JS heap (memory, then an unlinked
 * temporary file) and reach the output whole and in order, only after the fence; a spool that
 * cannot be written fails the day (ERROR) and writes nothing.
 */
import {expect} from 'chai'
import type {Kysely} from 'kysely'

import {findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {createAuditClient} from '../../src/lib/heroku/client.js'
import type {AuditEvent} from '../../src/lib/heroku/types.js'
import {formatEvent} from '../../src/lib/output/format-event.js'
import {type Spool, openMemorySpool, openSpool} from '../../src/lib/output/spool.js'
import {type ProcessDayDeps, type ProcessDayOptions, processDay} from '../../src/lib/processing/process-day.js'
import {CaptureStream, captureLogger} from '../support/capture.js'
import {clearLog, describeOnEngines} from '../support/db.js'
import {generateEvents} from '../fake-heroku/events.js'
import {type FakeHeroku, startFakeHeroku} from '../fake-heroku/server.js'

const DAY = '2025-08-08'
const events = generateEvents(DAY, 2500)

describeOnEngines('processDay and its spool', (engine) => {
  let fake: FakeHeroku
  let db: Kysely<Database>

  before(async () => {
    fake = await startFakeHeroku({events: {[DAY]: events}})
    db = await engine.open()
  })

  after(async () => {
    await db.destroy()
    await fake.close()
  })

  beforeEach(async () => {
    fake.reset()
    await clearLog(db)
  })

  function run(openSpoolFor: () => Promise<Spool>, options: Partial<ProcessDayOptions> = {}) {
    const output = new CaptureStream()
    const deps: ProcessDayDeps = {
      db,
      client: createAuditClient({apiUrl: fake.url, token: fake.token, accountId: 'acme', maxAttempts: 1}),
      output,
      logger: captureLogger(),
      openSpool: openSpoolFor,
    }
    const done = processDay(deps, {day: DAY, format: 'json', force: false, staleAfterMinutes: 15, heartbeatIntervalMs: 1000, ...options})
    return {output, done}
  }

  for (const format of ['json', 'text'] as const) {
    it(`${format}: a day past the spool's memory limit goes through a temporary file and comes out whole, in order`, async () => {
      let spool: Spool | undefined
      // A 64 KB limit: the first page already moves the spool to a file.
      const {output, done} = run(async () => (spool = await openSpool(undefined, undefined, 64 << 10)), {format})
      const result = await done
      expect(result).to.include({outcome: 'success', events: 2500, pages: 3})
      expect(spool?.kind).to.equal('file')
      expect(output.text).to.equal(events.map((e) => formatEvent(e as unknown as AuditEvent, format)).join(''))
    })
  }

  it('writes nothing and records ERROR when the spool cannot be written (a full disk)', async () => {
    const {output, done} = run(async () => ({...openMemorySpool(), write: async () => Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), {code: 'ENOSPC'}))}))
    const result = await done
    expect(result.outcome).to.equal('error')
    expect(result.message).to.match(/ENOSPC/)
    expect(output.text).to.equal('')
    expect(await findDay(db, DAY)).to.include({status: 'ERROR', events_count: 0})
  })

  it('closes the spool whatever the outcome', async () => {
    const closed: string[] = []
    const tracked = (label: string) => async (): Promise<Spool> => {
      const spool = openMemorySpool()
      return {...spool, close: async () => void closed.push(label)}
    }

    await run(tracked('success')).done
    fake.script([{kind: 'status', status: 401}], {day: DAY})
    await run(tracked('failed'), {force: true}).done
    expect(closed).to.deep.equal(['success', 'failed'])
  })
})
