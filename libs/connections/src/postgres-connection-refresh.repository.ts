import { Clock } from '@app/common';
import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { ConnectionRefreshRepository, RefreshState, SaveDerivedInput, SaveRefreshedInput } from './connection-refresh.repository';
import { ConnectionRow, firstRecord, firstSealed, RECORD_COLUMNS, SEALED_COLUMNS, toSealed } from './connection.mapper';
import { ConnectionError, ConnectionErrorCode, ConnectionRecord, SealedConnection } from './connection.model';
import { ConnectionSealer } from './connection.sealer';
import { closeMisconfiguredStreak, insertConnectionEvent, LifecycleEventType, openMisconfiguredStreak, TRANSIENT_FAILURE_CODES } from './lifecycle-events';

/** Postgres implementation. Every statement is written out: the fences and locks are the point. */
@Injectable()
export class PostgresConnectionRefreshRepository extends ConnectionRefreshRepository {
  constructor(
    private readonly dataSource: DataSource,
    private readonly sealer: ConnectionSealer,
    private readonly clock: Clock,
  ) {
    super();
  }

  async claimRefreshLease(id: string, owner: string, now: Date, leaseMs: number): Promise<SealedConnection | null> {
    const [rows] = await this.dataSource.query<[ConnectionRow[], number]>(
      `UPDATE connections SET lease_owner = $2, lease_expires_at = $3
       WHERE id = $1 AND status = 'active' AND (lease_expires_at IS NULL OR lease_expires_at <= $4 OR lease_owner = $2)
       RETURNING ${SEALED_COLUMNS}`,
      [id, owner, new Date(now.getTime() + leaseMs), now],
    );
    return firstSealed(rows);
  }

  async claimDueForRefresh(provider: string, owner: string, now: Date, leaseMs: number, limit: number): Promise<SealedConnection[]> {
    // RETURNING comes back in no particular order: the outer SELECT restores "oldest due first",
    // which the sweep works through in turn. Due is the earlier of the token's and the derived
    // token's plans (LEAST ignores a NULL), spelled as connections_due_idx has it.
    const rows: ConnectionRow[] = await this.dataSource.query(
      `WITH claimed AS (
         UPDATE connections SET lease_owner = $2, lease_expires_at = $3
         WHERE id IN (
           SELECT id FROM connections
           WHERE provider = $1 AND status = 'active' AND (next_refresh_at IS NOT NULL OR derived_refresh_at IS NOT NULL)
             AND LEAST(next_refresh_at, derived_refresh_at) <= $4
             AND (lease_expires_at IS NULL OR lease_expires_at <= $4)
           ORDER BY LEAST(next_refresh_at, derived_refresh_at) LIMIT $5 FOR UPDATE SKIP LOCKED)
         RETURNING ${SEALED_COLUMNS})
       SELECT * FROM claimed ORDER BY LEAST(next_refresh_at, derived_refresh_at), id`,
      [provider, owner, new Date(now.getTime() + leaseMs), now, limit],
    );
    return rows.map(toSealed);
  }

  async releaseLeasesOf(owner: string): Promise<number> {
    const [, count] = await this.dataSource.query<[unknown, number]>(
      `UPDATE connections SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = $1`,
      [owner],
    );
    return count;
  }

  async releaseRefreshLease(id: string, owner: string): Promise<void> {
    await this.dataSource.query(`UPDATE connections SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2`, [
      id,
      owner,
    ]);
  }

  async refreshState(id: string, now: Date): Promise<RefreshState | null> {
    const rows: RefreshState[] = await this.dataSource.query(
      `SELECT version, status, (lease_expires_at IS NOT NULL AND lease_expires_at > $2) AS leased FROM connections WHERE id = $1`,
      [id, now],
    );
    return rows[0] ?? null;
  }

  async saveRefreshed(input: SaveRefreshedInput): Promise<SealedConnection | null> {
    const sealed = this.sealer.sealTokens(input.id, input.tokens);
    const now = this.clock.now();
    // A refresh response without a refresh token keeps the one we have (RFC 6749 §6);
    // a rotated one is written in this same statement as its access token.
    // The same statement ends a reported failure streak (connection.recovered) and the
    // provider's invalid_client streak: the client credentials just worked.
    const rows: ConnectionRow[] = await this.dataSource.query(
      `WITH before AS (SELECT id, refresh_failing_since FROM connections WHERE id = $1 FOR UPDATE),
       c AS (
         UPDATE connections SET access_token_sealed = $3,
           refresh_token_sealed = COALESCE($4, refresh_token_sealed),
           token_type = COALESCE($5, token_type), scope = COALESCE($6, scope), expires_at = $7,
           refresh_token_expires_at = CASE WHEN $4::text IS NULL THEN refresh_token_expires_at ELSE $8 END,
           updated_at = $9, last_refreshed_at = $9, last_error_code = NULL, last_error_message = NULL,
           last_error_at = NULL, version = version + 1, next_refresh_at = $10, refresh_failures = 0,
           refresh_failing_since = NULL, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = (SELECT id FROM before) AND version = $2 AND status = 'active' RETURNING ${SEALED_COLUMNS}),
       recovered_event AS (${insertConnectionEvent(LifecycleEventType.Recovered, 'c', `'refreshed'`, '(SELECT refresh_failing_since FROM before) IS NOT NULL')}),
       streak_closed AS (${closeMisconfiguredStreak('(SELECT provider FROM c)')})
       SELECT * FROM c`,
      [
        input.id,
        input.expectedVersion,
        sealed.access,
        sealed.refresh,
        input.tokens.tokenType ?? null,
        input.tokens.scope ?? null,
        input.tokens.expiresAt,
        input.tokens.refreshTokenExpiresAt ?? null,
        now,
        input.nextRefreshAt,
      ],
    );
    return firstSealed(rows);
  }

