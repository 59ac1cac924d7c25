/**
 * Each layer that keeps secrets out of output, tested alone: elsewhere the layers cover for each
 * other, so removing one would leave every other test green. The secrets hold characters that
 * URL-encoding changes (/ + # @ space), and each is fresh, so no other registration hides them.
 */
import {randomBytes} from 'node:crypto'
import {Writable} from 'node:stream'

import {expect} from 'chai'

import {createAuditClient} from '../../src/lib/heroku/client.js'
import {createLogger, safeLogMessage} from '../../src/lib/logger.js'
import {redact, registerSecret, registerUrlPassword} from '../../src/lib/secrets.js'

/** A secret no other test registered: random, with characters encodeURIComponent rewrites. */
function freshSecret(): string {
  return `s3/cr+t#${randomBytes(6).toString('hex')} @x`
}

/** A stream that keeps what is written to it, standing in for stderr. */
function capture(): {stream: NodeJS.WriteStream; text: () => string} {
  let text = ''
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      text += chunk.toString()
      done()
    },
  })
  return {stream: stream as unknown as NodeJS.WriteStream, text: () => text}
}

describe('secret redaction, layer by layer', () => {
  it('registerSecret: the value and its URL-encoded form are both masked', () => {
    const secret = freshSecret()
    const encoded = encodeURIComponent(secret)
    expect(encoded).to.not.equal(secret)
    expect(redact(`before ${secret}`), 'not registered before').to.equal(`before ${secret}`)
    registerSecret(secret)
    const masked = redact(`before ${secret} and ${encoded} after`)
    expect(masked).to.not.include(secret).and.not.include(encoded)
    expect(masked).to.equal('before [redacted] and [redacted] after')
  })

  it('registerUrlPassword: a password written encoded in DATABASE_URL is masked decoded too', () => {
    const password = freshSecret()
    registerUrlPassword(`postgres://app:${encodeURIComponent(password)}@db.example.com:5432/audit`)
    expect(redact(`role "app" said ${password}`)).to.equal('role "app" said [redacted]')
  })

  it('the API client registers its own token, whoever created it', () => {
    const token = `HRKU-${freshSecret()}`
    expect(redact(`Bearer ${token}`), 'not registered before').to.include(token)
    createAuditClient({apiUrl: 'http://127.0.0.1:9/', token, accountId: 'acme'})
    expect(redact(`Bearer ${token}`)).to.equal('Bearer [redacted]')
    expect(redact(`echoed ${encodeURIComponent(token)}`)).to.equal('echoed [redacted]')
  })

  it("the logger's message layer: safeLogMessage masks before folding and cutting", () => {
    const secret = freshSecret()
    registerSecret(secret)
    // Split over lines, a secret folded first would no longer match.
    expect(safeLogMessage([`first line\n${secret}`, new Error(`failed with ${secret}`)])).to.equal('first line [redacted] failed with [redacted]')
  })

  it("the logger's stream layer: whatever reaches its stream is masked, even text that skipped the message layer", () => {
    const secret = freshSecret()
    registerSecret(secret)
    const out = capture()
    const logger = createLogger('info', out.stream)
    logger.info(`token ${secret}`)
    // A write that bypasses the reporters (consola's own output, a future reporter) goes through the stream layer alone.
    logger.options.stderr!.write(`raw ${secret}\n`)
    expect(out.text()).to.not.include(secret)
    expect(out.text()).to.include('token [redacted]').and.include('raw [redacted]')
  })
})
