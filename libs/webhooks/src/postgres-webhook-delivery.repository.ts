import { urlForDisplay } from '@app/common';
import { LifecycleEventType } from '@app/connections';
import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { AttemptResult, ClaimedDelivery, DeliveryFilter, DeliveryStatus, DeliveryView, WebhookDeliveryRepository } from './webhook-delivery.repository';

/** pg_advisory_xact_lock key of the dispatch step ("webh" in ASCII). */
const DISPATCH_LOCK = 0x77656268;

interface DeliveryRow {
  id: string;
  event_id: string;
  type: LifecycleEventType;
  account: string | null;
  provider: string;
  endpoint: string;
  status: DeliveryStatus;
  attempts: number;
  occurred_at: Date;
  last_attempt_at: Date | null;
  next_attempt_at: Date;
  delivered_at: Date | null;
  last_status: number | null;
  last_error: string | null;
}

const VIEW_COLUMNS = `d.id::text AS id, d.event_id, e.type, e.account, e.provider, d.endpoint, d.status, d.attempts, e.occurred_at,
  d.last_attempt_at, d.next_attempt_at, d.delivered_at, d.last_status, d.last_error`;

/** Postgres implementation. Every statement is written out: the claims and fences are the point. */
@Injectable()
export class PostgresWebhookDeliveryRepository extends WebhookDeliveryRepository {
  constructor(private readonly dataSource: DataSource) {
    super();
  }

  async dispatchNew(endpoints: ReadonlyArray<string>, limit: number): Promise<number> {
    // One statement, so one transaction: the advisory lock is held until its end, no longer.
    const [{ dispatched }]: Array<{ dispatched: number }> = await this.dataSource.query(
      `WITH turn AS (SELECT pg_try_advisory_xact_lock($3) AS mine),
       picked AS (
         UPDATE lifecycle_events SET dispatched = true
         WHERE (SELECT mine FROM turn) AND id IN (SELECT id FROM lifecycle_events WHERE NOT dispatched ORDER BY seq LIMIT $2)
         RETURNING id, seq, connection_id, provider),
       queued AS (
         INSERT INTO webhook_deliveries (event_id, endpoint, stream, seq)
         SELECT p.id, target.endpoint, COALESCE(p.connection_id::text, 'provider:' || p.provider), p.seq
         FROM picked p CROSS JOIN unnest($1::text[]) AS target(endpoint)
         ON CONFLICT (event_id, endpoint) DO NOTHING)
       SELECT count(*)::int AS dispatched FROM picked`,
      [endpoints, limit, DISPATCH_LOCK],
    );
    return dispatched;
  }

  async claimDue(owner: string, leaseMs: number, limit: number): Promise<ClaimedDelivery[]> {
    const rows: Array<{ id: string; endpoint: string; attempts: number; event_id: string; type: LifecycleEventType; occurred_at: Date; account: string | null; provider: string; reason: string | null; connection: Record<string, unknown> | null }> =
      await this.dataSource.query(
        `WITH claimed AS (
           UPDATE webhook_deliveries d SET lease_owner = $1, lease_expires_at = clock_timestamp() + $2 * interval '1 millisecond',
             attempts = attempts + 1, last_attempt_at = clock_timestamp()
           WHERE d.id IN (
             SELECT w.id FROM webhook_deliveries w
             WHERE w.status = 'pending' AND w.next_attempt_at <= clock_timestamp()
               AND (w.lease_expires_at IS NULL OR w.lease_expires_at <= clock_timestamp())
               AND NOT EXISTS (
                 SELECT 1 FROM webhook_deliveries earlier
                 WHERE earlier.status = 'pending' AND earlier.endpoint = w.endpoint AND earlier.stream = w.stream AND earlier.seq < w.seq)
             ORDER BY w.seq LIMIT $3 FOR UPDATE SKIP LOCKED)
           RETURNING d.id, d.endpoint, d.attempts, d.event_id)
         SELECT c.id::text AS id, c.endpoint, c.attempts, c.event_id, e.type, e.occurred_at, e.account, e.provider, e.reason, e.connection
         FROM claimed c JOIN lifecycle_events e ON e.id = c.event_id ORDER BY e.seq`,
        [owner, leaseMs, limit],
      );
    return rows.map((row) => ({
      id: row.id,
      endpoint: row.endpoint,
      attempt: row.attempts,
      event: {
        id: row.event_id,
        type: row.type,
        occurredAt: row.occurred_at,
        account: row.account,
        provider: row.provider,
        reason: row.reason,
        connection: row.connection,
      },
    }));
  }

