import { Clock } from '@app/common';
import { SealContexts, TokenCipher, TokenDecryptError, sealedKeyId } from '@app/crypto';
import { Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { ConnectionUnreadableError, InvalidCursorError } from './connection.errors';
import {
  ConnectionError,
  ConnectionFilter,
  ConnectionPage,
  ConnectionRecord,
  ConnectionStatus,
  ConnectionWithTokens,
  SealedConnection,
  TokenSet,
} from './connection.model';
import { ConnectionRepository, SaveConnectedInput, SaveRefreshedInput } from './connection.repository';

/** Columns of a ConnectionRecord (never the sealed values). */
const RECORD_COLUMNS = `id, account, provider, status, token_type, scope, expires_at, refresh_token_expires_at,
  (refresh_token_sealed IS NOT NULL) AS has_refresh_token, identity, created_at, updated_at, connected_at,
  last_refreshed_at, last_used_at, last_error_code, last_error_message, last_error_at, version, next_refresh_at,
  refresh_failures`;
const SEALED_COLUMNS = `${RECORD_COLUMNS}, access_token_sealed, refresh_token_sealed`;

interface ConnectionRow {
  id: string;
  account: string;
  provider: string;
  status: ConnectionStatus;
  token_type: string | null;
  scope: string | null;
  expires_at: Date | null;
  refresh_token_expires_at: Date | null;
  has_refresh_token: boolean;
  identity: ConnectionRecord['identity'];
  created_at: Date;
  updated_at: Date;
  connected_at: Date;
  last_refreshed_at: Date | null;
  last_used_at: Date | null;
  last_error_code: string | null;
  last_error_message: string | null;
  last_error_at: Date | null;
  version: number;
  next_refresh_at: Date | null;
  refresh_failures: number;
  access_token_sealed?: string | null;
  refresh_token_sealed?: string | null;
}

/** Postgres implementation. Every statement is written out: the fences and locks are the point. */
@Injectable()
export class TypeormConnectionRepository extends ConnectionRepository {
  constructor(
    private readonly dataSource: DataSource,
    private readonly cipher: TokenCipher,
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
      const sealed = this.sealTokens(id, input.tokens);
      const rows = await manager.query<[ConnectionRow[], number]>(
        `UPDATE connections SET status = 'active', access_token_sealed = $2, refresh_token_sealed = $3,
           token_type = $4, scope = $5, expires_at = $6, refresh_token_expires_at = $7, identity = $8,
           updated_at = $9, connected_at = $9, last_refreshed_at = NULL, last_error_code = NULL,
           last_error_message = NULL, last_error_at = NULL, version = version + 1, next_refresh_at = $10,
           refresh_failures = 0, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1 RETURNING ${RECORD_COLUMNS}`,
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
      return toRecord(rows[0][0]);
    });
  }

  async findOne(account: string, provider: string): Promise<ConnectionRecord | null> {
    return this.one(`SELECT ${RECORD_COLUMNS} FROM connections WHERE account = $1 AND provider = $2`, [account, provider]);
  }

  async findById(id: string): Promise<ConnectionRecord | null> {
    return this.one(`SELECT ${RECORD_COLUMNS} FROM connections WHERE id = $1`, [id]);
  }

  async findByAccount(account: string): Promise<ConnectionRecord[]> {
    const rows: ConnectionRow[] = await this.dataSource.query(
      `SELECT ${RECORD_COLUMNS} FROM connections WHERE account = $1 ORDER BY provider`,
      [account],
    );
    return rows.map(toRecord);
  }

  async findSealed(account: string, provider: string): Promise<SealedConnection | null> {
    const rows: ConnectionRow[] = await this.dataSource.query(
      `SELECT ${SEALED_COLUMNS} FROM connections WHERE account = $1 AND provider = $2`,
      [account, provider],
    );
    return rows[0] ? toSealed(rows[0]) : null;
  }

  async findSealedById(id: string): Promise<SealedConnection | null> {
    const rows: ConnectionRow[] = await this.dataSource.query(`SELECT ${SEALED_COLUMNS} FROM connections WHERE id = $1`, [id]);
    return rows[0] ? toSealed(rows[0]) : null;
  }

  unseal(sealed: SealedConnection): ConnectionWithTokens {
    const { record } = sealed;
    if (sealed.sealedAccessToken === null) {
      throw new ConnectionUnreadableError(record.id, undefined, 'no token stored');
    }
    return {
      ...record,
      accessToken: this.open(record.id, sealed.sealedAccessToken, 'access_token'),
      refreshToken: sealed.sealedRefreshToken === null ? null : this.open(record.id, sealed.sealedRefreshToken, 'refresh_token'),
    };
  }

  openAccessToken(sealed: SealedConnection): string {
    if (sealed.sealedAccessToken === null) throw new ConnectionUnreadableError(sealed.record.id, undefined, 'no token stored');
    return this.open(sealed.record.id, sealed.sealedAccessToken, 'access_token');
  }

  async findSealedByAccount(account: string): Promise<SealedConnection[]> {
    const rows: ConnectionRow[] = await this.dataSource.query(
      `SELECT ${SEALED_COLUMNS} FROM connections WHERE account = $1 ORDER BY provider`,
      [account],
    );
    return rows.map(toSealed);
  }

  async claimRefreshLease(id: string, owner: string, now: Date, leaseMs: number): Promise<SealedConnection | null> {
    const [rows] = await this.dataSource.query<[ConnectionRow[], number]>(
      `UPDATE connections SET lease_owner = $2, lease_expires_at = $3
       WHERE id = $1 AND status = 'active' AND (lease_expires_at IS NULL OR lease_expires_at <= $4 OR lease_owner = $2)
       RETURNING ${SEALED_COLUMNS}`,
      [id, owner, new Date(now.getTime() + leaseMs), now],
    );
    return rows[0] ? toSealed(rows[0]) : null;
  }

  async claimDueForRefresh(provider: string, owner: string, now: Date, leaseMs: number, limit: number): Promise<SealedConnection[]> {
    // RETURNING comes back in no particular order: the outer SELECT restores "oldest due first",
    // which the sweep works through in turn.
    const rows: ConnectionRow[] = await this.dataSource.query(
      `WITH claimed AS (
         UPDATE connections SET lease_owner = $2, lease_expires_at = $3
         WHERE id IN (
           SELECT id FROM connections
           WHERE provider = $1 AND status = 'active' AND next_refresh_at IS NOT NULL AND next_refresh_at <= $4
             AND (lease_expires_at IS NULL OR lease_expires_at <= $4)
           ORDER BY next_refresh_at LIMIT $5 FOR UPDATE SKIP LOCKED)
         RETURNING ${SEALED_COLUMNS})
       SELECT * FROM claimed ORDER BY next_refresh_at, id`,
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

  async refreshState(id: string, now: Date): Promise<{ version: number; status: ConnectionStatus; leased: boolean } | null> {
    const rows: Array<{ version: number; status: ConnectionStatus; leased: boolean }> = await this.dataSource.query(
      `SELECT version, status, (lease_expires_at IS NOT NULL AND lease_expires_at > $2) AS leased FROM connections WHERE id = $1`,
      [id, now],
    );
    return rows[0] ?? null;
  }

  async findWithTokens(account: string, provider: string): Promise<ConnectionWithTokens | null> {
    const sealed = await this.findSealed(account, provider);
    return sealed ? this.unseal(sealed) : null;
  }

  async saveRefreshed(input: SaveRefreshedInput): Promise<SealedConnection | null> {
    const sealed = this.sealTokens(input.id, input.tokens);
    const now = this.clock.now();
    // A refresh response without a refresh token keeps the one we have (RFC 6749 §6);
    // a rotated one is written in this same statement as its access token.
    const [rows] = await this.dataSource.query<[ConnectionRow[], number]>(
      `UPDATE connections SET access_token_sealed = $3,
         refresh_token_sealed = COALESCE($4, refresh_token_sealed),
         token_type = COALESCE($5, token_type), scope = COALESCE($6, scope), expires_at = $7,
         refresh_token_expires_at = CASE WHEN $4::text IS NULL THEN refresh_token_expires_at ELSE $8 END,
         updated_at = $9, last_refreshed_at = $9, last_error_code = NULL, last_error_message = NULL,
         last_error_at = NULL, version = version + 1, next_refresh_at = $10, refresh_failures = 0,
         lease_owner = NULL, lease_expires_at = NULL
       WHERE id = $1 AND version = $2 AND status = 'active' RETURNING ${SEALED_COLUMNS}`,
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
    return rows[0] ? toSealed(rows[0]) : null;
  }

  async markNeedsReauth(id: string, expectedVersion: number, error: Omit<ConnectionError, 'at'>): Promise<ConnectionRecord | null> {
    return this.updateOne(
      `UPDATE connections SET status = 'needs_reauth', last_error_code = $3, last_error_message = $4, last_error_at = $5,
         updated_at = $5, version = version + 1, next_refresh_at = NULL, lease_owner = NULL, lease_expires_at = NULL
       WHERE id = $1 AND version = $2 AND status = 'active' RETURNING ${RECORD_COLUMNS}`,
      [id, expectedVersion, error.code, error.message, this.clock.now()],
    );
  }

  async recordRefreshFailure(id: string, expectedVersion: number, error: Omit<ConnectionError, 'at'>, retryAt: Date | null): Promise<boolean> {
    const [, count] = await this.dataSource.query<[unknown, number]>(
      `UPDATE connections SET last_error_code = $3, last_error_message = $4, last_error_at = $5, updated_at = $5,
         refresh_failures = refresh_failures + 1, next_refresh_at = COALESCE($6, next_refresh_at),
         lease_owner = NULL, lease_expires_at = NULL
       WHERE id = $1 AND version = $2 AND status = 'active'`,
      [id, expectedVersion, error.code, error.message, this.clock.now(), retryAt],
    );
    return count > 0;
  }

  async markRevoked(id: string): Promise<ConnectionRecord | null> {
    return this.updateOne(
      `UPDATE connections SET status = 'revoked', access_token_sealed = NULL, refresh_token_sealed = NULL,
         expires_at = NULL, refresh_token_expires_at = NULL, updated_at = $2, version = version + 1,
         next_refresh_at = NULL, lease_owner = NULL, lease_expires_at = NULL
       WHERE id = $1 RETURNING ${RECORD_COLUMNS}`,
      [id, this.clock.now()],
    );
  }

  async markRevokedIfUnchanged(id: string, expectedVersion: number): Promise<ConnectionRecord | null> {
    return this.updateOne(
      `UPDATE connections SET status = 'revoked', access_token_sealed = NULL, refresh_token_sealed = NULL,
         expires_at = NULL, refresh_token_expires_at = NULL, updated_at = $3, version = version + 1,
         next_refresh_at = NULL, lease_owner = NULL, lease_expires_at = NULL
       WHERE id = $1 AND version = $2 RETURNING ${RECORD_COLUMNS}`,
      [id, expectedVersion, this.clock.now()],
    );
  }

  async list(filter: ConnectionFilter, cursor: string | null, limit: number): Promise<ConnectionPage> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.provider) {
      params.push(filter.provider);
      where.push(`provider = $${params.length}`);
    }
    if (filter.status) {
      params.push(filter.status);
      where.push(`status = $${params.length}`);
    }
    const after = decodeCursor(cursor);
    if (after) {
      params.push(after[0], after[1]);
      where.push(`(account, provider) > ($${params.length - 1}, $${params.length})`);
    }
    params.push(limit + 1);
    const rows: ConnectionRow[] = await this.dataSource.query(
      `SELECT ${RECORD_COLUMNS} FROM connections ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY account, provider LIMIT $${params.length}`,
      params,
    );
    const items = rows.slice(0, limit).map(toRecord);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.account, last.provider) : null };
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

  private sealTokens(id: string, tokens: TokenSet): { access: string; refresh: string | null } {
    const access = this.cipher.seal(tokens.accessToken, SealContexts.connectionToken(id, 'access_token'));
    const refresh = tokens.refreshToken ? this.cipher.seal(tokens.refreshToken, SealContexts.connectionToken(id, 'refresh_token')) : null;
    return { access, refresh };
  }

  private open(id: string, sealed: string, field: 'access_token' | 'refresh_token'): string {
    try {
      return this.cipher.open(sealed, SealContexts.connectionToken(id, field));
    } catch (error) {
      if (error instanceof TokenDecryptError) throw new ConnectionUnreadableError(id, error.kid ?? safeKeyId(sealed), error.reason);
      throw error;
    }
  }

  private async one(sql: string, params: unknown[]): Promise<ConnectionRecord | null> {
    const rows: ConnectionRow[] = await this.dataSource.query(sql, params);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  private async updateOne(sql: string, params: unknown[]): Promise<ConnectionRecord | null> {
    const [rows] = await this.dataSource.query<[ConnectionRow[], number]>(sql, params);
    return rows[0] ? toRecord(rows[0]) : null;
  }
}

function toRecord(row: ConnectionRow): ConnectionRecord {
  return {
    id: row.id,
    account: row.account,
    provider: row.provider,
    status: row.status,
    tokenType: row.token_type,
    scope: row.scope,
    expiresAt: row.expires_at,
    refreshTokenExpiresAt: row.refresh_token_expires_at,
    hasRefreshToken: row.has_refresh_token,
    identity: row.identity,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    connectedAt: row.connected_at,
    lastRefreshedAt: row.last_refreshed_at,
    lastUsedAt: row.last_used_at,
    lastError: row.last_error_code
      ? { code: row.last_error_code, message: row.last_error_message ?? '', at: row.last_error_at ?? row.updated_at }
      : null,
    version: row.version,
    nextRefreshAt: row.next_refresh_at,
    refreshFailures: row.refresh_failures,
  };
}

function toSealed(row: ConnectionRow): SealedConnection {
  return { record: toRecord(row), sealedAccessToken: row.access_token_sealed ?? null, sealedRefreshToken: row.refresh_token_sealed ?? null };
}

function safeKeyId(sealed: string): string | undefined {
  try {
    return sealedKeyId(sealed);
  } catch {
    return undefined;
  }
}

function encodeCursor(account: string, provider: string): string {
  return Buffer.from(JSON.stringify([account, provider])).toString('base64url');
}

function decodeCursor(cursor: string | null): [string, string] | null {
  if (!cursor) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'string')) return value as [string, string];
  } catch {
    // fall through
  }
  throw new InvalidCursorError();
}
