import { ConnectionError, ConnectionRecord, ConnectionStatus, SealedConnection, TokenSet } from './connection.model';

export interface SaveRefreshedInput {
  id: string;
  /** The version the refresher read; the write only lands if the row still has it. */
  expectedVersion: number;
  tokens: TokenSet;
  nextRefreshAt: Date | null;
}

export interface SaveDerivedInput {
  id: string;
  /** The version the minter read; the write only lands if the row still has it. */
  expectedVersion: number;
  token: string;
  expiresAt: Date;
  /** When to mint it again (RefreshPlanner). */
  refreshAt: Date;
}

/** What a waiting refresher needs to know of a row without reading its tokens. */
export interface RefreshState {
  version: number;
  status: ConnectionStatus;
  /** Someone holds a refresh lease on the row that has not run out. */
  leased: boolean;
}

/**
 * Connections as the refresher sees them (DESIGN guarantees 3, 8 and 10): refresh leases in the
 * row, and the writes a lease holder makes, each fenced by the row version so a stale writer
 * never lands. The abstract class is the DI token; PostgresConnectionRefreshRepository
 * implements it.
 */
export abstract class ConnectionRefreshRepository {
  /**
   * Takes the refresh lease on an active connection unless another holder's lease is still
   * running. Returns the row as it is now (with the lease), or null when the lease is held
   * elsewhere or the connection is not active. Leases expire, so a crashed holder blocks
   * nobody for longer than `leaseMs`.
   */
  abstract claimRefreshLease(id: string, owner: string, now: Date, leaseMs: number): Promise<SealedConnection | null>;

  /**
   * The refresh sweep's claim: up to `limit` active connections of `provider` whose refresh (of
   * the token, or of its derived token) is due and unleased, oldest due first, leased to `owner` in one statement. `FOR UPDATE SKIP
   * LOCKED` lets replicas claim side by side without ever taking the same row.
   */
  abstract claimDueForRefresh(provider: string, owner: string, now: Date, leaseMs: number, limit: number): Promise<SealedConnection[]>;

  /** Releases every lease `owner` still holds (graceful shutdown). */
  abstract releaseLeasesOf(owner: string): Promise<number>;

  /** Gives a lease back without writing tokens (nothing to do, or the attempt was abandoned). */
  abstract releaseRefreshLease(id: string, owner: string): Promise<void>;

  /** Whether someone holds a live refresh lease on the row, and its current version and status. */
  abstract refreshState(id: string, now: Date): Promise<RefreshState | null>;

  /** Fenced: returns null (and writes nothing) when the row's version moved on. Releases the lease. */
  abstract saveRefreshed(input: SaveRefreshedInput): Promise<SealedConnection | null>;

  /**
   * Stores a freshly minted derived token with its plan, clearing any failure; fenced like
   * saveRefreshed (null when the row moved on). Releases the lease.
   */
  abstract saveDerived(input: SaveDerivedInput): Promise<SealedConnection | null>;

  /**
   * Minting the derived token failed in a way that may pass: try again at `retryAt`. The stored
   * derived token, if any, stays and is served while it lasts. Fenced: false when the row moved on.
   */
  abstract recordDerivedFailure(id: string, expectedVersion: number, error: Omit<ConnectionError, 'at'>, retryAt: Date): Promise<boolean>;

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
}
