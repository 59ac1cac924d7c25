import type {AuditEvent} from '../heroku/types.js'

export const OUTPUT_FORMATS = ['text', 'json'] as const
export type OutputFormat = (typeof OUTPUT_FORMATS)[number]

/** A value for a key=value line: bare when it is one plain word, JSON-quoted otherwise. */
function textValue(value: unknown): string {
  const text = value === undefined || value === null ? '' : String(value)
  return /^[^\s"=]+$/.test(text) ? text : JSON.stringify(text)
}

/**
 * One event as one line (with its newline). Text is in the old tool's spirit, grep- and
 * logfmt-friendly; json is the API's own fields, one object per line, for a drain or a SIEM.
 */
export function formatEvent(event: AuditEvent, format: OutputFormat): string {
  if (format === 'json') return `${JSON.stringify(event)}\n`
  const fields: Array<[string, unknown]> = [
    ['created_at', event.created_at],
    ['actor.email', event.actor?.email],
    ['type', event.type],
    ['action', event.action],
  ]
  if (event.app?.name) fields.push(['app.name', event.app.name])
  fields.push(['id', event.id])
  return `${fields.map(([key, value]) => `${key}=${textValue(value)}`).join(' ')}\n`
}
