import { AppConfig } from '@app/config';
import { ConnectionRepository } from '@app/connections';
import { DatabaseNotifications } from '@app/database';
import { Injectable, OnModuleInit } from '@nestjs/common';
import { CachedConnection } from './cached-connection';

/** Fired by a trigger whenever a row's tokens or status change; the payload is the account. */
const CHANNEL = 'connection_changed';
/**
 * A safety net only: every change the broker makes to a row's tokens or status fires the trigger,
 * and that NOTIFY arrives within milliseconds. This bounds how long a hand edit that bypasses the
 * trigger can go unseen; each expiry costs every hot account a query and a decryption, so it is
 * kept long (docs/decisions/0006-read-path-cache.md).
 */
const ENTRY_TTL_MS = 5 * 60_000;

/** An account the database has no connection for, as cached: asked again, it is a 404 without a query. */
class NoConnection {
  constructor(readonly loadedAtMs: number) {}
}

/** An account as cached: its first connection, the others chained to it, or NoConnection. */
type Entry = CachedConnection | NoConnection;

/**
 * Connections by account for the token read path: a hit costs no database round trip. Every
 * replica listens on `connection_changed` (DatabaseNotifications) and drops that account. While
 * the listener is not live (down, or not delivering its heartbeat: see DatabaseNotifications)
 * the cache is bypassed and emptied, so a replica never serves a row it could have missed a
 * change to for longer than LISTENER_SILENCE_LIMIT_MS (guarantee 9). At most
 * TOKEN_CACHE_MAX_ACCOUNTS accounts are kept (the oldest tenth goes when it is full); 0 turns
 * caching off.
 */
@Injectable()
export class ConnectionCache implements OnModuleInit {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<CachedConnection | null>>();
  private readonly maxAccounts: number;
  /** Mirrors DatabaseNotifications.live, kept here so a hit reads one field of this object. */
  private trusted = false;
  /** Bumped on every invalidation, so a load that raced one is not cached. */
  private generation = 0;

  constructor(
    private readonly connections: ConnectionRepository,
    private readonly notifications: DatabaseNotifications,
    config: AppConfig,
  ) {
    this.maxAccounts = config.tokenCacheMaxAccounts;
  }

  async onModuleInit(): Promise<void> {
    if (this.maxAccounts === 0) return;
    this.notifications.onLiveChange((live) => {
      // Going down, or coming back: anything cached may have missed a notification.
      this.generation++;
      this.entries.clear();
      this.trusted = live;
    });
    await this.notifications.subscribe(CHANNEL, (account) => {
      if (account !== '') this.invalidate(account);
    });
  }

  /**
   * The account's connections when this replica holds them and may trust them: the first,
   * chained to the others by `next`, or null when it has none. undefined when not cached.
   * Synchronous on purpose: a hit is the token read's hot path, and an await there costs a
   * promise and a microtask turn per request (docs/decisions/0004-token-read-sync-or-promise.md).
   */
  cached(account: string, now: number): CachedConnection | null | undefined {
    if (!this.trusted) return undefined;
    const entry = this.entries.get(account);
    if (entry === undefined || now - entry.loadedAtMs >= ENTRY_TTL_MS) return undefined;
    return entry instanceof CachedConnection ? entry : null;
  }

  /** Reads the account's connections from the database (one query per account at a time) and caches them; the first, chained, or null. */
  load(account: string, now: number): Promise<CachedConnection | null> {
    const pending = this.loading.get(account);
    if (pending) return pending;
    const generation = this.generation;
    const load = this.connections
      .findSealedByAccount(account)
      .then((rows) => {
        let first: CachedConnection | null = null;
        for (let i = rows.length - 1; i >= 0; i--) {
          const connection = new CachedConnection(rows[i], now);
          connection.next = first;
          first = connection;
        }
        // Keyed by the rows' own account string, or a copy of the caller's, never the caller's
        // itself: that is usually a slice of the request URL, and as a map key it would keep the
        // whole URL alive with the entry (about 80 bytes an account, 8 MB of heap with 100,000
        // cached; as much as the URL is long for a padded one). Account ids are ASCII.
        const key = first?.account ?? Buffer.from(account, 'latin1').toString('latin1');
        if (this.trusted && generation === this.generation) this.store(key, first ?? new NoConnection(now));
        return first;
      })
      .finally(() => {
        if (this.loading.get(account) === load) this.loading.delete(account);
      });
    this.loading.set(account, load);
    return load;
  }

  /** Drops an account at once, e.g. after this replica's own write, without waiting for its NOTIFY. */
  invalidate(account: string): void {
    this.generation++;
    this.entries.delete(account);
    // A load already running may have read the row before the change: later readers start their own.
    this.loading.delete(account);
  }

  private store(account: string, entry: Entry): void {
    if (this.entries.size >= this.maxAccounts) {
      // Maps iterate in insertion order: drop the oldest tenth.
      let drop = Math.ceil(this.maxAccounts / 10);
      for (const key of this.entries.keys()) {
        if (drop-- <= 0) break;
        this.entries.delete(key);
      }
    }
    this.entries.set(account, entry);
  }
}
