import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Connections that hold a static credential (an API key) instead of an OAuth grant.
 *
 * `auth_mode` says which a row holds; one (account, provider) holds one of them. The key is
 * sealed in its own column under its own seal context (never as an access token of the row), so
 * it has its own generated key-id column and index for key rotation and the readiness check,
 * as the tokens do. `credential_user_email` is the email some providers want beside the key
 * (Copper's X-PW-UserEmail): not a secret, so it is stored as it is. An API key's expiry, when
 * the provider gives one, is the row's `expires_at`.
 *
 * The change trigger also fires when the sealed credential changes (a rotation re-seal included),
 * so no replica keeps a cached copy sealed under a key that is about to leave the ring.
 */
export class StaticCredentials1795470000000 implements MigrationInterface {
  name = 'StaticCredentials1795470000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE connections
        ADD COLUMN auth_mode varchar(16) NOT NULL DEFAULT 'oauth2' CONSTRAINT connections_auth_mode_check CHECK (auth_mode IN ('oauth2', 'api_key')),
        ADD COLUMN credential_sealed text,
        ADD COLUMN credential_user_email varchar(320),
        ADD COLUMN credential_key_id varchar(32) GENERATED ALWAYS AS (NULLIF(split_part(credential_sealed, '.', 2), '')) STORED
    `);
    await queryRunner.query(`CREATE INDEX connections_credential_key_id_idx ON connections (credential_key_id) WHERE credential_key_id IS NOT NULL`);
    await queryRunner.query(`DROP TRIGGER connections_changed_update ON connections`);
    await queryRunner.query(`
      CREATE TRIGGER connections_changed_update AFTER UPDATE ON connections FOR EACH ROW
      WHEN (OLD.version IS DISTINCT FROM NEW.version OR OLD.status IS DISTINCT FROM NEW.status
        OR OLD.access_token_sealed IS DISTINCT FROM NEW.access_token_sealed
        OR OLD.refresh_token_sealed IS DISTINCT FROM NEW.refresh_token_sealed
        OR OLD.credential_sealed IS DISTINCT FROM NEW.credential_sealed)
      EXECUTE FUNCTION notify_connection_change()
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TRIGGER connections_changed_update ON connections`);
    await queryRunner.query(`
      CREATE TRIGGER connections_changed_update AFTER UPDATE ON connections FOR EACH ROW
      WHEN (OLD.version IS DISTINCT FROM NEW.version OR OLD.status IS DISTINCT FROM NEW.status
        OR OLD.access_token_sealed IS DISTINCT FROM NEW.access_token_sealed
        OR OLD.refresh_token_sealed IS DISTINCT FROM NEW.refresh_token_sealed)
      EXECUTE FUNCTION notify_connection_change()
    `);
    // An API key has no place in the old schema: such rows would look like OAuth connections without a token.
    await queryRunner.query(`DELETE FROM connections WHERE auth_mode = 'api_key'`);
    await queryRunner.query(`
      ALTER TABLE connections DROP COLUMN credential_key_id, DROP COLUMN credential_user_email,
        DROP COLUMN credential_sealed, DROP COLUMN auth_mode
    `);
  }
}
