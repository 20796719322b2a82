import { urlForDisplay } from '@app/common';
import type { AuditEvent } from '@app/observability';

/** What the webhook deliverer knows of a delivery it stops retrying. */
export interface GivenUpDelivery {
  /** The delivery (GET /admin/webhook-deliveries, POST .../:id/retry). */
  readonly deliveryId: string;
  /** The `webhook-id` the receiver saw on every attempt. */
  readonly webhookId: string;
  /** The event type, e.g. `connection.revoked`. */
  readonly type: string;
  readonly endpoint: string;
  readonly account: string | null;
  readonly provider: string | null;
  readonly attempts: number;
  /** The HTTP status of the last answer; null when none came (timeout, refused connection). */
  readonly lastStatus: number | null;
}

/**
 * The audit record of a webhook delivery given up after its last retry (DESIGN: `webhook.given_up`,
 * actor `system`, outcome the last answer's status). The hook for the webhook deliverer: it
 * records `auditLog.record(webhookGivenUp(delivery))`. The endpoint is kept by its origin only:
 * the rest of a webhook URL may carry the receiver's secret.
 */
export function webhookGivenUp(delivery: GivenUpDelivery): AuditEvent {
  return {
    action: 'webhook.given_up',
    actor: 'system',
    actorKind: 'system',
    account: delivery.account,
    provider: delivery.provider,
    outcome: delivery.lastStatus === null ? 'no_answer' : String(delivery.lastStatus),
    detail: { deliveryId: delivery.deliveryId, webhookId: delivery.webhookId, type: delivery.type, endpoint: urlForDisplay(delivery.endpoint), attempts: delivery.attempts },
  };
}
