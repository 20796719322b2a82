/**
 * What the rest of the broker sees of a connection. ConnectionRecord never holds a token;
 * ConnectionWithTokens (plaintext) is only produced by ConnectionRepository.unseal.
 */
export enum ConnectionStatus {
  Active = 'active',
  NeedsReauth = 'needs_reauth',
  Revoked = 'revoked',
  Error = 'error',
}

export interface ProviderIdentity {
  id?: string;
  name?: string;
  email?: string;
  company?: string;
}

export interface ConnectionError {
  code: string;
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
