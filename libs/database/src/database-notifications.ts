import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { DataSource } from 'typeorm';

/** DI token: the URL of the database the process uses (DATABASE_URL or the embedded server's). */
export const DATABASE_URL = Symbol('DATABASE_URL');

/**
 * This process NOTIFYs itself on this channel through the pool every HEARTBEAT_INTERVAL_MS and
 * must hear itself back on the LISTEN connection: proof that the connection still delivers. A
 * half-open TCP connection raises no error, so without this a stalled listener would look alive.
 */
const HEARTBEAT_CHANNEL = 'listener_heartbeat';
const HEARTBEAT_INTERVAL_MS = 1_000;
/** Silence for this long and the listener counts as dead: subscribers are told, and it is replaced. */
export const LISTENER_SILENCE_LIMIT_MS = 3_000;
const RECONNECT_DELAY_MS = 1_000;
/** A connect or LISTEN that hangs (a stalled network) fails after this, so the next attempt can run. */
const LISTEN_TIMEOUT_MS = 5_000;
const CHANNEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export type NotificationHandler = (payload: string) => void;
export type LivenessHandler = (live: boolean) => void;

/**
 * The process's one LISTEN connection to Postgres, shared by every feature that reacts to
 * NOTIFY. `live` holds only while the connection is up and has delivered this process's own
 * heartbeat within LISTENER_SILENCE_LIMIT_MS; subscribers learn through `onLiveChange` when it
 * stops (they must then stop trusting anything NOTIFY keeps fresh) and when it is back (anything
 * may have changed meanwhile). A dead connection is destroyed and replaced.
 *
 * Liveness runs on real (monotonic) time, never the injected clock: it measures whether a socket
 * delivers, which a simulated clock must neither hasten nor hold off.
 */
@Injectable()
export class DatabaseNotifications implements OnApplicationShutdown {
  private readonly logger = new Logger('DatabaseNotifications');
  private readonly handlers = new Map<string, NotificationHandler[]>();
  private readonly livenessHandlers: LivenessHandler[] = [];
  /** Names this process's heartbeats, so it counts only its own round trips. */
  private readonly heartbeatId = randomBytes(8).toString('hex');
  private client?: Client;
  private isLive = false;
  private lastHeardMs = 0;
  private started?: Promise<void>;
  private heartbeatTimer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    @Inject(DATABASE_URL) private readonly url: string,
    private readonly dataSource: DataSource,
  ) {}

  /** Whether the listener delivers right now. */
  get live(): boolean {
    return this.isLive;
  }

  /**
   * Calls `handler` with the payload of every NOTIFY on `channel`, from the moment the listener
   * is live. Starts the listener on first use; resolves once the first connection attempt is over
   * (whether or not it succeeded: it keeps retrying in the background).
   */
  async subscribe(channel: string, handler: NotificationHandler): Promise<void> {
    if (!CHANNEL_NAME.test(channel)) throw new Error(`invalid channel name "${channel}"`);
    const known = this.handlers.get(channel);
    if (known) known.push(handler);
    else {
      this.handlers.set(channel, [handler]);
      if (this.client && this.isLive) await this.client.query(`LISTEN ${channel}`).catch(() => this.lose(this.client!, 'LISTEN failed'));
    }
    await this.start();
  }

  /**
   * `handler(false)` when the listener stops delivering, `handler(true)` when a new one is live;
   * a handler registered while the listener is already live hears `true` at once.
   */
  onLiveChange(handler: LivenessHandler): void {
    this.livenessHandlers.push(handler);
    if (this.isLive) handler(true);
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.heartbeatTimer);
    const client = this.client;
    this.client = undefined;
    this.setLive(false);
    await client?.end().catch(() => undefined);
  }

  private start(): Promise<void> {
    this.started ??= this.connect().then(
      () => {
        this.heartbeatTimer = setInterval(() => this.heartbeat(), HEARTBEAT_INTERVAL_MS).unref();
      },
      (error: Error) => {
        this.logger.warn(`cannot LISTEN yet (${error.message}); subscribers read through until it works`);
        this.heartbeatTimer = setInterval(() => this.heartbeat(), HEARTBEAT_INTERVAL_MS).unref();
        this.scheduleReconnect();
      },
    );
    return this.started;
  }

  private async connect(): Promise<void> {
    const client = new Client({
      connectionString: this.url,
      application_name: 'token-broker-listener',
      keepAlive: true,
      connectionTimeoutMillis: LISTEN_TIMEOUT_MS,
      query_timeout: LISTEN_TIMEOUT_MS,
    });
    client.on('notification', (message) => {
      if (this.client !== client) return;
      if (message.channel === HEARTBEAT_CHANNEL) {
        if (message.payload === this.heartbeatId) this.lastHeardMs = performance.now();
        return;
      }
      for (const handler of this.handlers.get(message.channel) ?? []) handler(message.payload ?? '');
    });
    client.on('error', (error) => this.lose(client, `connection lost (${error.message})`));
    client.on('end', () => this.lose(client, 'connection ended'));
    await client.connect();
    const channels = [HEARTBEAT_CHANNEL, ...this.handlers.keys()];
    await client.query(channels.map((channel) => `LISTEN ${channel}`).join('; '));
    if (this.stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.lastHeardMs = performance.now();
    this.setLive(true);
  }

  /**
   * Once a second: give up on a listener that has gone silent, then send the next heartbeat.
   * The heartbeat goes through the pool, so while the database is unreachable it fails too, the
   * silence grows, and subscribers stop trusting what they keep.
   */
  private heartbeat(): void {
    const client = this.client;
    if (!client) return;
    if (this.isLive && performance.now() - this.lastHeardMs > LISTENER_SILENCE_LIMIT_MS) {
      this.lose(client, `delivered nothing for ${LISTENER_SILENCE_LIMIT_MS / 1000} s (a stalled connection?)`);
      destroySocket(client);
      return;
    }
    this.dataSource.query(`SELECT pg_notify($1, $2)`, [HEARTBEAT_CHANNEL, this.heartbeatId]).catch(() => undefined);
  }

  private lose(client: Client, why: string): void {
    if (this.client !== client) return;
    this.logger.warn(`listener ${why}; subscribers bypass what NOTIFY keeps fresh until it is back`);
    this.client = undefined;
    this.setLive(false);
    void client.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private setLive(live: boolean): void {
    if (this.isLive === live) return;
    this.isLive = live;
    for (const handler of this.livenessHandlers) handler(live);
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    setTimeout(() => {
      if (this.stopped || this.client) return;
      this.connect().catch(() => this.scheduleReconnect());
    }, RECONNECT_DELAY_MS).unref();
  }
}

/**
 * Ends a stalled client's socket at once: `end()` waits for the server to acknowledge, which a
 * stalled connection never does, and would leave the socket open for good. pg keeps the socket
 * on its connection object and offers no public way to destroy it.
 */
function destroySocket(client: Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}
