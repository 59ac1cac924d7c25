/**
 * LOG_LINES_PER_SECOND: the spooled day goes out at a pace, in whole lines. The pacer takes its
 * clock as a collaborator: these tests give it one that moves only when slept on, so they assert
 * when each line goes out without waiting and without reading the wall clock.
 */
import {Writable} from 'node:stream'

import {expect} from 'chai'

import {DeliveryStopped, LinePacer, OutputClosed, type PaceClock, deliverDay, pacedSeconds} from '../../src/lib/output/deliver.js'
import {openFileSpool, openMemorySpool} from '../../src/lib/output/spool.js'

/** A clock that stands still until slept on; each sleep moves it on by exactly what was asked. */
class FakeClock implements PaceClock {
  time = 1000
  sleeps: number[] = []
  now(): number {
    return this.time
  }

  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    this.sleeps.push(ms)
    this.time += ms
  }
}

/** Keeps each chunk written with the fake time it was written at. */
class Timed extends Writable {
  writes: Array<{at: number; text: string}> = []
  constructor(private readonly clock: PaceClock) {
    super()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    // (deliverDay's closing empty write, to learn that everything before it was taken, is not a line.)
    if (chunk.length > 0) this.writes.push({at: this.clock.now(), text: chunk.toString('utf8')})
    done()
  }

  get text(): string {
    return this.writes.map((w) => w.text).join('')
  }
}

const lines = (n: number, from = 0) => Array.from({length: n}, (_, k) => `{"n":${from + k},"pad":"${'é'.repeat((from + k) % 7)}"}\n`).join('')

describe('LOG_LINES_PER_SECOND: the pacer', () => {
  it('writes at the pace: at most a tenth of a second\'s lines at a time, each burst when its first line\'s time has come', async () => {
    const clock = new FakeClock()
    const out = new Timed(clock)
    const spool = openMemorySpool()
    // Pages of uneven sizes: the bursts do not follow them.
    for (const [n, from] of [[7, 0], [30, 7], [1, 37], [12, 38]]) await spool.write(Buffer.from(lines(n, from)))
    await deliverDay(spool, out, {linesPerSecond: 100, clock})
    expect(out.text).to.equal(lines(50))
    // 100/s: bursts of at most 10 lines (a page's end ends one early), each written when its
    // first line's time has come: line n at n × 10 ms after the first.
    let first = 0
    for (const write of out.writes) {
      const count = write.text.split('\n').length - 1
      expect(write.text.endsWith('\n'), 'every write ends at a line end').to.equal(true)
      expect(count).to.be.within(1, 10)
      expect(write.at, `the burst from line ${first}`).to.equal(1000 + first * 10)
      first += count
    }

    expect(out.writes.map((w) => w.text.split('\n').length - 1)).to.deep.equal([7, 10, 10, 10, 1, 10, 2])
  })

  it('one line a burst at a slow pace: line n goes out n / pace seconds after the first', async () => {
    const clock = new FakeClock()
    const out = new Timed(clock)
    const spool = openMemorySpool()
    await spool.write(Buffer.from(lines(6)))
    await deliverDay(spool, out, {linesPerSecond: 4, clock})
    expect(out.writes.map((w) => w.at)).to.deep.equal([1000, 1250, 1500, 1750, 2000, 2250])
    expect(out.writes.map((w) => w.text)).to.deep.equal(lines(6).split(/(?<=\n)/))
    expect(clock.sleeps).to.deep.equal([250, 250, 250, 250, 250])
  })

  it('after a stall of the reader it goes on at the pace, without a burst to catch up', async () => {
    const clock = new FakeClock()
    const written: number[] = []
    // The reader takes 3 s over the second line.
    const out = new Writable({
      write(_chunk: Buffer, _encoding, done) {
        written.push(clock.now())
        if (written.length === 2) clock.time += 3000
        done()
      },
    })
    const pacer = new LinePacer(out, {linesPerSecond: 2, clock})
    pacer.end(Buffer.from(lines(5)))
    await new Promise((resolve) => pacer.on('finish', resolve))
    expect(written).to.deep.equal([1000, 1500, 4500, 5000, 5500])
  })

  it('splits chunks only at line ends, from the file spool too', async () => {
    const clock = new FakeClock()
    const out = new Timed(clock)
    const spool = await openFileSpool()
    try {
      for (let page = 0; page < 20; page++) await spool.write(Buffer.from(lines(37, page * 37)))
      await deliverDay(spool, out, {linesPerSecond: 250, clock})
    } finally {
      await spool.close()
    }

    expect(out.text).to.equal(lines(740))
    for (const write of out.writes) expect(write.text.endsWith('\n')).to.equal(true)
    // 740 lines in bursts of 25, every 100 ms: the last burst starts at 2.9 s.
    expect(out.writes.at(-1)?.at).to.equal(1000 + 2900)
    expect(clock.sleeps.reduce((a, b) => a + b, 0)).to.equal(2900)
  })

  it('stops when its signal aborts, saying how many lines went out', async () => {
    const clock = new FakeClock()
    const out = new Timed(clock)
    const stop = new AbortController()
    const spool = openMemorySpool()
    await spool.write(Buffer.from(lines(10)))
    const original = clock.sleep.bind(clock)
    clock.sleep = async (ms, signal) => {
      if (clock.sleeps.length === 2) stop.abort()
      return original(ms, signal)
    }

    const error = await deliverDay(spool, out, {linesPerSecond: 1, clock, signal: stop.signal}).then(() => undefined, (error: unknown) => error)
    expect(error).to.be.instanceOf(DeliveryStopped)
    expect((error as DeliveryStopped).linesWritten).to.equal(3)
    expect(out.text).to.equal(lines(3))
  })

  it('a reader that goes away is OutputClosed, paced or not', async () => {
    const clock = new FakeClock()
    const spool = openMemorySpool()
    await spool.write(Buffer.from(lines(30)))
    const out = new Writable({
      write(_chunk, _encoding, done) {
        done(Object.assign(new Error('write EPIPE'), {code: 'EPIPE'}))
      },
    })
    out.on('error', () => {})
    const error = await deliverDay(spool, out, {linesPerSecond: 10, clock}).then(() => undefined, (error: unknown) => error)
    expect(error).to.be.instanceOf(OutputClosed)
  })

  it('unpaced (0) writes the spool\'s chunks as they are, never sleeping', async () => {
    const clock = new FakeClock()
    const out = new Timed(clock)
    const spool = openMemorySpool()
    await spool.write(Buffer.from(lines(500)))
    await deliverDay(spool, out, {linesPerSecond: 0, clock})
    expect(out.writes).to.have.length(1)
    expect(clock.sleeps).to.deep.equal([])
  })

  it('says how long a day takes at a pace', () => {
    expect(pacedSeconds(100_000, 200)).to.equal(500)
    expect(pacedSeconds(100_000, 0)).to.equal(0)
  })
})