  async complete(id: string, owner: string, result: AttemptResult): Promise<boolean> {
    const [status, delayMs, error] =
      result.kind === 'delivered' ? ['delivered', null, null] : result.kind === 'retry' ? ['pending', result.delayMs, result.error] : ['failed', null, result.error];
    const [, updated] = await this.dataSource.query<[unknown, number]>(
      `UPDATE webhook_deliveries SET status = $3, last_status = $4, last_error = $5,
         next_attempt_at = COALESCE(clock_timestamp() + $6 * interval '1 millisecond', next_attempt_at), delivered_at = CASE WHEN $3 = 'delivered' THEN clock_timestamp() END,
         lease_owner = NULL, lease_expires_at = NULL
       WHERE id = $1 AND lease_owner = $2 AND status = 'pending'`,
      [id, owner, status, result.status, error, delayMs],
    );
    return updated > 0;
  }

  async list(filter: DeliveryFilter, limit: number): Promise<DeliveryView[]> {
    const rows: DeliveryRow[] = await this.dataSource.query(
      `SELECT ${VIEW_COLUMNS} FROM webhook_deliveries d JOIN lifecycle_events e ON e.id = d.event_id
       WHERE ($1::text IS NULL OR d.status = $1) AND ($2::text IS NULL OR e.type = $2) AND ($3::text IS NULL OR e.account = $3)
         AND ($4::bigint IS NULL OR d.id < $4)
       ORDER BY d.id DESC LIMIT $5`,
      [filter.status ?? null, filter.type ?? null, filter.account ?? null, filter.before ?? null, limit],
    );
    return rows.map(toView);
  }

  async retry(id: string): Promise<{ retried: DeliveryView } | { status: DeliveryStatus } | null> {
    const rows: DeliveryRow[] = await this.dataSource.query(
      `WITH retried AS (
         UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = clock_timestamp(), created_at = clock_timestamp(),
           lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND status = 'failed' RETURNING *)
       SELECT ${VIEW_COLUMNS} FROM retried d JOIN lifecycle_events e ON e.id = d.event_id`,
      [id],
    );
    if (rows[0]) return { retried: toView(rows[0]) };
    const current: Array<{ status: DeliveryStatus }> = await this.dataSource.query(`SELECT status FROM webhook_deliveries WHERE id = $1`, [id]);
    return current[0] ? { status: current[0].status } : null;
  }

  async pruneBefore(before: Date, limit: number): Promise<number> {
    const [, deleted] = await this.dataSource.query<[unknown, number]>(
      `DELETE FROM lifecycle_events WHERE id IN (
         SELECT e.id FROM lifecycle_events e
         WHERE e.occurred_at < $1 AND e.dispatched
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id AND d.status = 'pending')
         ORDER BY e.occurred_at LIMIT $2)`,
      [before, limit],
    );
    return deleted;
  }

  async pendingSummary(): Promise<{ pending: number; oldestAgeSeconds: number }> {
    const [row]: Array<{ pending: number; oldest_age: number | null }> = await this.dataSource.query(
      `SELECT count(*)::int AS pending, EXTRACT(EPOCH FROM clock_timestamp() - min(created_at))::float8 AS oldest_age
       FROM webhook_deliveries WHERE status = 'pending'`,
    );
    return { pending: row.pending, oldestAgeSeconds: Math.max(0, row.oldest_age ?? 0) };
  }
}

function toView(row: DeliveryRow): DeliveryView {
  return {
    id: row.id,
    webhookId: row.event_id,
    type: row.type,
    account: row.account,
    provider: row.provider,
    endpoint: urlForDisplay(row.endpoint),
    status: row.status,
    attempts: row.attempts,
    occurredAt: row.occurred_at.toISOString(),
    lastAttemptAt: row.last_attempt_at?.toISOString() ?? null,
    nextAttemptAt: row.status === 'pending' ? row.next_attempt_at.toISOString() : null,
    deliveredAt: row.delivered_at?.toISOString() ?? null,
    lastStatus: row.last_status,
    lastError: row.last_error,
  };
}
