import { Clock } from '@app/common';
import { Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { ConnectionRow, firstRecord, firstSealed, RECORD_COLUMNS, SEALED_COLUMNS, toRecord, toSealed } from './connection.mapper';
import { ConnectionRecord, SealedConnection } from './connection.model';
import { ConnectionRepository, SaveConnectedInput, SaveStaticCredentialInput } from './connection.repository';
import { ConnectionSealer } from './connection.sealer';
import { closeMisconfiguredStreak, insertConnectionEvent, LifecycleEventType, RevocationReason } from './lifecycle-events';

/** Postgres implementation. Every statement is written out: the fences and locks are the point. */
@Injectable()
export class PostgresConnectionRepository extends ConnectionRepository {
  constructor(
    private readonly dataSource: DataSource,
    private readonly sealer: ConnectionSealer,
    private readonly clock: Clock,
  ) {
    super();
  }

  async saveConnected(input: SaveConnectedInput): Promise<ConnectionRecord> {
    return this.dataSource.transaction(async (manager) => {
      // Insert a placeholder if the pair is new (invisible until commit), then lock the row: the
      // ciphertext is bound to the row id, so the id must be known before sealing.
      await manager.query(
        `INSERT INTO connections (id, account, provider) VALUES ($1, $2, $3) ON CONFLICT (account, provider) DO NOTHING`,
        [randomUUID(), input.account, input.provider],
      );
      const [{ id }] = await manager.query<Array<{ id: string }>>(`SELECT id FROM connections WHERE account = $1 AND provider = $2 FOR UPDATE`, [
        input.account,
        input.provider,
      ]);
      const now = this.clock.now();
      const sealed = this.sealer.sealTokens(id, input.tokens);
      // The code exchange worked with the broker's client credentials: any invalid_client streak is over.
      const rows = await manager.query<ConnectionRow[]>(
        `WITH c AS (
           UPDATE connections SET status = 'active', access_token_sealed = $2, refresh_token_sealed = $3,
             auth_mode = 'oauth2', credential_sealed = NULL, credential_user_email = NULL, derived_token_sealed = NULL, derived_expires_at = NULL, derived_refresh_at = NULL,
             token_type = $4, scope = $5, expires_at = $6, refresh_token_expires_at = $7, identity = $8,
             updated_at = $9, connected_at = $9, last_refreshed_at = NULL, last_error_code = NULL,
             last_error_message = NULL, last_error_at = NULL, version = version + 1, next_refresh_at = $10,
             refresh_failures = 0, refresh_failing_since = NULL, lease_owner = NULL, lease_expires_at = NULL
           WHERE id = $1 RETURNING ${RECORD_COLUMNS}),
         connected_event AS (${insertConnectionEvent(LifecycleEventType.Connected, 'c', 's.auth_mode')}),
         streak_closed AS (${closeMisconfiguredStreak('(SELECT provider FROM c)')})
         SELECT * FROM c`,
        [
          id,
          sealed.access,
          sealed.refresh,
          input.tokens.tokenType ?? null,
          input.tokens.scope ?? null,
          input.tokens.expiresAt,
          input.tokens.refreshTokenExpiresAt ?? null,
          input.identity ? JSON.stringify(input.identity) : null,
          now,
          input.nextRefreshAt,
        ],
      );
      return toRecord(rows[0]);
    });
  }

  async saveStaticCredential(input: SaveStaticCredentialInput): Promise<ConnectionRecord | null> {
    return this.dataSource.transaction(async (manager) => {
      const [existing] = await manager.query<Array<{ id: string; version: number }>>(
        `SELECT id, version FROM connections WHERE account = $1 AND provider = $2 FOR UPDATE`,
        [input.account, input.provider],
      );
      let id: string;
      if (existing) {
        // The caller revoked at the provider what it read at `replacing`; anything newer it has not seen.
        if (existing.version !== input.replacing) return null;
        id = existing.id;
      } else {
        if (input.replacing !== null) return null;
        const inserted = await manager.query<Array<{ id: string }>>(
          `INSERT INTO connections (id, account, provider) VALUES ($1, $2, $3) ON CONFLICT (account, provider) DO NOTHING RETURNING id`,
          [randomUUID(), input.account, input.provider],
        );
        // Another writer created the row meanwhile: it may hold a grant the caller has not revoked.
        if (!inserted[0]) return null;
        id = inserted[0].id;
      }
      const now = this.clock.now();
      const rows = await manager.query<ConnectionRow[]>(
        `WITH c AS (
           UPDATE connections SET status = 'active', auth_mode = 'api_key', credential_sealed = $2, credential_user_email = $3,
             access_token_sealed = NULL, refresh_token_sealed = NULL, derived_token_sealed = NULL, derived_expires_at = NULL, derived_refresh_at = NULL,
             token_type = 'api_key', scope = NULL, expires_at = $4,
             refresh_token_expires_at = NULL, identity = $5, updated_at = $6, connected_at = $6, last_refreshed_at = NULL,
             last_error_code = NULL, last_error_message = NULL, last_error_at = NULL, version = version + 1,
             next_refresh_at = $4, refresh_failures = 0, refresh_failing_since = NULL, lease_owner = NULL, lease_expires_at = NULL
           WHERE id = $1 RETURNING ${RECORD_COLUMNS}),
         connected_event AS (${insertConnectionEvent(LifecycleEventType.Connected, 'c', 's.auth_mode')})
         SELECT * FROM c`,
        [
          id,
          this.sealer.sealCredential(id, input.credential.apiKey),
          input.credential.userEmail,
          input.expiresAt,
          input.identity ? JSON.stringify(input.identity) : null,
          now,
        ],
      );
      return firstRecord(rows);
    });
  }

  async findOne(account: string, provider: string): Promise<ConnectionRecord | null> {
    const rows: ConnectionRow[] = await this.dataSource.query(`SELECT ${RECORD_COLUMNS} FROM connections WHERE account = $1 AND provider = $2`, [
      account,
      provider,
    ]);
    return firstRecord(rows);
  }

  async findByAccount(account: string): Promise<ConnectionRecord[]> {
    const rows: ConnectionRow[] = await this.dataSource.query(
      `SELECT ${RECORD_COLUMNS} FROM connections WHERE account = $1 ORDER BY provider`,
      [account],
    );
    return rows.map(toRecord);
  }

  async findSealedById(id: string): Promise<SealedConnection | null> {
    const rows: ConnectionRow[] = await this.dataSource.query(`SELECT ${SEALED_COLUMNS} FROM connections WHERE id = $1`, [id]);
    return firstSealed(rows);
  }

  async findSealedByAccount(account: string): Promise<SealedConnection[]> {
    const rows: ConnectionRow[] = await this.dataSource.query(
      `SELECT ${SEALED_COLUMNS} FROM connections WHERE account = $1 ORDER BY provider`,
      [account],
    );
    return rows.map(toSealed);
  }

  async markRevoked(id: string, reason: RevocationReason): Promise<ConnectionRecord | null> {
    return this.revokeWhere(id, null, reason);
  }

  async markRevokedIfUnchanged(id: string, expectedVersion: number, reason: RevocationReason): Promise<ConnectionRecord | null> {
    return this.revokeWhere(id, expectedVersion, reason);
  }

  /**
   * Erases the row's secrets and marks it revoked (only at `expectedVersion` unless that is null),
   * recording connection.revoked unless it was revoked already. The previous status is read FOR
   * UPDATE (the newest committed one after any wait), so two racing revokes record one event.
   */
  private async revokeWhere(id: string, expectedVersion: number | null, reason: RevocationReason): Promise<ConnectionRecord | null> {
    const rows: ConnectionRow[] = await this.dataSource.query(
      `WITH before AS (SELECT id, status FROM connections WHERE id = $1 FOR UPDATE),
       c AS (
         UPDATE connections SET status = 'revoked', access_token_sealed = NULL, refresh_token_sealed = NULL, credential_sealed = NULL,
           derived_token_sealed = NULL, derived_expires_at = NULL, derived_refresh_at = NULL,
           expires_at = NULL, refresh_token_expires_at = NULL, updated_at = $2, version = version + 1,
           next_refresh_at = NULL, refresh_failing_since = NULL, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = (SELECT id FROM before) AND ($4::int IS NULL OR version = $4) RETURNING ${RECORD_COLUMNS}),
       revoked_event AS (${insertConnectionEvent(LifecycleEventType.Revoked, 'c', '$3', "(SELECT status FROM before) <> 'revoked'")})
       SELECT * FROM c`,
      [id, this.clock.now(), reason, expectedVersion],
    );
    return firstRecord(rows);
  }

  async recordUsage(lastUsedById: ReadonlyMap<string, Date>): Promise<void> {
    if (lastUsedById.size === 0) return;
    const ids = [...lastUsedById.keys()];
    const times = ids.map((id) => lastUsedById.get(id)?.toISOString());
    // One statement for the whole batch; never moves a timestamp backwards.
    await this.dataSource.query(
      `UPDATE connections c SET last_used_at = GREATEST(COALESCE(c.last_used_at, u.at), u.at)
       FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at) WHERE c.id = u.id`,
      [ids, times],
    );
  }
}
