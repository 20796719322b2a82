import { ConnectionView, LifecycleEventType, snapshotToRecord, toConnectionView } from '@app/connections';
import type { LifecycleEvent } from './webhook-delivery.repository';

/** The JSON body of a lifecycle event (DESIGN, "Lifecycle events (webhooks)"). */
export interface WebhookPayload {
  type: LifecycleEventType;
  /** When the change happened (ISO 8601). */
  timestamp: string;
  data: ConnectionEventData | { provider: string };
}

export interface ConnectionEventData {
  account: string;
  provider: string;
  /** The connection's status after the change, as the admin API shows it. */
  status: ConnectionView['status'];
  /** The error code, the auth mode connected with, `refreshed`, or the admin action that revoked. */
  reason: string | null;
  connection: ConnectionView;
}

/**
 * The body sent for `event`, the same bytes on every attempt (built from the recorded event
 * only). The connection is the admin view of its snapshot: never a token, key or secret.
 */
export function webhookBody(event: LifecycleEvent): string {
  const payload: WebhookPayload = {
    type: event.type,
    timestamp: event.occurredAt.toISOString(),
    data: event.connection === null ? { provider: event.provider } : connectionData(event, event.connection),
  };
  return JSON.stringify(payload);
}

function connectionData(event: LifecycleEvent, snapshot: Record<string, unknown>): ConnectionEventData {
  const connection = toConnectionView(snapshotToRecord(snapshot), event.occurredAt.getTime());
  return { account: connection.account, provider: connection.provider, status: connection.status, reason: event.reason, connection };
}
