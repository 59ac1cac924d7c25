/**
 * Passwords in URLs are never printed, however a URL parser splits them, and credentials in
 * HEROKU_API_URL are refused before anything is claimed. Real processes for what a user sees.
 */
import {expect} from 'chai'
import type {Kysely} from 'kysely'

import {describeDatabase} from '../../src/lib/db/connection.js'
import type {Database} from '../../src/lib/db/schema.js'
import {redact, registerUrlPassword} from '../../src/lib/secrets.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {cliEnv, runCli} from '../support/cli.js'
import {describeOnEngines, snapshot} from '../support/db.js'
import {useJobSuite} from '../support/job-suite.js'

const DAY = '2025-08-08'
const TOKEN = 'HRKU-url-secrets-0000000000000000'

/**
 * DATABASE_URLs whose password holds a character that ends the user:password part for every URL
 * parser (/ ? #), or an @, unencoded; with the password as the person meant it. The hosts are
 * .invalid, so connecting fails at once; the last one's mis-split host is this machine's server,
 * which then quotes the "database name" (the password's tail) in its error.
 */
const MIS_SPLIT: Array<{url: string; password: string; env?: Record<string, string>}> = [
  {url: 'postgres://admin:/xK9mQ2pL7vR@db.example.invalid:5432/prod', password: '/xK9mQ2pL7vR'},
  {url: 'postgres://admin:12/Ab9xK2mQ7@db.example.invalid:5432/prod', password: '12/Ab9xK2mQ7'},
  {url: 'postgres://admin:5678#Cd4yL8nR3@db.example.invalid:5432/prod', password: '5678#Cd4yL8nR3'},
  {url: 'postgres://admin:9012?Ef6zM1pS5@db.example.invalid:5432/prod', password: '9012?Ef6zM1pS5'},
  {url: 'postgres://admin:Qz7@wP4kR9x@db.example.invalid:5432/prod', password: 'Qz7@wP4kR9x'},
  {url: 'postgres://admin:ab/Jk2vB7cW4@db.example.invalid:5432/prod', password: 'ab/Jk2vB7cW4'},
  {url: 'postgres://127.0.0.1:/Gh3wN5qT8@db.example.invalid:5432/prod', password: '/Gh3wN5qT8', env: {PGUSER: 'postgres'}},
]

