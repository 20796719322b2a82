import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Every replica caches sealed connection rows for the token read path. This trigger tells all
 * of them, through LISTEN/NOTIFY, when a row's tokens or status change (any write that bumps
 * `version`, or a key rotation), so no code path can forget to invalidate. Bookkeeping writes
 * (last used, leases, backoff) do not notify.
 */
export class NotifyConnectionChanges1795444800000 implements MigrationInterface {
  name = 'NotifyConnectionChanges1795444800000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE FUNCTION notify_connection_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify('connection_changed', COALESCE(NEW.account, OLD.account));
        RETURN NULL;
      END $$
    `);
    await queryRunner.query(`
      CREATE TRIGGER connections_changed_update AFTER UPDATE ON connections FOR EACH ROW
      WHEN (OLD.version IS DISTINCT FROM NEW.version OR OLD.key_id IS DISTINCT FROM NEW.key_id OR OLD.status IS DISTINCT FROM NEW.status)
      EXECUTE FUNCTION notify_connection_change()
    `);
    await queryRunner.query(`
      CREATE TRIGGER connections_changed_insert_delete AFTER INSERT OR DELETE ON connections FOR EACH ROW
      EXECUTE FUNCTION notify_connection_change()
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TRIGGER connections_changed_insert_delete ON connections`);
    await queryRunner.query(`DROP TRIGGER connections_changed_update ON connections`);
    await queryRunner.query(`DROP FUNCTION notify_connection_change()`);
  }
}
