/** What heroku/cli and oclif users expect of a command line: help forms, typo suggestions, hints. No database needed. */
import {existsSync, readFileSync} from 'node:fs'
import {type AddressInfo, type Server, createServer} from 'node:net'
import {join} from 'node:path'
import {TLSSocket} from 'node:tls'

import {expect} from 'chai'

import {oneLineParseError} from '../../src/lib/errors.js'
import {closestName, editDistance} from '../../src/lib/suggest.js'
import {cliEnv, runCli} from '../support/cli.js'
import {describeWithServer, runTempDir} from '../support/db.js'

const env = cliEnv({})

describe('command-line conventions', () => {
  describe('help, however it is asked for', () => {
    it('-h at the root lists the commands, as --help does', async () => {
      const [short, long] = await Promise.all([runCli(['-h'], env), runCli(['--help'], env)])
      expect(short.code, short.stderr).to.equal(0)
      expect(short.stdout).to.include('COMMANDS').and.include('process').and.include('db status')
      expect(short.stdout).to.equal(long.stdout)
    })

    it('process -h, help process and process --help show the same page', async () => {
      const results = await Promise.all([['process', '-h'], ['help', 'process'], ['process', '--help']].map((args) => runCli(args, env)))
      for (const result of results) {
        expect(result.code, result.stderr).to.equal(0)
        expect(result.stdout).to.include('USAGE').and.include('$ audit-logger process').and.include('--date')
      }

      expect(results[0].stdout).to.equal(results[2].stdout)
      expect(results[1].stdout).to.equal(results[2].stdout)
    })

    it('help db status names a command in a topic; help alone is the root help', async () => {
      const topic = await runCli(['help', 'db', 'status'], env)
      expect(topic.code, topic.stderr).to.equal(0)
      expect(topic.stdout).to.include('$ audit-logger db status')
      const root = await runCli(['help'], env)
      expect(root.code, root.stderr).to.equal(0)
      expect(root.stdout).to.include('COMMANDS').and.include('EXIT CODES')
    })
  })

  describe('the help pages themselves', () => {
    it('process: --from and --to go together in USAGE, --days says its bounds, the summary is not repeated', async () => {
      const {code, stdout} = await runCli(['process', '--help'], env)
      expect(code).to.equal(0)
      const usage = stdout.slice(stdout.indexOf('USAGE'), stdout.indexOf('FLAGS')).replaceAll(/\s+/g, ' ')
      expect(usage).to.include('--date YYYY-MM-DD | --from YYYY-MM-DD --to YYYY-MM-DD | --catch-up [--days N]')
      expect(stdout).to.not.include('<value> ]')
      expect(stdout).to.match(/--days=N\s+with --catch-up: how many days to look back, yesterday\s+included, 1–90/)
      const summary = stdout.split('\n')[0]
      const description = stdout.slice(stdout.indexOf('DESCRIPTION'))
      expect(description.split('\n')[1].trim()).to.not.equal(summary.trim())
      expect(description).to.include('Claims each day')
      // The settings that change what a run keeps and writes are named on its page.
      for (const setting of ['EVENT_STORE', 'EVENT_RETENTION_DAYS', 'SINK_URL', 'LOG_LINES_PER_SECOND', 'SETTLE_HOURS', 'CATCH_UP_ARCHIVES']) {
        expect(description.replaceAll(/\s+/g, ' '), setting).to.include(setting)
      }
    })

    it('db status: the example of --limit 30 says it shows records, not days', async () => {
      const {stdout} = await runCli(['db', 'status', '--help'], env)
      expect(stdout).to.include('The 30 latest records as JSON')
      expect(stdout).to.not.include('The last 30 days as JSON')
    })
  })

  describe('a mistyped command', () => {
    it('suggests the nearest one, in one line, exit 2', async () => {
      for (const [typed, nearest] of [
        [['proces'], 'process'],
        [['prcoess'], 'process'],
        [['db', 'stat'], 'db status'],
        [['evnets'], 'events'],
      ] as const) {
        const result = await runCli([...typed], env)
        expect(result.code, typed.join(' ')).to.equal(2)
        expect(result.stdout).to.equal('')
        expect(result.stderr.trimEnd().split('\n'), result.stderr).to.have.length(1)
        expect(result.stderr).to.include(`did you mean \`audit-logger ${nearest}\`?`)
      }
    })

    it('suggests nothing for a word near no command, and says where the list is', async () => {
      const result = await runCli(['xyzzy'], env)
      expect(result.code).to.equal(2)
      expect(result.stderr).to.equal('Error: audit-logger has no command "xyzzy" — `audit-logger --help` lists them\n')
      // What was typed is quoted, never acted on by the terminal.
      const hostile = await runCli(['\u001B]0;owned\u0007'], env)
      expect(hostile.code).to.equal(2)
      expect([...hostile.stderr].filter((c) => c !== '\n' && c.charCodeAt(0) < 0x20)).to.deep.equal([])
      expect(hostile.stderr).to.include('has no command')
    })
  })

  it('bad input needs no database: a missing token or an impossible day is one line, exit 2, and nothing is created', async () => {
    const dataDir = join(runTempDir(), `never-made-${process.pid}`)
    const offline = cliEnv({HEROKU_ACCOUNT_ID: 'acme', AUDIT_LOGGER_DATA_DIR: dataDir})
    const token = await runCli(['process', '--date', '2025-09-28'], offline)
    expect(token.code).to.equal(2)
    expect(token.stderr).to.match(/^Error: HEROKU_API_TOKEN is not set — [^\n]+\n$/)
    for (const day of ['2025-02-30', '2025-13-01', 'yesterday', '0000-01-01']) {
      const result = await runCli(['process', '--date', day], {...offline, HEROKU_API_TOKEN: 'HRKU-unused-token-00000000000000000000000000'})
      expect(result.code, day).to.equal(2)
      expect(result.stderr, day).to.match(/^Error: date [^\n]+ — [^\n]+\n$/)
    }

    expect(existsSync(dataDir), 'no embedded database made').to.equal(false)
  })

  it('process 2025-09-28 points to --date, in one line, exit 2', async () => {
    const result = await runCli(['process', '2025-09-28'], env)
    expect(result.code).to.equal(2)
    expect(result.stderr).to.equal('Error: unexpected argument 2025-09-28: a day is given as --date 2025-09-28 (or a range as --from and --to)\n')
  })

  it('says a conflict between two flags once, in one line; --catch-up --force says what to run instead', async () => {
    const both = await runCli(['process', '--date', '2025-09-28', '--catch-up'], env)
    expect(both.code).to.equal(2)
    expect(both.stderr).to.equal('Error: --date and --catch-up cannot be used together — see --help\n')
    const force = await runCli(['process', '--catch-up', '--force'], env)
    expect(force.code).to.equal(2)
    expect(force.stderr.trimEnd().split('\n')).to.have.length(1)
    expect(force.stderr).to.include('--from A --to B --force')
  })

  it('oneLineParseError keeps other errors, and each conflicting pair once', () => {
    const message = [
      'The following errors occurred:',
      '  --catch-up=true cannot also be provided when using --date',
      '  --date=2025-09-28 cannot also be provided when using --catch-up',
      '  --limit must be at least 1',
      'See more help with --help',
    ].join('\n')
    expect(oneLineParseError(message)).to.equal('--date and --catch-up cannot be used together; --limit must be at least 1 — see --help')
  })

  describe('closestName', () => {
    it('counts insertions, deletions, substitutions and swaps', () => {
      expect(editDistance('process', 'process')).to.equal(0)
      expect(editDistance('proces', 'process')).to.equal(1)
      expect(editDistance('prcoess', 'process')).to.equal(1)
      expect(editDistance('serv', 'serve')).to.equal(1)
      expect(editDistance('', 'abc')).to.equal(3)
    })

    it('takes a typo or a prefix, never a distant word', () => {
      const known = ['process', 'serve', 'events', 'events show', 'db init', 'db status', 'db cleanup', 'db reset', 'db prune']
      expect(closestName('proces', known)).to.equal('process')
      expect(closestName('db stat', known)).to.equal('db status')
      expect(closestName('EVENTS', known)).to.equal('events')
      expect(closestName('db', known)).to.equal(undefined)
      expect(closestName('x', known)).to.equal(undefined)
      expect(closestName('delete', known)).to.equal(undefined)
      expect(closestName('', known)).to.equal(undefined)
    })
  })
})

