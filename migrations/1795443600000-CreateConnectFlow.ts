import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The connect flow's short-lived state. Both tables hold only SHA-256 digests of the values
 * handed to browsers (session link token, OAuth `state`, browser-binding cookie), so a copy
 * of the database cannot be replayed. Rows are single-use and expire within minutes.
 */
export class CreateConnectFlow1795443600000 implements MigrationInterface {
  name = 'CreateConnectFlow1795443600000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE connect_sessions (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        token_hash bytea NOT NULL UNIQUE,
        account varchar(128) NOT NULL,
        provider varchar(32) NOT NULL,
        return_to text,
        created_by varchar(64) NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        used_at timestamptz
      )
    `);
    await queryRunner.query(`CREATE INDEX connect_sessions_expires_idx ON connect_sessions (expires_at)`);
    await queryRunner.query(`
      CREATE TABLE oauth_states (
        state_hash bytea PRIMARY KEY,
        provider varchar(32) NOT NULL,
        session_id uuid NOT NULL REFERENCES connect_sessions (id) ON DELETE CASCADE,
        browser_hash bytea NOT NULL,
        code_verifier_sealed text,
        redirect_uri text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL
      )
    `);
    await queryRunner.query(`CREATE INDEX oauth_states_expires_idx ON oauth_states (expires_at)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE oauth_states`);
    await queryRunner.query(`DROP TABLE connect_sessions`);
  }
}
