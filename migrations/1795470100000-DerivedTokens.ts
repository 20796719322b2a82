import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Tokens the broker derives from a connection's stored token or key: Copernica's REST v4 takes a
 * 24-hour JWT minted from the access token by its authentication service.
 *
 * The derived token is sealed in its own column under its own seal context, with a generated
 * key-id column and index for key rotation and the readiness check. `derived_expires_at` is when
 * it stops working, `derived_refresh_at` when it is to be minted again (or retried after a
 * failure): a plan of its own beside the access token's `next_refresh_at`, so neither plan
 * overwrites the other. The sweep claims a row when either is due; its index is on the earlier of
 * the two (LEAST ignores a NULL).
 *
 * The change trigger also fires when the derived token is re-sealed by key rotation.
 */
export class DerivedTokens1795470100000 implements MigrationInterface {
  name = 'DerivedTokens1795470100000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE connections
        ADD COLUMN derived_token_sealed text,
        ADD COLUMN derived_expires_at timestamptz,
        ADD COLUMN derived_refresh_at timestamptz,
        ADD COLUMN derived_key_id varchar(32) GENERATED ALWAYS AS (NULLIF(split_part(derived_token_sealed, '.', 2), '')) STORED
    `);
    await queryRunner.query(`CREATE INDEX connections_derived_key_id_idx ON connections (derived_key_id) WHERE derived_key_id IS NOT NULL`);
    await queryRunner.query(`DROP INDEX connections_due_idx`);
    await queryRunner.query(`
      CREATE INDEX connections_due_idx ON connections (provider, (LEAST(next_refresh_at, derived_refresh_at)))
      WHERE status = 'active' AND (next_refresh_at IS NOT NULL OR derived_refresh_at IS NOT NULL)
    `);
    await queryRunner.query(`DROP TRIGGER connections_changed_update ON connections`);
    await queryRunner.query(`
      CREATE TRIGGER connections_changed_update AFTER UPDATE ON connections FOR EACH ROW
      WHEN (OLD.version IS DISTINCT FROM NEW.version OR OLD.status IS DISTINCT FROM NEW.status
        OR OLD.access_token_sealed IS DISTINCT FROM NEW.access_token_sealed
        OR OLD.refresh_token_sealed IS DISTINCT FROM NEW.refresh_token_sealed
        OR OLD.credential_sealed IS DISTINCT FROM NEW.credential_sealed
        OR OLD.derived_token_sealed IS DISTINCT FROM NEW.derived_token_sealed)
      EXECUTE FUNCTION notify_connection_change()
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TRIGGER connections_changed_update ON connections`);
    await queryRunner.query(`
      CREATE TRIGGER connections_changed_update AFTER UPDATE ON connections FOR EACH ROW
      WHEN (OLD.version IS DISTINCT FROM NEW.version OR OLD.status IS DISTINCT FROM NEW.status
        OR OLD.access_token_sealed IS DISTINCT FROM NEW.access_token_sealed
        OR OLD.refresh_token_sealed IS DISTINCT FROM NEW.refresh_token_sealed
        OR OLD.credential_sealed IS DISTINCT FROM NEW.credential_sealed)
      EXECUTE FUNCTION notify_connection_change()
    `);
    await queryRunner.query(`DROP INDEX connections_due_idx`);
    await queryRunner.query(
      `CREATE INDEX connections_due_idx ON connections (provider, next_refresh_at) WHERE status = 'active' AND next_refresh_at IS NOT NULL`,
    );
    await queryRunner.query(`
      ALTER TABLE connections DROP COLUMN derived_key_id, DROP COLUMN derived_refresh_at,
        DROP COLUMN derived_expires_at, DROP COLUMN derived_token_sealed
    `);
  }
}
