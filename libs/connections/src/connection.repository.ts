import type { StaticCredential } from '@app/providers';
import { ConnectionRecord, ProviderIdentity, SealedConnection, TokenSet } from './connection.model';
import type { RevocationReason } from './lifecycle-events';

export interface SaveConnectedInput {
  account: string;
  provider: string;
  tokens: TokenSet;
  identity: ProviderIdentity | null;
  nextRefreshAt: Date | null;
}

export interface SaveStaticCredentialInput {
  account: string;
  provider: string;
  credential: StaticCredential;
  /** When the provider lets the key expire (Copy.ai: after 12 months); null: it does not. */
  expiresAt: Date | null;
  /** What the provider's check said about the key's owner, when it was checked. */
  identity: ProviderIdentity | null;
  /**
   * The version of the row this replaces, as the caller read it (and revoked its grant at the
   * provider), or null when the caller found no row. The write lands only if that still holds.
   */
  replacing: number | null;
}

/**
 * Connections as the connect flow, the token read path and admin revocation see them: stored on
 * connect, found, revoked, their use recorded. The abstract class is the DI token;
 * PostgresConnectionRepository implements it. Sealed values go out as SealedConnection and only
 * ConnectionSealer opens them; the refresher's reads and writes are ConnectionRefreshRepository's.
 */
export abstract class ConnectionRepository {
  /**
   * Creates or replaces the connection for (account, provider) after a successful connect:
   * active, errors cleared, connection.connected recorded in the same transaction.
   */
  abstract saveConnected(input: SaveConnectedInput): Promise<ConnectionRecord>;

  /**
   * Creates or replaces the connection for (account, provider) with a static credential: active,
   * `api_key`, any OAuth tokens erased in the same statement, errors cleared, planned for the
   * sweep at the key's expiry. Returns null, writing nothing, when the row is not what
   * `replacing` says any more (it appeared, changed or went): the caller looks again.
   */
  abstract saveStaticCredential(input: SaveStaticCredentialInput): Promise<ConnectionRecord | null>;

  abstract findOne(account: string, provider: string): Promise<ConnectionRecord | null>;
  abstract findByAccount(account: string): Promise<ConnectionRecord[]>;

  /** The row with its sealed values, as it is now. */
  abstract findSealedById(id: string): Promise<SealedConnection | null>;

  /** Every connection of an account with its sealed values (the read-path cache holds these). */
  abstract findSealedByAccount(account: string): Promise<SealedConnection[]>;

  /**
   * Erases both tokens (or the static credential) and marks the connection revoked, recording
   * connection.revoked with `reason` in the same statement (unless it was revoked already).
   */
  abstract markRevoked(id: string, reason: RevocationReason): Promise<ConnectionRecord | null>;

  /**
   * markRevoked, fenced: erases both tokens and marks the connection revoked only if the row
   * still has `expectedVersion` (the tokens the caller revoked at the provider are still the
   * stored ones). Returns null, writing nothing, when the row moved on or is gone.
   */
  abstract markRevokedIfUnchanged(id: string, expectedVersion: number, reason: RevocationReason): Promise<ConnectionRecord | null>;

  /** Batched last-used timestamps (the read path never writes per request). */
  abstract recordUsage(lastUsedById: ReadonlyMap<string, Date>): Promise<void>;
}
