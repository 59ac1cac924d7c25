import {expect} from 'chai'

import {dayReportLine} from '../../src/lib/processing/day-report.js'

describe('the line a single-day run ends with', () => {
  const base = {day: '2025-09-28', events: 0, pages: 0, durationMs: 0}

  it('SUCCESS: events, pages (one or many), time, attempt, short digest and the file written', () => {
    expect(dayReportLine({...base, outcome: 'success', events: 1, pages: 1, durationMs: 75, attempt: 1, digest: 'e3b0c44298fc1c149afbf4c8996fb924'})).to.deep.equal({
      level: 'success',
      message: '2025-09-28 SUCCESS: 1 events in 1 page, 75 ms, attempt 1, digest e3b0c44298fc',
    })
    expect(dayReportLine({...base, outcome: 'success', events: 2500, pages: 3, durationMs: 1250, file: '/archive/2025-09-28.ndjson.gz'}).message).to.equal(
      '2025-09-28 SUCCESS: 2500 events in 3 pages, 1.3 s; wrote /archive/2025-09-28.ndjson.gz',
    )
  })

  it('a skipped day says why, at info', () => {
    expect(dayReportLine({...base, outcome: 'busy', message: 'held by a live run'})).to.deep.equal({level: 'info', message: '2025-09-28 skipped: held by a live run'})
    expect(dayReportLine({...base, outcome: 'done', message: 'already SUCCESS'}).level).to.equal('info')
  })

  it('FAILED, ERROR and a lost claim are errors that say what was recorded', () => {
    expect(dayReportLine({...base, outcome: 'failed', durationMs: 2000, attempt: 2, message: 'Heroku API answered 503'})).to.deep.equal({
      level: 'error',
      message: '2025-09-28 FAILED after 2.0 s, attempt 2: Heroku API answered 503',
    })
    expect(dayReportLine({...base, outcome: 'error', message: 'malformed response'}).message).to.equal('2025-09-28 ERROR after 0 ms: malformed response')
    expect(dayReportLine({...base, outcome: 'lost', message: 'another run took the day over'}).message).to.equal('2025-09-28 not recorded after 0 ms: another run took the day over')
  })
})
