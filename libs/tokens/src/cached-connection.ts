import { AuthMode, ConnectionError, ConnectionStatus, SealedConnection } from '@app/connections';

/**
 * What the token read path keeps of one connection: enough to decide whether its token can be
 * served and to answer, nothing more (no refresh token, no identity, no timestamps it does not
 * use), so that 100,000 cached accounts fit in a replica's memory budget.
 *
 * The access token stays sealed until its first read, then is kept opened: the key ring lives
 * in the same heap, so keeping it sealed in memory would protect nothing a heap reader could not
 * undo, and opening it costs more than the rest of a cached read. At rest, in the database, it is
 * always sealed (guarantee 1). The measurements behind both: docs/decisions/0006-read-path-cache.md.
 *
 * An account's connections are a chain (`next`), which ConnectionCache keeps by its first: no
 * array and no wrapper object per account (about 80 bytes each, 8 MB with 100,000 cached).
 */
export class CachedConnection {
  readonly id: string;
  readonly account: string;
  readonly provider: string;
  readonly status: ConnectionStatus;
  readonly authMode: AuthMode;
  /** With a static credential, the email presented beside the key (Copper). */
  readonly credentialUserEmail: string | null;
  readonly tokenType: string;
  readonly scope: string | null;
  readonly expiresAtMs: number | null;
  /** When the last failed refresh said to try again (backoff); null without a failure. */
  readonly nextRefreshAtMs: number | null;
  readonly lastError: Pick<ConnectionError, 'code' | 'message'> | null;
  /** The token derived from this one (Copernica's REST v4 JWT) and its plan; null while there is neither. */
  readonly derived: CachedDerivedToken | null;
  /** The last-used time this replica knows was written (or is queued): see UsageRecorder. */
  lastUsedMs: number;
  /** When it was read from the database: ConnectionCache's safety-net expiry counts from here. */
  readonly loadedAtMs: number;
  /** The account's next connection, when it has several (in the order the database listed them). */
  next: CachedConnection | null = null;
  /** Kept until the first read opens the access token, then dropped. */
  private sealed: SealedConnection | null;
  private accessToken: string | null = null;

  constructor(sealed: SealedConnection, loadedAtMs: number) {
    const record = sealed.record;
    this.loadedAtMs = loadedAtMs;
    this.id = record.id;
    this.account = record.account;
    this.provider = shared(record.provider);
    this.status = shared(record.status) as ConnectionStatus;
    this.authMode = shared(record.authMode) as AuthMode;
    this.credentialUserEmail = record.credentialUserEmail;
    this.tokenType = shared(record.tokenType ?? 'Bearer');
    this.scope = record.scope === null ? null : shared(record.scope);
    this.expiresAtMs = record.expiresAt ? record.expiresAt.getTime() : null;
    // Only a failure's retry time is read here (backoff); a planned refresh time would cost every entry a boxed number.
    this.nextRefreshAtMs = record.lastError && record.nextRefreshAt ? record.nextRefreshAt.getTime() : null;
    this.lastError = record.lastError ? { code: record.lastError.code, message: record.lastError.message } : null;
    this.lastUsedMs = record.lastUsedAt ? record.lastUsedAt.getTime() : 0;
    this.derived =
      sealed.sealedDerivedToken !== null || record.derivedRefreshAt !== null
        ? new CachedDerivedToken(record.id, sealed.sealedDerivedToken, record.derivedExpiresAt?.getTime() ?? null, record.derivedRefreshAt?.getTime() ?? null)
        : null;
    this.sealed = sealed;
  }

  /** The plaintext access token (or API key); `open` (ConnectionSealer.openServed) decrypts it the first time. */
  accessTokenVia(open: (sealed: SealedConnection) => string): string {
    if (this.accessToken === null) {
      this.accessToken = open(this.sealed!);
      this.sealed = null;
    }
    return this.accessToken;
  }
}

/**
 * A connection's derived token as the read path keeps it: sealed until its first read, then
 * opened (as the access token is), with when it expires and when it is to be minted again (or,
 * after a failure, retried). Only connections that have one carry this object.
 */
export class CachedDerivedToken {
  private token: string | null = null;

  constructor(
    readonly connectionId: string,
    private sealed: string | null,
    /** null while none is stored (a mint failed before the first succeeded). */
    readonly expiresAtMs: number | null,
    readonly refreshAtMs: number | null,
  ) {}

  /** Whether a token is stored that stays valid at least until `untilMs`. */
  validUntil(untilMs: number): boolean {
    return this.expiresAtMs !== null && (this.sealed !== null || this.token !== null) && this.expiresAtMs > untilMs;
  }

  /** The plaintext token; `open` (ConnectionSealer.openDerivedToken) decrypts it the first time. Only when one is stored. */
  tokenVia(open: (connectionId: string, sealed: string) => string): string {
    if (this.token === null) {
      this.token = open(this.connectionId, this.sealed!);
      this.sealed = null;
    }
    return this.token;
  }
}

/** The chain that starts at `first` as a list (null: none). */
export function connectionsFrom(first: CachedConnection | null): CachedConnection[] {
  const connections: CachedConnection[] = [];
  for (let connection = first; connection !== null; connection = connection.next) connections.push(connection);
  return connections;
}

/**
 * Provider ids, statuses, token types and scopes repeat across nearly every row: one copy of
 * each instead of one per cached connection. Bounded, in case some provider makes them unique.
 */
const SHARED_STRINGS = new Map<string, string>();
const MAX_SHARED_STRINGS = 1_000;

function shared(value: string): string {
  const known = SHARED_STRINGS.get(value);
  if (known !== undefined) return known;
  if (SHARED_STRINGS.size < MAX_SHARED_STRINGS) SHARED_STRINGS.set(value, value);
  return value;
}
