import type { LifecycleEventType } from '@app/connections';

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';
export const DELIVERY_STATUSES: ReadonlyArray<DeliveryStatus> = ['pending', 'delivered', 'failed'];

/** A lifecycle event as it was recorded, with what its payload is built from. */
export interface LifecycleEvent {
  /** The `webhook-id`: the same on every attempt and endpoint. */
  id: string;
  type: LifecycleEventType;
  occurredAt: Date;
  account: string | null;
  provider: string;
  reason: string | null;
  /** The connection's non-secret columns at the change (SNAPSHOT_FIELDS); null for provider events. */
  connection: Record<string, unknown> | null;
}

/** A delivery this replica claimed: its lease is held until the attempt's result is written. */
export interface ClaimedDelivery {
  id: string;
  endpoint: string;
  /** Attempts made, this one included. */
  attempt: number;
  event: LifecycleEvent;
}

/** A delivery as GET /admin/webhook-deliveries shows it. */
export interface DeliveryView {
  id: string;
  webhookId: string;
  type: LifecycleEventType;
  account: string | null;
  provider: string;
  endpoint: string;
  status: DeliveryStatus;
  attempts: number;
  occurredAt: string;
  lastAttemptAt: string | null;
  nextAttemptAt: string | null;
  deliveredAt: string | null;
  /** The last answer's HTTP status; null when there was none (timeout, refused connection). */
  lastStatus: number | null;
  lastError: string | null;
}

export interface DeliveryFilter {
  status?: DeliveryStatus;
  type?: LifecycleEventType;
  account?: string;
  /** Deliveries older than this id (the page cursor). */
  before?: string;
}

/** What an attempt came to, written under the claim's lease. */
export type AttemptResult =
  | { kind: 'delivered'; status: number }
  | { kind: 'retry'; status: number | null; error: string; /** From now, on the database's clock (the one claims compare with). */ delayMs: number }
  | { kind: 'given_up'; status: number | null; error: string };

/**
 * Webhook deliveries (the `webhook_deliveries` table): one per lifecycle event and endpoint.
 * Claims take a lease (`FOR UPDATE SKIP LOCKED`, so replicas never take the same row) and respect
 * per-stream order: a delivery is claimable only when no earlier delivery of its connection (or
 * provider) to its endpoint is still pending. The abstract class is the DI token;
 * PostgresWebhookDeliveryRepository implements it.
 */
export abstract class WebhookDeliveryRepository {
  /**
   * Turns recorded events nobody has dispatched yet into one pending delivery per endpoint, up to
   * `limit` events, in event order. One replica at a time, so a later event of a stream never gets
   * its delivery before an earlier one: a try-lock (pg_try_advisory_xact_lock), so a replica that
   * does not get the turn returns 0 at once and leaves the events to the holder. The lock is taken
   * after the statement's snapshot, so a new holder may pick events the last one just dispatched;
   * ON CONFLICT (event_id, endpoint) makes that harmless. Returns how many events it dispatched.
   */
  abstract dispatchNew(endpoints: ReadonlyArray<string>, limit: number): Promise<number>;

  /** Claims up to `limit` due deliveries for `owner`, leased for `leaseMs`; counts the attempt. */
  abstract claimDue(owner: string, leaseMs: number, limit: number): Promise<ClaimedDelivery[]>;

  /** Writes an attempt's result if `owner` still holds the lease; false when it lapsed to another replica. */
  abstract complete(id: string, owner: string, result: AttemptResult): Promise<boolean>;

  /** Newest first. */
  abstract list(filter: DeliveryFilter, limit: number): Promise<DeliveryView[]>;

  /**
   * A failed (given up) delivery goes back to pending, due now, queued anew (the backlog age starts
   * again) with a fresh attempt budget. It arrives after the later events of its connection that
   * were delivered meanwhile.
   * Returns it, or its current status when it is not failed, or null when there is none.
   */
  abstract retry(id: string): Promise<{ retried: DeliveryView } | { status: DeliveryStatus } | null>;

  /**
   * Deletes up to `limit` events recorded before `before` whose deliveries are all delivered or
   * given up (with those deliveries). Returns how many events went.
   */
  abstract pruneBefore(before: Date, limit: number): Promise<number>;

  /** Pending deliveries, and how long the oldest has waited since it was queued, for the metrics. */
  abstract pendingSummary(): Promise<{ pending: number; oldestAgeSeconds: number }>;
}
