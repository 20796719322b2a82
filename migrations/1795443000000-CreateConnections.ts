import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * One row per (account, provider). Tokens are stored only sealed (AES-256-GCM, see
 * libs/crypto); `key_id` names the key that sealed them so rotation finds old rows by index.
 * `version` fences writes; `next_refresh_at` + the lease columns serve the refresh sweep.
 */
export class CreateConnections1795443000000 implements MigrationInterface {
  name = 'CreateConnections1795443000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE connections (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        account varchar(128) NOT NULL,
        provider varchar(32) NOT NULL,
        status varchar(16) NOT NULL DEFAULT 'active'
          CHECK (status IN ('active', 'needs_reauth', 'revoked', 'error')),
        access_token_sealed text,
        refresh_token_sealed text,
        key_id varchar(32),
        token_type varchar(32),
        scope text,
        expires_at timestamptz,
        refresh_token_expires_at timestamptz,
        identity jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        connected_at timestamptz NOT NULL DEFAULT now(),
        last_refreshed_at timestamptz,
        last_used_at timestamptz,
        last_error_code varchar(64),
        last_error_message text,
        last_error_at timestamptz,
        version integer NOT NULL DEFAULT 1,
        next_refresh_at timestamptz,
        refresh_failures integer NOT NULL DEFAULT 0,
        lease_owner varchar(64),
        lease_expires_at timestamptz,
        CONSTRAINT connections_account_provider_key UNIQUE (account, provider),
        CONSTRAINT connections_account_format CHECK (account ~ '^[A-Za-z0-9._:@-]{1,128}$')
      )
    `);
    await queryRunner.query(
      `CREATE INDEX connections_due_idx ON connections (provider, next_refresh_at) WHERE status = 'active' AND next_refresh_at IS NOT NULL`,
    );
    await queryRunner.query(`CREATE INDEX connections_key_id_idx ON connections (key_id)`);
    await queryRunner.query(`CREATE INDEX connections_provider_status_idx ON connections (provider, status, id)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE connections`);
  }
}
