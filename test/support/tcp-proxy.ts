/**
 * A TCP proxy for fault tests: sits between a broker and Postgres (or any TCP server) on
 * 127.0.0.1 and can, on command,
 * - freeze chosen connections: bytes stop flowing both ways while both sockets stay open, as
 *   with a half-open connection behind a dead NAT entry (no error, no close, keepalives answered);
 * - cut every connection and refuse new ones (a database outage), until `restore()`.
 * A connection is chosen by what its client sent first: a Postgres startup message carries the
 * user, database and `application_name` in plain text.
 */
import { createConnection, createServer, Server, Socket } from 'node:net';

interface ProxiedConnection {
  client: Socket;
  upstream: Socket;
  /** The first bytes the client sent, as latin1 text (the Postgres startup message). */
  opening: string;
  frozen: boolean;
}

export class TcpProxy {
  private readonly connections = new Set<ProxiedConnection>();
  private refusing = false;
  /** New connections whose opening contains one of these are frozen as soon as it is seen. */
  private readonly freezeNew = new Set<string>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** Listens on 127.0.0.1 (an ephemeral port) and forwards to `target`. */
  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (typeof address !== 'object' || address === null) throw new Error('proxy has no port');
    const proxy = new TcpProxy(server, address.port);
    server.on('connection', (client) => proxy.accept(client, target));
    return proxy;
  }

  /** Starts a proxy in front of the server a Postgres URL names, and returns the URL that goes through it. */
  static async forDatabase(databaseUrl: string): Promise<{ proxy: TcpProxy; url: string }> {
    const url = new URL(databaseUrl);
    const proxy = await TcpProxy.start({ host: url.hostname || '127.0.0.1', port: Number(url.port || 5432) });
    url.hostname = '127.0.0.1';
    url.port = String(proxy.port);
    return { proxy, url: url.toString() };
  }

  /** Open connections whose opening bytes contain `text`. */
  count(text = ''): number {
    return [...this.connections].filter((c) => c.opening.includes(text)).length;
  }

  /** Silently stalls every open connection whose opening contains `text` (and new ones, until restore). Returns how many were open. */
  freeze(text: string): number {
    this.freezeNew.add(text);
    let frozen = 0;
    for (const connection of this.connections) {
      if (connection.opening.includes(text)) {
        connection.frozen = true;
        frozen++;
      }
    }
    return frozen;
  }

  /** Destroys every connection and refuses new ones (an outage) until `restore()`. */
  cutAll(): void {
    this.refusing = true;
    for (const connection of this.connections) {
      connection.client.destroy();
      connection.upstream.destroy();
    }
    this.connections.clear();
  }

  /** Accepts new connections again and stops freezing new ones; frozen connections stay frozen. */
  restore(): void {
    this.refusing = false;
    this.freezeNew.clear();
  }

  async close(): Promise<void> {
    for (const connection of this.connections) {
      connection.client.destroy();
      connection.upstream.destroy();
    }
    this.connections.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket, target: { host: string; port: number }): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    const upstream = createConnection(target);
    const connection: ProxiedConnection = { client, upstream, opening: '', frozen: false };
    this.connections.add(connection);
    const drop = (): void => {
      this.connections.delete(connection);
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (chunk: Buffer) => {
      if (connection.opening.length < 512) {
        connection.opening += chunk.toString('latin1');
        for (const text of this.freezeNew) if (connection.opening.includes(text)) connection.frozen = true;
      }
      if (!connection.frozen) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!connection.frozen) client.write(chunk);
    });
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
  }
}
