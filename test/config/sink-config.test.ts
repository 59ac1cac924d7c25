/** SINK_* variables: what a sink needs, and the one-line errors when they are wrong. */
import {expect} from 'chai'

import {loadConfig} from '../../src/lib/config.js'
import {clearSecrets, redact} from '../../src/lib/secrets.js'
import {usageErrorOf} from '../support/helpers.js'

const base = {DATABASE_URL: 'postgres://u@127.0.0.1/db'}

describe('sink configuration', () => {
  afterEach(() => clearSecrets())

  it('has no sink without SINK_URL; defaults to ndjson with bounded batches', () => {
    expect(loadConfig(base).sink).to.equal(undefined)
    const {sink} = loadConfig({...base, SINK_URL: 'https://intake.example.com/bulk'})
    expect(sink).to.include({format: 'ndjson', target: 'ndjson https://intake.example.com', batchEvents: 1000, batchBytes: 1_000_000, timeoutMs: 30_000, maxAttempts: 5})
    expect(sink?.token).to.equal(undefined)
  })

  it('reads the Splunk set-up and the bounds', () => {
    const {sink} = loadConfig({
      ...base,
      SINK_URL: 'https://splunk.example.com:8088/services/collector/event',
      SINK_FORMAT: 'Splunk-HEC',
      SINK_TOKEN: 'abcd-1234-hec',
      SINK_BATCH_EVENTS: '200',
      SINK_BATCH_BYTES: '500000',
      SINK_TIMEOUT: '10',
      SINK_MAX_ATTEMPTS: '3',
    })
    expect(sink).to.include({format: 'splunk-hec', token: 'abcd-1234-hec', target: 'splunk-hec https://splunk.example.com:8088', batchEvents: 200, batchBytes: 500_000, timeoutMs: 10_000, maxAttempts: 3})
  })

  it('refuses what cannot work, in one line naming the variable', () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{SINK_URL: 'not a url'}, /^SINK_URL is not a valid URL$/],
      [{SINK_URL: 'ftp://intake.example.com/x'}, /^SINK_URL must be an http\(s\) URL/],
      [{SINK_URL: 'https://user:pw@intake.example.com/x'}, /^SINK_URL must not hold a user name or password/],
      [{SINK_URL: 'https://intake.example.com/x', SINK_FORMAT: 'syslog'}, /^SINK_FORMAT must be ndjson or splunk-hec \(got "syslog"\)$/],
      [{SINK_URL: 'https://intake.example.com/x', SINK_FORMAT: 'splunk-hec'}, /^SINK_FORMAT=splunk-hec needs SINK_TOKEN$/],
      [{SINK_TOKEN: 'orphan-token'}, /^SINK_TOKEN is set but SINK_URL is not$/],
      [{SINK_URL: 'https://intake.example.com/x', EVENT_STORE: 'off'}, /^SINK_URL is set but the event store is off/],
      [{SINK_URL: 'https://intake.example.com/x', SINK_BATCH_EVENTS: '0'}, /^SINK_BATCH_EVENTS "0" is not a whole number from 1 to 10000$/],
      [{SINK_URL: 'https://intake.example.com/x', SINK_BATCH_BYTES: '12'}, /^SINK_BATCH_BYTES "12" is not a whole number/],
      [{SINK_URL: 'https://intake.example.com/x', SINK_MAX_ATTEMPTS: '99'}, /^SINK_MAX_ATTEMPTS "99" is not a whole number from 1 to 20$/],
    ]
    for (const [env, message] of cases) {
      const error = usageErrorOf(() => loadConfig({...base, ...env}))
      expect(error.message, JSON.stringify(env)).to.match(message)
      expect(error.message).not.to.include('\n')
    }
  })

  it('hides the token and the URL’s path and query, which may be the credential (Sumo Logic-style URLs)', () => {
    loadConfig({...base, SINK_URL: 'https://collectors.example.com/receiver/v1/http/ZaVnC4dhaV3x?key=q%2Fs3cr3t', SINK_TOKEN: 'tok%/&?=+en'})
    const text = redact('posting to https://collectors.example.com/receiver/v1/http/ZaVnC4dhaV3x?key=q%2Fs3cr3t with tok%/&?=+en and tok%25%2F%26%3F%3D%2Ben and q/s3cr3t')
    expect(text).not.to.include('ZaVnC4dhaV3x')
    expect(text).not.to.include('tok%/&?=+en')
    expect(text).not.to.include('tok%25%2F')
    expect(text).not.to.include('q/s3cr3t')
    // An intake that echoes only the path's token, not the whole path.
    expect(redact('collector ZaVnC4dhaV3x is unknown')).to.equal('collector [redacted] is unknown')
  })
})
