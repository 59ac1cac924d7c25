/**
 * One audit-trail event as the API returns it. Only id, type, action and created_at are
 * guaranteed; every other field may be missing or null (non-app events have no app, etc.).
 */
export interface AuditEvent {
  id: string
  type: string
  action: string
  created_at: string
  actor?: {id?: string; email?: string} | null
  app?: {id?: string; name?: string} | null
  owner?: {id?: string; email?: string} | null
  enterprise_account?: {id?: string; name?: string} | null
  team?: {id?: string; name?: string} | null
  request?: {ip_address?: string} | null
  data?: Record<string, unknown> | null
  [field: string]: unknown
}

/** One page of a day's events, with what the response said about paging and the rate limit. */
export interface AuditPage {
  events: AuditEvent[]
  /**
   * The page's JSON text as received (UTF-8 bytes), whose array elements are `events`: JSON lines
   * can be cut from it rather than serialized again (see output/json-elements.ts).
   */
  body?: Uint8Array
  /** 1-based. */
  number: number
  requestId?: string
  rateLimitRemaining?: number
}
