/**
 * The one mapping between the connections table and ConnectionRecord, shared by every
 * repository here, so the schema is spelled out once for reading.
 */
import { AuthMode, ConnectionErrorCode, ConnectionRecord, ConnectionStatus, SealedConnection } from './connection.model';

/** Columns of a ConnectionRecord (never the sealed values). */
export const RECORD_COLUMNS = `id, account, provider, status, auth_mode, credential_user_email, token_type, scope, expires_at, refresh_token_expires_at,
  (refresh_token_sealed IS NOT NULL) AS has_refresh_token, identity, created_at, updated_at, connected_at,
  last_refreshed_at, last_used_at, last_error_code, last_error_message, last_error_at, version, next_refresh_at,
  refresh_failures, (derived_token_sealed IS NOT NULL) AS has_derived_token, derived_expires_at, derived_refresh_at`;
export const SEALED_COLUMNS = `${RECORD_COLUMNS}, access_token_sealed, refresh_token_sealed, credential_sealed, derived_token_sealed`;

/** A row as RECORD_COLUMNS (and SEALED_COLUMNS, with the sealed values) return it. */
export interface ConnectionRow {
  id: string;
  account: string;
  provider: string;
  status: ConnectionStatus;
  auth_mode: AuthMode;
  credential_user_email: string | null;
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
  last_error_code: ConnectionErrorCode | null;
  last_error_message: string | null;
  last_error_at: Date | null;
  version: number;
  next_refresh_at: Date | null;
  refresh_failures: number;
  has_derived_token: boolean;
  derived_expires_at: Date | null;
  derived_refresh_at: Date | null;
  access_token_sealed?: string | null;
  refresh_token_sealed?: string | null;
  credential_sealed?: string | null;
  derived_token_sealed?: string | null;
}

export function toRecord(row: ConnectionRow): ConnectionRecord {
  return {
    id: row.id,
    account: row.account,
    provider: row.provider,
    status: row.status,
    authMode: row.auth_mode,
    credentialUserEmail: row.credential_user_email,
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
    hasDerivedToken: row.has_derived_token,
    derivedExpiresAt: row.derived_expires_at,
    derivedRefreshAt: row.derived_refresh_at,
  };
}

export function toSealed(row: ConnectionRow): SealedConnection {
  return {
    record: toRecord(row),
    sealedAccessToken: row.access_token_sealed ?? null,
    sealedRefreshToken: row.refresh_token_sealed ?? null,
    sealedCredential: row.credential_sealed ?? null,
    sealedDerivedToken: row.derived_token_sealed ?? null,
  };
}

/** The first row as a record, or null: for statements that select or return at most one row. */
export function firstRecord(rows: ConnectionRow[]): ConnectionRecord | null {
  return rows[0] ? toRecord(rows[0]) : null;
}

/** The first row with its sealed values, or null. */
export function firstSealed(rows: ConnectionRow[]): SealedConnection | null {
  return rows[0] ? toSealed(rows[0]) : null;
}
