import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Every sealed value's key id, per column, instead of one `key_id` per row.
 *
 * A refresh that gets no new refresh token re-seals only the access token: the row then holds
 * values under two keys, and one `key_id` column could name only one of them, so key rotation
 * missed the other. The key id is part of every sealed value (`v1.<kid>.…`); generated columns
 * read it from there, so no writer can forget to keep it right. Rotation and the readiness
 * check find values under a given key through these columns and their indexes.
 *
 * The change trigger keeps firing when a sealed value changes (a rotation re-seal included),
 * as it did when `key_id` changed.
 */
export class TrackSealedKeyIds1795450000000 implements MigrationInterface {
  name = 'TrackSealedKeyIds1795450000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TRIGGER connections_changed_update ON connections`);
    await queryRunner.query(`DROP INDEX connections_key_id_idx`);
    await queryRunner.query(`ALTER TABLE connections DROP COLUMN key_id`);
    await queryRunner.query(`
      ALTER TABLE connections
        ADD COLUMN access_key_id varchar(32) GENERATED ALWAYS AS (NULLIF(split_part(access_token_sealed, '.', 2), '')) STORED,
        ADD COLUMN refresh_key_id varchar(32) GENERATED ALWAYS AS (NULLIF(split_part(refresh_token_sealed, '.', 2), '')) STORED
    `);
    await queryRunner.query(`CREATE INDEX connections_access_key_id_idx ON connections (access_key_id) WHERE access_key_id IS NOT NULL`);
    await queryRunner.query(`CREATE INDEX connections_refresh_key_id_idx ON connections (refresh_key_id) WHERE refresh_key_id IS NOT NULL`);
    await queryRunner.query(`
      CREATE TRIGGER connections_changed_update AFTER UPDATE ON connections FOR EACH ROW
      WHEN (OLD.version IS DISTINCT FROM NEW.version OR OLD.status IS DISTINCT FROM NEW.status
        OR OLD.access_token_sealed IS DISTINCT FROM NEW.access_token_sealed
        OR OLD.refresh_token_sealed IS DISTINCT FROM NEW.refresh_token_sealed)
      EXECUTE FUNCTION notify_connection_change()
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TRIGGER connections_changed_update ON connections`);
    await queryRunner.query(`ALTER TABLE connections DROP COLUMN access_key_id, DROP COLUMN refresh_key_id`);
    await queryRunner.query(`ALTER TABLE connections ADD COLUMN key_id varchar(32)`);
    // The access token's key, as the row-level column meant before; rotation then re-reads every row it names.
    await queryRunner.query(`UPDATE connections SET key_id = NULLIF(split_part(access_token_sealed, '.', 2), '')`);
    await queryRunner.query(`CREATE INDEX connections_key_id_idx ON connections (key_id)`);
    await queryRunner.query(`
      CREATE TRIGGER connections_changed_update AFTER UPDATE ON connections FOR EACH ROW
      WHEN (OLD.version IS DISTINCT FROM NEW.version OR OLD.key_id IS DISTINCT FROM NEW.key_id OR OLD.status IS DISTINCT FROM NEW.status)
      EXECUTE FUNCTION notify_connection_change()
    `);
  }
}
