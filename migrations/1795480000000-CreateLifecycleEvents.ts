import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Lifecycle events and their webhook deliveries (DESIGN, "Lifecycle events (webhooks)").
 *
 * `lifecycle_events` is the outbox: a row is inserted by the same statement (or transaction) as
 * the connection change it reports (libs/connections/src/lifecycle-events.ts), so no event exists
 * for a change that rolled back and none is missing for one that committed. `seq` orders the
 * events of one connection: its changes take the connection's row lock, so their events are
 * numbered in commit order. `connection` is a snapshot of the row's non-secret columns at the
 * change (the payload's admin view is built from it); never a sealed value.
 *
 * `webhook_deliveries` holds one row per event and endpoint (WEBHOOK_URLS), created by a
 * dispatcher when it picks the event up (`dispatched`), and claimed by replicas with FOR UPDATE
 * SKIP LOCKED. `stream` is what delivery order is kept within: the connection, or the provider
 * for provider events. A statement that inserts events NOTIFYs `lifecycle_event` once, so
 * dispatchers wake at once (one that inserts none, the common case, stays silent).
 *
 * `connections.refresh_failing_since` marks a refresh failure streak that was reported
 * (connection.refresh_failing), so it is reported once and its end (connection.recovered) is
 * known; `provider_alerts` does the same per provider for invalid_client.
 */
export class CreateLifecycleEvents1795480000000 implements MigrationInterface {
  name = 'CreateLifecycleEvents1795480000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE connections ADD COLUMN refresh_failing_since timestamptz`);
    await queryRunner.query(`CREATE TABLE provider_alerts (provider text PRIMARY KEY, misconfigured_since timestamptz)`);
    await queryRunner.query(`
      CREATE TABLE lifecycle_events (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        type text NOT NULL,
        occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        connection_id uuid,
        account text,
        provider text NOT NULL,
        reason text,
        connection jsonb,
        dispatched boolean NOT NULL DEFAULT false
      )
    `);
    await queryRunner.query(`CREATE INDEX lifecycle_events_undispatched_idx ON lifecycle_events (seq) WHERE NOT dispatched`);
    await queryRunner.query(`CREATE INDEX lifecycle_events_occurred_idx ON lifecycle_events (occurred_at)`);
    await queryRunner.query(`
      CREATE TABLE webhook_deliveries (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id uuid NOT NULL REFERENCES lifecycle_events (id) ON DELETE CASCADE,
        endpoint text NOT NULL,
        stream text NOT NULL,
        seq bigint NOT NULL,
        status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        lease_owner text,
        lease_expires_at timestamptz,
        last_attempt_at timestamptz,
        last_status integer,
        last_error text,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        delivered_at timestamptz,
        UNIQUE (event_id, endpoint)
      )
    `);
    await queryRunner.query(`CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending'`);
    await queryRunner.query(`CREATE INDEX webhook_deliveries_stream_idx ON webhook_deliveries (endpoint, stream, seq) WHERE status = 'pending'`);
    await queryRunner.query(`CREATE INDEX webhook_deliveries_status_idx ON webhook_deliveries (status, id)`);
    await queryRunner.query(`
      CREATE FUNCTION notify_lifecycle_event() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        -- A statement trigger fires for an INSERT of no rows too, and most connection writes carry
        -- an event CTE that inserts nothing: only a statement that recorded an event wakes anyone.
        IF EXISTS (SELECT 1 FROM inserted) THEN
          PERFORM pg_notify('lifecycle_event', '');
        END IF;
        RETURN NULL;
      END $$
    `);
    await queryRunner.query(`
      CREATE TRIGGER lifecycle_events_inserted AFTER INSERT ON lifecycle_events REFERENCING NEW TABLE AS inserted
      FOR EACH STATEMENT EXECUTE FUNCTION notify_lifecycle_event()
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE webhook_deliveries`);
    await queryRunner.query(`DROP TABLE lifecycle_events`);
    await queryRunner.query(`DROP FUNCTION notify_lifecycle_event()`);
    await queryRunner.query(`DROP TABLE provider_alerts`);
    await queryRunner.query(`ALTER TABLE connections DROP COLUMN refresh_failing_since`);
  }
}
