import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The audit trail (DESIGN, "Audit trail"): who did what, whatever LOG_LEVEL says. One row per
 * event, except token reads: one row per minute, service, account, provider and outcome, whose
 * `count` every replica adds to (the unique index below is the conflict target of that upsert;
 * NULLS NOT DISTINCT, as a read that names no provider has none).
 *
 * GET /admin/audit pages newest first by (at, id); each filter it takes on its own (account,
 * actor, action) has an index leading with it, so a page is an index range scan at millions of
 * rows. Provider alone is left to the time index: it has a handful of values, so a page finds its
 * rows after a short scan. Retention deletes by `at`, through the time index. Nothing here is a
 * secret: actors are key names, never keys.
 *
 * A fill factor below 100 leaves room on each page for the count updates of the current minute,
 * which then stay heap-only (no index changes).
 */
export class CreateAuditEvents1795460000000 implements MigrationInterface {
  name = 'CreateAuditEvents1795460000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE audit_events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        actor text NOT NULL,
        actor_kind text NOT NULL,
        action text NOT NULL,
        account text,
        provider text,
        outcome text NOT NULL,
        count integer NOT NULL DEFAULT 1 CHECK (count > 0),
        request_id text,
        detail jsonb
      ) WITH (fillfactor = 80)
    `);
    await queryRunner.query(`CREATE INDEX audit_events_at_idx ON audit_events (at, id)`);
    await queryRunner.query(`CREATE INDEX audit_events_account_idx ON audit_events (account, at, id)`);
    await queryRunner.query(`CREATE INDEX audit_events_actor_idx ON audit_events (actor, at, id)`);
    await queryRunner.query(`CREATE INDEX audit_events_action_idx ON audit_events (action, at, id)`);
    await queryRunner.query(`
      CREATE UNIQUE INDEX audit_events_token_read_key ON audit_events (at, actor, account, provider, outcome) NULLS NOT DISTINCT
      WHERE action = 'token.read'
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE audit_events`);
  }
}
