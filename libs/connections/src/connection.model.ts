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
 * What a connection holds: an OAuth grant (tokens from the connect dance) or a static credential
 * (an API key an admin or the end user entered). One (account, provider) holds one of them.
 */
export enum AuthMode {
  OAuth2 = 'oauth2',
  ApiKey = 'api_key',
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
  /** A static credential (API key) is past its expiresAt: someone must enter a new one. */
  CredentialExpired = 'credential_expired',
  /** The provider's authentication service refused the stored token when asked for a derived token (401/403). */
  AuthenticationRefused = 'authentication_refused',
  /** Minting the derived token failed in a way that may pass (429, 5xx, no answer, an answer without a token): retried with backoff. */
  DerivedTokenUnavailable = 'derived_token_unavailable',
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
  authMode: AuthMode;
  /** With a static credential, the email the provider wants beside the key (Copper's X-PW-UserEmail); not a secret. */
  credentialUserEmail: string | null;
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
  /** Whether a derived token (Copernica's REST v4 JWT) is stored (never the token). */
  hasDerivedToken: boolean;
  derivedExpiresAt: Date | null;
  /** When the derived token is to be minted again, or retried after a failure. */
  derivedRefreshAt: Date | null;
}

/** A record plus its sealed token values, as cached by the token read path. Opaque outside this library. */
export interface SealedConnection {
  readonly record: ConnectionRecord;
  readonly sealedAccessToken: string | null;
  readonly sealedRefreshToken: string | null;
  /** The static credential (API key) of an `api_key` connection. */
  readonly sealedCredential: string | null;
  /** The token derived from the stored one (Copernica's REST v4 JWT), when one was minted. */
  readonly sealedDerivedToken: string | null;
}

/** A connection opened: for an `api_key` connection, `accessToken` is its API key and there is no refresh token. */
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
