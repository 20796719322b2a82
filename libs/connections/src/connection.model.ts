/**
 * What the rest of the broker sees of a connection. ConnectionRecord never holds a token;
 * ConnectionWithTokens (plaintext) is only produced by ConnectionSealer.unseal.
 */
export enum ConnectionStatus {
  Active = 'active',
  NeedsReauth = 'needs_reauth',
  Revoked = 'revoked',
}

/**
 * Why the last refresh of a connection failed, as stored in `last_error_code` and shown to
 * admins. InvalidGrant and RefreshTokenExpired come with needs_reauth and end retries; the others
 * leave the connection active with a time to try again.
 */
export enum ConnectionErrorCode {
  /** The provider refused the refresh token: the user must connect again. */
  InvalidGrant = 'invalid_grant',
  /** The stored refresh token is past its expiry, so the provider was not asked. */
  RefreshTokenExpired = 'refresh_token_expired',
  /** The provider refused the broker's client credentials: a configuration error, not the user's. */
  InvalidClient = 'invalid_client',
  /** The connection's provider has no settings on this broker. */
  ProviderNotConfigured = 'provider_not_configured',
  /** 429, 5xx, a timeout or no answer: transient, retried with backoff. */
  ProviderUnavailable = 'provider_unavailable',
  /** Any other refusal of the refresh (e.g. 400 invalid_request): retried with backoff. */
  RefreshRejected = 'refresh_rejected',
  /** The stored refresh token cannot be opened with the key ring. */
  TokenUnreadable = 'token_unreadable',
}

export interface ProviderIdentity {
  id?: string;
  name?: string;
  email?: string;
  company?: string;
}

export interface ConnectionError {
  code: ConnectionErrorCode;
  message: string;
  at: Date;
}

export interface ConnectionRecord {
  id: string;
  account: string;
  provider: string;
  status: ConnectionStatus;
  tokenType: string | null;
  scope: string | null;
  expiresAt: Date | null;
  refreshTokenExpiresAt: Date | null;
  hasRefreshToken: boolean;
  identity: ProviderIdentity | null;
  createdAt: Date;
  updatedAt: Date;
  connectedAt: Date;
  lastRefreshedAt: Date | null;
  lastUsedAt: Date | null;
  lastError: ConnectionError | null;
  /** Incremented by every write that changes tokens or status: the fence for refresh writes. */
  version: number;
  nextRefreshAt: Date | null;
  refreshFailures: number;
}

/** A record plus its sealed token values, as cached by the token read path. Opaque outside this library. */
export interface SealedConnection {
  readonly record: ConnectionRecord;
  readonly sealedAccessToken: string | null;
  readonly sealedRefreshToken: string | null;
}

export interface ConnectionWithTokens extends ConnectionRecord {
  accessToken: string;
  refreshToken: string | null;
}

/** Tokens as a provider issued them, normalised. */
export interface TokenSet {
  accessToken: string;
  refreshToken?: string | null;
  tokenType?: string | null;
  scope?: string | null;
  /** null: the token does not expire. */
  expiresAt: Date | null;
  refreshTokenExpiresAt?: Date | null;
}

export interface ConnectionFilter {
  provider?: string;
  status?: ConnectionStatus;
}

export interface ConnectionPage {
  items: ConnectionRecord[];
  /** Opaque; pass back to get the next page. null on the last page. */
  nextCursor: string | null;
}
