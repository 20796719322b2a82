import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Connect links for a static credential: `auth_mode` says whether the link starts the OAuth
 * dance or opens the form where the end user enters an API key, and `failed_attempts` counts the
 * keys the provider refused through that link, so a link cannot be used to try keys without end.
 */
export class ConnectSessionAuthMode1795470200000 implements MigrationInterface {
  name = 'ConnectSessionAuthMode1795470200000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE connect_sessions
        ADD COLUMN auth_mode varchar(16) NOT NULL DEFAULT 'oauth2' CONSTRAINT connect_sessions_auth_mode_check CHECK (auth_mode IN ('oauth2', 'api_key')),
        ADD COLUMN failed_attempts integer NOT NULL DEFAULT 0
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE connect_sessions DROP COLUMN failed_attempts, DROP COLUMN auth_mode`);
  }
}
