import { ConnectionRecord, ProviderIdentity, SealedConnection, TokenSet } from './connection.model';

export interface SaveConnectedInput {
  account: string;
  provider: string;
  tokens: TokenSet;
  identity: ProviderIdentity | null;
  nextRefreshAt: Date | null;
}

/**
 * Connections as the connect flow, the token read path and admin revocation see them: stored on
 * connect, found, revoked, their use recorded. The abstract class is the DI token;
 * PostgresConnectionRepository implements it. Sealed values go out as SealedConnection and only
 * ConnectionSealer opens them; the refresher's reads and writes are ConnectionRefreshRepository's.
 */
export abstract class ConnectionRepository {
  /** Creates or replaces the connection for (account, provider) after a successful connect: active, errors cleared. */
  abstract saveConnected(input: SaveConnectedInput): Promise<ConnectionRecord>;

  abstract findOne(account: string, provider: string): Promise<ConnectionRecord | null>;
  abstract findByAccount(account: string): Promise<ConnectionRecord[]>;

  /** The row with its sealed values, as it is now. */
  abstract findSealedById(id: string): Promise<SealedConnection | null>;

  /** Every connection of an account with its sealed values (the read-path cache holds these). */
  abstract findSealedByAccount(account: string): Promise<SealedConnection[]>;

  /** Erases both tokens and marks the connection revoked. */
  abstract markRevoked(id: string): Promise<ConnectionRecord | null>;

  /**
   * markRevoked, fenced: erases both tokens and marks the connection revoked only if the row
   * still has `expectedVersion` (the tokens the caller revoked at the provider are still the
   * stored ones). Returns null, writing nothing, when the row moved on or is gone.
   */
  abstract markRevokedIfUnchanged(id: string, expectedVersion: number): Promise<ConnectionRecord | null>;

  /** Batched last-used timestamps (the read path never writes per request). */
  abstract recordUsage(lastUsedById: ReadonlyMap<string, Date>): Promise<void>;
}
