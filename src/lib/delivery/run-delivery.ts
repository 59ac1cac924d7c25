import type {Kysely} from 'kysely'

import {ALERT_KEYS, raiseAlert} from '../alerts/alerts.js'
import type {AlertsConfig, SinkConfig} from '../config.js'
import type {Database} from '../db/schema.js'
import type {Logger} from '../logger.js'
import {safeErrorMessage} from '../secrets.js'
import {type DeliveryReport, deliverToSink, deliveryLine} from './deliver-events.js'

export interface RunDeliveryDeps {
  db: Kysely<Database>
  logger: Logger
  userAgent: string
  alerts: AlertsConfig
}

/**
 * One run's delivery to SINK_URL's sink, as `process` and `deliver` do it: the backlog sent, one
 * line said about it, a sink that became stopped announced (ALERT_WEBHOOK_URL). Never throws: a
 * database failure is reported as the run's outcome, and the events stay waiting.
 */
export async function runDelivery(deps: RunDeliveryDeps, sink: SinkConfig, options: {retryStopped: boolean; signal?: AbortSignal}): Promise<DeliveryReport | undefined> {
  const {db, logger, alerts} = deps
  try {
    const report = await deliverToSink(
      {
        db,
        logger,
        userAgent: deps.userAgent,
        onStopped: async ({sink: name, target, reason, stoppedAt}, trx) => {
          const text = `sink ${target} refused a batch and is stopped: ${reason}. Nothing more is sent to it until that is fixed and \`audit-logger deliver\` gets through; the events wait in the store.`
          await raiseAlert(trx, {key: ALERT_KEYS.sinkStopped(name, stoppedAt), text}, alerts.webhook)
        },
      },
      {sink, retryStopped: options.retryStopped, signal: options.signal},
    )
    const line = deliveryLine(report)
    logger[line.level](line.message)
    return report
  } catch (error) {
    logger.warn(`sink ${sink.target}: delivery failed (${safeErrorMessage(error)}); the events wait in the store for the next run`)
    return undefined
  }
}