/** The password and each of its pieces a parser could cut out and quote (4 characters or more). */
function piecesOf(password: string): string[] {
  return [password, ...password.split(/[/?#@:]/).filter((piece) => piece.length >= 4)]
}

describe('passwords in URLs', () => {
  it('describeDatabase never shows a user or any piece of a mis-split password', () => {
    for (const {url, password} of MIS_SPLIT) {
      const described = describeDatabase({url, ssl: 'auto'})
      expect(described, url).to.equal('db.example.invalid:5432/prod')
      for (const piece of piecesOf(password)) expect(described, url).not.to.include(piece)
      expect(described).not.to.match(/admin/)
    }

    // Well-formed URLs read as before.
    expect(describeDatabase({url: 'postgres://u:p%2Fw@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d8f0abc', ssl: 'auto'})).to.equal('ec2-1-2-3-4.compute-1.amazonaws.com:5432/d8f0abc')
    expect(describeDatabase({url: 'postgres://u@%2Fvar%2Frun%2Fpostgresql/audit', ssl: 'auto'})).to.equal('/var/run/postgresql/audit')
    expect(describeDatabase({url: 'postgres:///audit?host=/tmp', ssl: 'auto'})).to.equal('/tmp/audit')
  })

  it('registerUrlPassword masks the password as meant, and every piece a parser may quote', () => {
    registerUrlPassword('postgres://admin:/Reg1sterMe9@db.example.invalid/prod')
    expect(redact('database "Reg1sterMe9@db.example.invalid/prod" does not exist')).to.equal('database "[redacted]@db.example.invalid/prod" does not exist')
    expect(redact('at admin/Reg1sterMe9@db')).to.equal('at admin[redacted]@db')
    registerUrlPassword('postgres://admin:En%2Fc0ded99@db.example.invalid/prod')
    expect(redact('password En/c0ded99 and En%2Fc0ded99')).to.equal('password [redacted] and [redacted]')
  })

  it('redact leaves the hint’s own example alone, and masks real passwords in any URL', () => {
    const hint = 'use the form postgres://user:password@host:5432/database'
    expect(redact(hint)).to.equal(hint)
    expect(redact('postgres://user:<password>@host/db')).to.equal('postgres://user:<password>@host/db')
    expect(redact('at postgres://ann:Hunter2Pw@db.example.com/x and')).to.equal('at postgres://ann:[redacted]@db.example.com/x and')
    // Unencoded @, / and # in a password: masked whole, up to the last @ of the URL.
    expect(redact('x postgres://ann:p@ss/w#rd99@db.example.com/x y')).to.equal('x postgres://ann:[redacted]@db.example.com/x y')
  })

  it('redact costs linear time on text made to be costly (it was quadratic)', function () {
    this.timeout(60_000)
    const started = Date.now()
    redact('a-'.repeat(150_000))
    redact('a://:'.repeat(60_000))
    expect(Date.now() - started, 'a generous bound: the old pattern took tens of seconds here').to.be.below(10_000)
  })

  for (const {url, password, env} of MIS_SPLIT) {
    for (const args of [['db', 'status'], ['process', '--date', DAY]]) {
      it(`${args.join(' ')} with ${url}: one line, exit 2, no piece of the password anywhere`, async function () {
        this.timeout(30_000)
        const result = await runCli(args, cliEnv({DATABASE_URL: url, HEROKU_API_TOKEN: TOKEN, HEROKU_ACCOUNT_ID: 'acme', ...env}))
        expect(result.code, result.stderr).to.equal(2)
        expect(result.stdout).to.equal('')
        expect(result.stderr.trimEnd().split('\n'), result.stderr).to.have.length(1)
        for (const piece of piecesOf(password)) {
          expect(result.stderr, `"${piece}" printed`).not.to.include(piece)
        }
      })
    }
  }

  it('a DATABASE_URL that is not a URL keeps its hint’s example whole', async () => {
    const result = await runCli(['db', 'status'], cliEnv({DATABASE_URL: 'postgres://user:ab cd@host:port/x'}))
    expect(result.code).to.equal(2)
    expect(result.stderr).to.include('use the form postgres://user:password@host:5432/database')
    expect(result.stderr).not.to.include('ab cd')
  })
})

describeOnEngines('HEROKU_API_URL with credentials', function (engine) {
  this.timeout(60_000)
  let fake: FakeHeroku
  let db: Kysely<Database>
  let env: NodeJS.ProcessEnv

  useJobSuite((suite) => ({fake, db, env} = suite), {engine: engine.name})

  for (const userinfo of ['user:Api-Url-Pw-5521', 'user:ab/Api-Url-Pw-5521', 'Api-Url-Pw-5521']) {
    it(`is refused before anything is claimed: http://${userinfo}@host`, async () => {
      const apiUrl = new URL(fake.url)
      const result = await runCli(['process', '--date', DAY], {...env, HEROKU_API_URL: `http://${userinfo}@${apiUrl.host}`})
      expect(result.code, result.stderr).to.equal(2)
      expect(result.stderr.trimEnd().split('\n'), result.stderr).to.have.length(1)
      expect(result.stderr).to.match(/^Error: HEROKU_API_URL must not hold a user name or password/)
      expect(result.stderr + result.stdout).not.to.include('Api-Url-Pw-5521')
      expect(await snapshot(db), 'no row written').to.deep.equal([])
      expect(fake.requests, 'no request sent').to.have.length(0)
    })
  }
})