describeWithServer('hints about the database connection', () => {
  it('a server without TLS asked for TLS: says how to turn TLS off, not to check that it runs', async () => {
    const url = new URL(process.env.TEST_DATABASE_URL!)
    url.searchParams.set('sslmode', 'require')
    const result = await runCli(['db', 'status'], cliEnv({DATABASE_URL: url.toString()}))
    expect(result.code).to.equal(2)
    const errors = result.stderr.split('\n').filter((line) => line.startsWith('Error'))
    expect(errors).to.have.length(1)
    expect(errors[0]).to.include('does not support SSL').and.include('DATABASE_SSL=disable').and.include('sslmode=disable')
    expect(errors[0]).to.not.include('is running')
  })
}, 'asks a live PostgreSQL server without TLS for TLS (sslmode=require)')

describe('hints about the database connection, against a loopback TLS server', () => {
  // A server that speaks just enough of PostgreSQL's start to offer TLS, with a self-signed
  // certificate (test/fixtures/tls: made for this test alone, valid for a century).
  let server: Server
  let port: number

  before(async () => {
    const fixtures = new URL('../fixtures/tls/', import.meta.url)
    const key = readFileSync(new URL('key.pem', fixtures))
    const cert = readFileSync(new URL('cert.pem', fixtures))
    server = createServer((socket) => {
      socket.on('error', () => {})
      // The client's SSLRequest: 'S', TLS is on offer.
      socket.once('data', () => {
        socket.write('S')
        new TLSSocket(socket, {isServer: true, key, cert}).on('error', () => {})
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  })

  after(() => new Promise((resolve) => server.close(resolve)))

  it('a certificate that cannot be verified: says how to keep TLS without checking it, not to check that the server runs', async () => {
    const result = await runCli(['db', 'status'], cliEnv({DATABASE_URL: `postgres://ops:s3cret-pw@127.0.0.1:${port}/audit?sslmode=verify-full`}))
    expect(result.code).to.equal(2)
    const errors = result.stderr.split('\n').filter((line) => line.startsWith('Error'))
    expect(errors).to.have.length(1)
    expect(errors[0]).to.include("the server's certificate could not be verified").and.include('DATABASE_SSL=no-verify')
    expect(errors[0]).to.not.include('is running')
    expect(result.stderr + result.stdout).to.not.include('s3cret-pw')
  })
})
