import { AppConfig } from '@app/config';
import { ConnectionRepository } from '@app/connections';
import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { CachedConnection } from './cached-connection';

const CHANNEL = 'connection_changed';
/**
 * Each replica NOTIFYs itself on this channel through the pool, and must hear itself back on its
 * listener: proof that the LISTEN connection still delivers (guarantee 9). A half-open TCP
 * connection raises no error; without this, a stalled listener would keep the cache trusted.
 */
const HEARTBEAT_CHANNEL = 'connection_cache_heartbeat';
const HEARTBEAT_INTERVAL_MS = 1_000;
/** Silence for this long and the cache is bypassed and the listener replaced. */
export const LISTENER_SILENCE_LIMIT_MS = 3_000;
/**
 * A safety net only: every change the broker makes bumps the row's version, and that NOTIFY
 * arrives within milliseconds. This bounds how long a hand edit that bypasses the trigger can go
 * unseen. Each expiry is a query and a decryption: at 60 s, 10,000 hot accounts cost 167 reloads a
 * second per replica (visible as PostgreSQL CPU in `npm run bench`); at 5 minutes, 33.
 */
const ENTRY_TTL_MS = 5 * 60_000;
const RECONNECT_DELAY_MS = 1_000;
const LISTEN_TIMEOUT_MS = 5_000;

interface Entry {
  connections: CachedConnection[];
  loadedAt: number;
}

/**
 * Connections by account for the token read path: a hit costs no database round trip. Every
 * replica LISTENs on `connection_changed` (a trigger fires it whenever a row's tokens or status
 * change) and drops that account. While the listener is down, or has not delivered this
 * replica's own heartbeat within LISTENER_SILENCE_LIMIT_MS, the cache is bypassed, so a replica
 * never serves a row it could have missed a change to for longer than that. At most
 * TOKEN_CACHE_MAX_ACCOUNTS accounts are kept (the oldest tenth goes when it is full); 0 turns
 * caching off.
 *
 * The heartbeat runs on real (monotonic) time, not the injected clock: it measures whether a
 * socket delivers, which a simulated clock must neither hasten nor hold off.
 */
@Injectable()
export class ConnectionCache implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('ConnectionCache');
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<CachedConnection[]>>();
  private readonly maxAccounts: number;
  private listener?: Client;
  private listening = false;
  private stopped = false;
  /** Names this replica's heartbeats, so it counts only its own round trips. */
  private readonly heartbeatId = randomBytes(8).toString('hex');
  private heartbeatTimer?: NodeJS.Timeout;
  /** Monotonic time the listener last delivered this replica's heartbeat (or was connected). */
  private lastHeardMs = 0;
  /** Bumped on every invalidation, so a load that raced one is not cached. */
  private generation = 0;

  constructor(
    private readonly connections: ConnectionRepository,
    private readonly dataSource: DataSource,
    config: AppConfig,
  ) {
    this.maxAccounts = config.tokenCacheMaxAccounts;
  }

  async onModuleInit(): Promise<void> {
    if (this.maxAccounts === 0) return;
    await this.listen().catch((error: Error) => {
      this.logger.warn(`cannot LISTEN for connection changes yet (${error.message}); reading through until it works`);
      this.scheduleReconnect();
    });
    this.heartbeatTimer = setInterval(() => this.heartbeat(), HEARTBEAT_INTERVAL_MS).unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.heartbeatTimer);
    await this.listener?.end().catch(() => undefined);
  }


  /**
   * The account's connections when this replica holds them and may trust them, else undefined.
   * Synchronous on purpose: a hit is the token read's hot path, and an await there costs a
   * promise and a microtask turn per request.
   */
  cached(account: string, now: number): CachedConnection[] | undefined {
    if (!this.listening) return undefined;
    const entry = this.entries.get(account);
    return entry !== undefined && now - entry.loadedAt < ENTRY_TTL_MS ? entry.connections : undefined;
  }

  /** Reads the account's connections from the database (one query per account at a time) and caches them. */
  load(account: string, now: number): Promise<CachedConnection[]> {
    const pending = this.loading.get(account);
    if (pending) return pending;
    const generation = this.generation;
    const load = this.connections
      .findSealedByAccount(account)
      .then((rows) => {
        const connections = rows.map((row) => new CachedConnection(row));
        if (this.listening && generation === this.generation) this.store(account, { connections, loadedAt: now });
        return connections;
      })
      .finally(() => this.loading.delete(account));
    this.loading.set(account, load);
    return load;
  }

  /** Drops an account at once, e.g. after this replica's own write, without waiting for its NOTIFY. */
  invalidate(account: string): void {
    this.generation++;
    this.entries.delete(account);
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

  /**
   * Once a second: distrust a listener that has gone silent, then send the next heartbeat. The
   * heartbeat goes through the pool, so it also fails (and the silence grows) while the
   * database is unreachable, and reads then go to the database, which answers for itself.
   */
  private heartbeat(): void {
    const client = this.listener;
    if (client && this.listening && performance.now() - this.lastHeardMs > LISTENER_SILENCE_LIMIT_MS) {
      this.logger.warn(
        `connection-change listener delivered nothing for ${LISTENER_SILENCE_LIMIT_MS / 1000} s (a stalled connection?); cache bypassed, reconnecting`,
      );
      this.dropListener(client);
      destroySocket(client);
    }
    if (!this.listener) return;
    this.dataSource.query(`SELECT pg_notify($1, $2)`, [HEARTBEAT_CHANNEL, this.heartbeatId]).catch(() => undefined);
  }

  private async listen(): Promise<void> {
    const options = this.dataSource.options as { url?: string };
    // Timeouts: a connect or LISTEN that hangs (a stalled network) must fail so the next attempt can run.
    const client = new Client({
      connectionString: options.url,
      application_name: 'token-broker-listener',
      keepAlive: true,
      connectionTimeoutMillis: LISTEN_TIMEOUT_MS,
      query_timeout: LISTEN_TIMEOUT_MS,
    });
    client.on('notification', (message) => {
      if (message.channel === CHANNEL && message.payload) this.invalidate(message.payload);
      else if (message.channel === HEARTBEAT_CHANNEL && message.payload === this.heartbeatId && this.listener === client) this.lastHeardMs = performance.now();
    });
    client.on('error', (error) => {
      this.logger.warn(`connection-change listener lost (${error.message}); cache bypassed until it is back`);
      this.dropListener(client);
    });
    client.on('end', () => this.dropListener(client));
    await client.connect();
    await client.query(`LISTEN ${CHANNEL}; LISTEN ${HEARTBEAT_CHANNEL}`);
    this.listener = client;
    this.lastHeardMs = performance.now();
    // Anything cached before now may have missed a notification.
    this.generation++;
    this.entries.clear();
    this.listening = true;
  }

  private dropListener(client: Client): void {
    if (this.listener !== client) return;
    this.listening = false;
    this.listener = undefined;
    this.entries.clear();
    void client.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    setTimeout(() => {
      if (this.stopped || this.listening) return;
      this.listen().catch(() => this.scheduleReconnect());
    }, RECONNECT_DELAY_MS).unref();
  }
}

/**
 * Ends a stalled client's socket at once: `end()` waits for the server to acknowledge, which a
 * stalled connection never does, and would leave the socket open for good. pg keeps the socket
 * on its connection object; it has no public way to destroy it.
 */
function destroySocket(client: Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}
