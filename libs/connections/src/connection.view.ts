import { AuthMode, ConnectionErrorCode, ConnectionRecord, ConnectionStatus } from './connection.model';

/**
 * What the admin API and webhook payloads show of a connection. Built field by field from a
 * ConnectionRecord (which holds no token) rather than spread from it, so a column added later
 * cannot leak here unseen. The admin API's ConnectionViewDto documents each field.
 */
export interface ConnectionView {
  account: string;
  provider: string;
  status: ConnectionStatus;
  authMode: AuthMode;
  expiresAt: string | null;
  refreshTokenExpiresAt: string | null;
  hasRefreshToken: boolean;
  scope: string | null;
  connectedAt: string;
  updatedAt: string;
  lastRefreshedAt: string | null;
  lastUsedAt: string | null;
  nextRefreshAt: string | null;
  refreshFailures: number;
  lastError: { code: string; message: string; at: string } | null;
  identity: { id?: string; name?: string; email?: string; company?: string } | null;
}

/**
 * `nowMs`: an API key past its expiry is shown as needs_reauth (credential_expired) at once,
 * before the sweep has flagged the row, as the token read answers it.
 */
export function toConnectionView(record: ConnectionRecord, nowMs: number = Date.now()): ConnectionView {
  const expired = record.authMode === AuthMode.ApiKey && record.status === ConnectionStatus.Active && record.expiresAt !== null && record.expiresAt.getTime() <= nowMs;
  return {
    account: record.account,
    provider: record.provider,
    status: expired ? ConnectionStatus.NeedsReauth : record.status,
    authMode: record.authMode,
    expiresAt: iso(record.expiresAt),
    refreshTokenExpiresAt: iso(record.refreshTokenExpiresAt),
    hasRefreshToken: record.hasRefreshToken,
    scope: record.scope,
    connectedAt: record.connectedAt.toISOString(),
    updatedAt: record.updatedAt.toISOString(),
    lastRefreshedAt: iso(record.lastRefreshedAt),
    lastUsedAt: iso(record.lastUsedAt),
    nextRefreshAt: iso(record.nextRefreshAt),
    refreshFailures: record.refreshFailures,
    lastError: expired
      ? { code: ConnectionErrorCode.CredentialExpired, message: `the API key expired at ${record.expiresAt!.toISOString()}`, at: record.expiresAt!.toISOString() }
      : record.lastError
        ? { code: record.lastError.code, message: record.lastError.message, at: record.lastError.at.toISOString() }
        : null,
    identity: record.identity ? identityView(record.identity) : null,
  };
}

function identityView(identity: NonNullable<ConnectionRecord['identity']>): NonNullable<ConnectionView['identity']> {
  const view: NonNullable<ConnectionView['identity']> = {};
  for (const key of ['id', 'name', 'email', 'company'] as const) {
    const value: unknown = identity[key];
    if (typeof value === 'string' || typeof value === 'number') view[key] = String(value);
  }
  return view;
}

function iso(value: Date | null): string | null {
  return value ? value.toISOString() : null;
}
