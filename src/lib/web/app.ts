import {readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import formbody from '@fastify/formbody'
import helmet from '@fastify/helmet'
import view from '@fastify/view'
import Fastify, {type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest} from 'fastify'
import Handlebars from 'handlebars'
import type {Kysely} from 'kysely'

import type {StoreConfig, WebConfig} from '../config.js'
import type {ChangeFeed} from '../db/change-feed.js'
import {isDatabaseUnreachable} from '../db/connection.js'
import type {Database} from '../db/schema.js'
import type {Logger} from '../logger.js'
import {safeErrorMessage} from '../secrets.js'
import {registerApiRoutes} from './api-routes.js'
import {registerEventRoutes} from './event-routes.js'
import {HttpError} from './http-error.js'
import {registerPageRoutes} from './page-routes.js'
import {type ReadCache, createReadCache} from './read-cache.js'
import {checkBasicAuth, createCsrf} from './security.js'
import type {VersionInfo} from './version.js'

export interface AppDeps {
  db: Kysely<Database>
  config: WebConfig
  version: VersionInfo
  logger: Logger
  now?: () => Date
  /** Lets reads be served from memory until the table changes; without it, every read queries. */
  changes?: ChangeFeed
  /** The event store's setting (EVENT_STORE); when off, the events views say so. Default: on. */
  store?: Pick<StoreConfig, 'enabled'>
}

/** What every route gets: the dependencies plus the CSRF helper (absent when read-only). */
export interface RouteContext extends AppDeps {
  now: () => Date
  csrf?: ReturnType<typeof createCsrf>
  reads: ReadCache
}

/** templates/ beside src/ and dist/ alike. */
export const TEMPLATES_DIR = fileURLToPath(new URL('../../../templates', import.meta.url))

const STATIC_FILES: Record<string, string> = {
  'app.css': 'text/css; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
}

/** Handlebars helpers, on an isolated instance so nothing leaks into other users of the module. */
function createHandlebars(): typeof Handlebars {
  const hbs = Handlebars.create()
  hbs.registerHelper('eq', (a: unknown, b: unknown) => a === b)
  hbs.registerHelper('lower', (text: unknown) => String(text ?? '').toLowerCase())
  return hbs
}

const isApi = (request: FastifyRequest) => request.url.startsWith('/api/') || request.url.startsWith('/healthz')

/**
 * Builds the status page's Fastify instance (no listen: `serve` does that, tests inject).
 * Basic auth guards every route but /healthz when credentials are configured; without them the
 * page is read-only and the delete routes answer 403, and the events views (personal data) are
 * served only off a dyno to this machine (see event-routes.ts).
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const context: RouteContext = {
    ...deps,
    now: deps.now ?? (() => new Date()),
    csrf: deps.config.auth ? createCsrf(deps.config.auth) : undefined,
    reads: createReadCache(deps.changes),
  }
  const app = Fastify({
    logger: false,
    trustProxy: true,
    // An event id may be 256 characters, more once URL-encoded; a longer one is the route's own 400, not a 404.
    routerOptions: {maxParamLength: 16 * 1024},
    ajv: {customOptions: {coerceTypes: 'array', removeAdditional: true, allErrors: false}},
  })

  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
        objectSrc: ["'none'"],
      },
    },
    // Plain HTTP locally; Heroku's router terminates TLS and the app cannot know the scheme.
    strictTransportSecurity: false,
  })
  await app.register(formbody, {bodyLimit: 64 * 1024})
  await app.register(view, {
    engine: {handlebars: createHandlebars()},
    root: TEMPLATES_DIR,
    layout: 'layouts/main.hbs',
    production: true,
    options: {
      partials: {
        status: 'partials/status.hbs',
        version: 'partials/version.hbs',
        summary: 'partials/summary.hbs',
        delivery: 'partials/delivery.hbs',
        calendar: 'partials/calendar.hbs',
        months: 'partials/months.hbs',
        'event-filters': 'partials/event-filters.hbs',
      },
    },
  })

  // Every dynamic answer (pages, JSON, health, errors, redirects) is for this moment and this user;
  // the confirmation page even holds a delete token. Nothing may keep it. Static files set their own.
  app.addHook('onSend', async (_request, reply) => {
    if (!reply.hasHeader('cache-control')) reply.header('Cache-Control', 'no-store')
  })

  if (deps.config.auth) {
    const credentials = deps.config.auth
    app.addHook('onRequest', async (request, reply) => {
      if (request.url === '/healthz' || request.url.startsWith('/healthz?')) return
      if (!checkBasicAuth(request.headers.authorization, credentials)) {
        reply.header('WWW-Authenticate', 'Basic realm="audit-logger", charset="UTF-8"')
        throw new HttpError(401, 'Sign in with the status page credentials.')
      }
    })
  }

  for (const [name, type] of Object.entries(STATIC_FILES)) {
    const body = readFileSync(new URL(`static/${name}`, `file://${TEMPLATES_DIR}/`))
    app.get(`/static/${name}`, async (_request, reply) => reply.type(type).header('Cache-Control', 'public, max-age=3600').send(body))
  }

  registerPageRoutes(app, context)
  registerApiRoutes(app, context)
  registerEventRoutes(app, context)

  app.setNotFoundHandler(async (request, reply) => renderError(request, reply, 404, 'There is no such page.'))
  app.setErrorHandler(async (error: FastifyError | HttpError, request, reply) => {
    if (error instanceof HttpError) return renderError(request, reply, error.statusCode, error.message)
    if (error.validation) return renderError(request, reply, 400, `Bad request: ${error.message}.`)
    if (error.statusCode && error.statusCode < 500) return renderError(request, reply, error.statusCode, error.message)
    if (isDatabaseUnreachable(error)) {
      // A failover, a restart or a killed connection: the pool reconnects on the next request.
      deps.logger.warn(`${request.method} ${request.url.split('?')[0]}: the database cannot be reached: ${safeErrorMessage(error)}`)
      reply.header('Retry-After', '5')
      return renderError(request, reply, 503, 'The database cannot be reached right now; try again in a few seconds.')
    }

    deps.logger.error(`${request.method} ${request.url.split('?')[0]} failed: ${safeErrorMessage(error)}`)
    return renderError(request, reply, 500, 'Something went wrong on the server; its log says what.')
  })

  return app
}

async function renderError(request: FastifyRequest, reply: FastifyReply, statusCode: number, message: string) {
  reply.code(statusCode)
  if (isApi(request)) return reply.send({error: message, statusCode})
  return reply.viewAsync('pages/error.hbs', {title: `${statusCode}`, statusCode, message})
}