  async saveDerived(input: SaveDerivedInput): Promise<SealedConnection | null> {
    const sealed = this.sealer.sealDerivedToken(input.id, input.token);
    const now = this.clock.now();
    const rows: ConnectionRow[] = await this.dataSource.query(
      `WITH before AS (SELECT id, refresh_failing_since FROM connections WHERE id = $1 FOR UPDATE),
       c AS (
         UPDATE connections SET derived_token_sealed = $3, derived_expires_at = $4, derived_refresh_at = $5,
           updated_at = $6, last_error_code = NULL, last_error_message = NULL, last_error_at = NULL,
           version = version + 1, refresh_failures = 0, refresh_failing_since = NULL, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = (SELECT id FROM before) AND version = $2 AND status = 'active' RETURNING ${SEALED_COLUMNS}),
       recovered_event AS (${insertConnectionEvent(LifecycleEventType.Recovered, 'c', `'refreshed'`, '(SELECT refresh_failing_since FROM before) IS NOT NULL')})
       SELECT * FROM c`,
      [input.id, input.expectedVersion, sealed, input.expiresAt, input.refreshAt, now],
    );
    return firstSealed(rows);
  }

  async recordDerivedFailure(id: string, expectedVersion: number, error: Omit<ConnectionError, 'at'>, retryAt: Date): Promise<boolean> {
    return this.recordFailure(id, expectedVersion, error, { column: 'derived_refresh_at', retryAt, served: 'derived_expires_at' });
  }

  async markNeedsReauth(id: string, expectedVersion: number, error: Omit<ConnectionError, 'at'>): Promise<ConnectionRecord | null> {
    const rows: ConnectionRow[] = await this.dataSource.query(
      `WITH c AS (
         UPDATE connections SET status = 'needs_reauth', last_error_code = $3, last_error_message = $4, last_error_at = $5,
           updated_at = $5, version = version + 1, next_refresh_at = NULL, refresh_failing_since = NULL, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND version = $2 AND status = 'active' RETURNING ${RECORD_COLUMNS}),
       needs_reauth_event AS (${insertConnectionEvent(LifecycleEventType.NeedsReauth, 'c', 's.last_error_code')})
       SELECT * FROM c`,
      [id, expectedVersion, error.code, error.message, this.clock.now()],
    );
    return firstRecord(rows);
  }

  async recordRefreshFailure(id: string, expectedVersion: number, error: Omit<ConnectionError, 'at'>, retryAt: Date | null): Promise<boolean> {
    return this.recordFailure(id, expectedVersion, error, { column: 'next_refresh_at', retryAt, served: 'expires_at' });
  }

  /**
   * The `before` CTEs here read the row's previous state FOR UPDATE, and the UPDATE takes its row
   * through them: under READ COMMITTED a locking read returns the newest committed version after
   * any wait, so "was it set before this write" is never answered from a stale snapshot (two
   * writes racing on one row record one event, not two).
   *
   * `refresh_failing_since` is one marker for both plans a row may have (the token's refresh and
   * the derived token's mint): a success of either ends a streak either opened. Today no
   * connection depends on both at once (a derived token is minted from a stored static or
   * long-lived credential).
   *
   * A failed refresh (or mint) of the token whose expiry is in `plan.served`, to be tried again
   * at `plan.retryAt` (in `plan.column`; null keeps it). In the same statement: the first
   * transient failure once the served token has expired opens the reported streak
   * (connection.refresh_failing, once); invalid_client opens the provider's streak
   * (provider.misconfigured, once).
   */
  private async recordFailure(
    id: string,
    expectedVersion: number,
    error: Omit<ConnectionError, 'at'>,
    plan: { column: 'next_refresh_at' | 'derived_refresh_at'; retryAt: Date | null; served: 'expires_at' | 'derived_expires_at' },
  ): Promise<boolean> {
    const rows: Array<{ updated: number }> = await this.dataSource.query(
      `WITH before AS (SELECT id, refresh_failing_since FROM connections WHERE id = $1 FOR UPDATE),
       c AS (
         UPDATE connections SET last_error_code = $3::text, last_error_message = $4, last_error_at = $5, updated_at = $5,
           refresh_failures = refresh_failures + 1, ${plan.column} = COALESCE($6, ${plan.column}),
           refresh_failing_since = CASE
             WHEN refresh_failing_since IS NULL AND $3::text = ANY($7::text[]) AND ${plan.served} <= $5 THEN $5
             ELSE refresh_failing_since END,
           lease_owner = NULL, lease_expires_at = NULL
         WHERE id = (SELECT id FROM before) AND version = $2 AND status = 'active'
         RETURNING ${RECORD_COLUMNS}, (refresh_failing_since IS NOT NULL AND (SELECT refresh_failing_since FROM before) IS NULL) AS failing_opened),
       failing_event AS (${insertConnectionEvent(LifecycleEventType.RefreshFailing, 'c', 's.last_error_code', 's.failing_opened')}),
       ${openMisconfiguredStreak('c', `s.last_error_code = '${ConnectionErrorCode.InvalidClient}'`)}
       SELECT count(*)::int AS updated FROM c`,
      [id, expectedVersion, error.code, error.message, this.clock.now(), plan.retryAt, TRANSIENT_FAILURE_CODES],
    );
    return rows[0].updated > 0;
  }
}
