import {
  ConnectionError,
  ConnectionFilter,
  ConnectionPage,
  ConnectionRecord,
  ConnectionStatus,
  ConnectionWithTokens,
  ProviderIdentity,
  SealedConnection,
  TokenSet,
} from './connection.model';

export interface SaveConnectedInput {
  account: string;
  provider: string;
  tokens: TokenSet;
  identity: ProviderIdentity | null;
  nextRefreshAt: Date | null;
}

export interface SaveRefreshedInput {
  id: string;
  /** The version the refresher read; the write only lands if the row still has it. */
  expectedVersion: number;
  tokens: TokenSet;
  nextRefreshAt: Date | null;
}

/**
 * Where connections and their sealed tokens live. The abstract class is the DI token;
 * TypeormConnectionRepository implements it against Postgres. Plaintext tokens leave it only
 * through `unseal` (and `findWithTokens`, which is `findSealed` + `unseal`).
 */
export abstract class ConnectionRepository {
  /** Creates or replaces the connection for (account, provider) after a successful connect: active, errors cleared. */
  abstract saveConnected(input: SaveConnectedInput): Promise<ConnectionRecord>;

  abstract findOne(account: string, provider: string): Promise<ConnectionRecord | null>;
  abstract findById(id: string): Promise<ConnectionRecord | null>;
  abstract findByAccount(account: string): Promise<ConnectionRecord[]>;

  /** The row with its sealed values, for the read-path cache. */
  abstract findSealed(account: string, provider: string): Promise<SealedConnection | null>;
  abstract findSealedById(id: string): Promise<SealedConnection | null>;

  /** Opens the sealed values. Throws ConnectionUnreadableError naming the connection and key id. */
  abstract unseal(sealed: SealedConnection): ConnectionWithTokens;

  abstract findWithTokens(account: string, provider: string): Promise<ConnectionWithTokens | null>;

  /** Opens only the access token (the read path never needs the refresh token). */
  abstract openAccessToken(sealed: SealedConnection): string;

  /** Every connection of an account with its sealed values (the read-path cache holds these). */
  abstract findSealedByAccount(account: string): Promise<SealedConnection[]>;

  /**
   * Takes the refresh lease on an active connection unless another holder's lease is still
   * running. Returns the row as it is now (with the lease), or null when the lease is held
   * elsewhere or the connection is not active. Leases expire, so a crashed holder blocks
   * nobody for longer than `leaseMs`.
   */
  abstract claimRefreshLease(id: string, owner: string, now: Date, leaseMs: number): Promise<SealedConnection | null>;

  /**
   * The refresh sweep's claim: up to `limit` active connections of `provider` whose refresh is
   * due and unleased, oldest due first, leased to `owner` in one statement. `FOR UPDATE SKIP
   * LOCKED` lets replicas claim side by side without ever taking the same row.
   */
  abstract claimDueForRefresh(provider: string, owner: string, now: Date, leaseMs: number, limit: number): Promise<SealedConnection[]>;

  /** Releases every lease `owner` still holds (graceful shutdown). */
  abstract releaseLeasesOf(owner: string): Promise<number>;

  /** Gives a lease back without writing tokens (nothing to do, or the attempt was abandoned). */
  abstract releaseRefreshLease(id: string, owner: string): Promise<void>;

  /** Whether someone holds a live refresh lease on the row, and its current version and status. */
  abstract refreshState(id: string, now: Date): Promise<{ version: number; status: ConnectionStatus; leased: boolean } | null>;

  /** Fenced: returns null (and writes nothing) when the row's version moved on. Releases the lease. */
  abstract saveRefreshed(input: SaveRefreshedInput): Promise<SealedConnection | null>;

  /**
   * The provider refused the grant: the user must connect again. Never retried. Fenced: writes
   * nothing (null) when the row moved past `expectedVersion`, e.g. the user reconnected meanwhile.
   */
  abstract markNeedsReauth(id: string, expectedVersion: number, error: Omit<ConnectionError, 'at'>): Promise<ConnectionRecord | null>;

  /**
   * A refresh failed in a way that may pass; try again at `retryAt`. Tokens stay as they are.
   * Fenced like markNeedsReauth: false when the row moved past `expectedVersion`.
   */
  abstract recordRefreshFailure(id: string, expectedVersion: number, error: Omit<ConnectionError, 'at'>, retryAt: Date | null): Promise<boolean>;

  /** Erases both tokens and marks the connection revoked. */
  abstract markRevoked(id: string): Promise<ConnectionRecord | null>;

  /**
   * markRevoked, fenced: erases both tokens and marks the connection revoked only if the row
   * still has `expectedVersion` (the tokens the caller revoked at the provider are still the
   * stored ones). Returns null, writing nothing, when the row moved on or is gone.
   */
  abstract markRevokedIfUnchanged(id: string, expectedVersion: number): Promise<ConnectionRecord | null>;

  abstract list(filter: ConnectionFilter, cursor: string | null, limit: number): Promise<ConnectionPage>;

  /** Batched last-used timestamps (the read path never writes per request). */
  abstract recordUsage(lastUsedById: ReadonlyMap<string, Date>): Promise<void>;
}
