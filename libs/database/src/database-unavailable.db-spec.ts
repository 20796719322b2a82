import { AddressInfo, createServer, Server, Socket } from 'node:net';
import { Client, Pool, PoolClient } from 'pg';
import { DataSource } from 'typeorm';
import { TcpProxy } from '../../../test/support/tcp-proxy';
import { testDatabaseUrl } from '../../../test/support/test-database';
import { dataSourceOptions } from './data-source-options';
import { describeDatabaseError, isDatabaseUnavailable } from './database-unavailable';

/** The error a promise rejects with (fails the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

/** A TCP server on 127.0.0.1 whose every connection is handed to `onConnection`. */
async function tcpServer(onConnection: (socket: Socket) => void): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A Postgres ErrorResponse message, as a server sends it when it refuses a connection. */
function postgresError(sqlstate: string, message: string): Buffer {
  const fields = Buffer.from(`SFATAL\0VFATAL\0C${sqlstate}\0M${message}\0\0`, 'latin1');
  const header = Buffer.alloc(5);
  header.write('E', 0, 'latin1');
  header.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([header, fields]);
}

const client = (port: number, extra: Record<string, unknown> = {}): Client => new Client({ host: '127.0.0.1', port, user: 'broker', database: 'broker', ...extra });

describe('isDatabaseUnavailable', () => {
  describe('recognises what pg and TypeORM throw when the database cannot be reached', () => {
    it('nothing listens on the port (ECONNREFUSED)', async () => {
      const closed = await tcpServer(() => undefined);
      await closed.close();
      const error = await rejection(client(closed.port).connect());
      expect((error as { code?: string }).code).toBe('ECONNREFUSED');
      expect(isDatabaseUnavailable(error)).toBe(true);
    });

    it('the connection is dropped during start-up (no code, "Connection terminated unexpectedly")', async () => {
      const dropper = await tcpServer((socket) => socket.destroy());
      try {
        const error = await rejection(client(dropper.port).connect());
        expect(isDatabaseUnavailable(error)).toBe(true);
      } finally {
        await dropper.close();
      }
    });

    it('the server accepts but never answers (connectionTimeoutMillis), through a client and through a pool', async () => {
      const silent = await tcpServer(() => undefined);
      const pool = new Pool({ host: '127.0.0.1', port: silent.port, user: 'broker', database: 'broker', connectionTimeoutMillis: 200 });
      try {
        expect(isDatabaseUnavailable(await rejection(client(silent.port, { connectionTimeoutMillis: 200 }).connect()))).toBe(true);
        expect(isDatabaseUnavailable(await rejection(pool.query('SELECT 1')))).toBe(true);
      } finally {
        await pool.end();
        await silent.close();
      }
    });

    it('the pool has no client free within connectionTimeoutMillis', async () => {
      const pool = new Pool({ connectionString: testDatabaseUrl(), max: 1, connectionTimeoutMillis: 200 });
      // Opening the one client may itself take longer than 200 ms on a busy machine: try until it is held.
      let held: PoolClient | undefined;
      for (let attempt = 0; !held && attempt < 50; attempt++) held = await pool.connect().catch(() => undefined);
      if (!held) throw new Error('could not open the pool\'s one client');
      try {
        const error = await rejection(pool.query('SELECT 1'));
        expect((error as Error).message).toMatch(/timeout/);
        expect(isDatabaseUnavailable(error)).toBe(true);
      } finally {
        held.release();
        await pool.end();
      }
    });

    it('the server refuses a connection while starting up (57P03 cannot_connect_now)', async () => {
      const starting = await tcpServer((socket) => socket.once('data', () => socket.end(postgresError('57P03', 'the database system is starting up'))));
      try {
        const error = await rejection(client(starting.port).connect());
        expect((error as { code?: string }).code).toBe('57P03');
        expect(isDatabaseUnavailable(error)).toBe(true);
      } finally {
        await starting.close();
      }
    });

    it('the server ends a session by administrator command (57P01 admin_shutdown)', async () => {
      const victim = new Client({ connectionString: testDatabaseUrl() });
      const killer = new Client({ connectionString: testDatabaseUrl() });
      // An idle client hears of it as an 'error' event; its next query fails as "not queryable".
      const notified = new Promise<unknown>((resolve) => victim.on('error', resolve));
      await victim.connect();
      await killer.connect();
      try {
        const { rows } = await victim.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        await killer.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
        const event = await notified;
        expect((event as { code?: string }).code).toBe('57P01');
        expect(isDatabaseUnavailable(event)).toBe(true);
        expect(isDatabaseUnavailable(await rejection(victim.query('SELECT 1')))).toBe(true);
      } finally {
        await killer.end();
        await victim.end().catch(() => undefined);
      }
    });

    it('TypeORM queries while every connection is cut and new ones are refused', async () => {
      const { proxy, url } = await TcpProxy.forDatabase(testDatabaseUrl());
      const dataSource = new DataSource({ ...dataSourceOptions(url), extra: { ...dataSourceOptions(url).extra, connectionTimeoutMillis: 1_000 } });
      try {
        await dataSource.initialize();
        await dataSource.query('SELECT 1');
        proxy.cutAll();
        for (let i = 0; i < 3; i++) expect(isDatabaseUnavailable(await rejection(dataSource.query('SELECT 1')))).toBe(true);
        proxy.restore();
        await expect(dataSource.query('SELECT 1 AS one')).resolves.toEqual([{ one: 1 }]);
      } finally {
        await dataSource.destroy().catch(() => undefined);
        await proxy.close();
      }
    });

    it('an error wrapping one of these, as cause or AggregateError member', async () => {
      const closed = await tcpServer(() => undefined);
      await closed.close();
      const refused = await rejection(client(closed.port).connect());
      expect(isDatabaseUnavailable(new Error('loading the account failed', { cause: refused }))).toBe(true);
      expect(isDatabaseUnavailable(new AggregateError([new Error('other'), refused], 'all addresses failed'))).toBe(true);
    });
  });

  describe('leaves every other error alone', () => {
    let dataSource: DataSource;
    beforeAll(async () => {
      dataSource = await new DataSource(dataSourceOptions(testDatabaseUrl())).initialize();
    });
    afterAll(async () => {
      await dataSource?.destroy();
    });

    it('a query the server rejects (syntax error, unknown table, division by zero)', async () => {
      expect(isDatabaseUnavailable(await rejection(dataSource.query('SELEC 1')))).toBe(false);
      expect(isDatabaseUnavailable(await rejection(dataSource.query('SELECT * FROM no_such_table')))).toBe(false);
      expect(isDatabaseUnavailable(await rejection(dataSource.query('SELECT 1 / 0')))).toBe(false);
    });

    it('errors that are not the database’s', () => {
      expect(isDatabaseUnavailable(new Error('boom'))).toBe(false);
      expect(isDatabaseUnavailable(new Error('Connection terminated unexpectedly, said the provider', {}))).toBe(false);
      expect(isDatabaseUnavailable(Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ERR_SOMETHING' }))).toBe(false);
      expect(isDatabaseUnavailable(undefined)).toBe(false);
      expect(isDatabaseUnavailable(null)).toBe(false);
      expect(isDatabaseUnavailable('ECONNREFUSED')).toBe(false);
    });

    it('does not loop on an error that causes itself', () => {
      const error = new Error('odd') as Error & { cause?: unknown };
      error.cause = error;
      expect(isDatabaseUnavailable(error)).toBe(false);
    });
  });
});

describe('describeDatabaseError', () => {
  it('gives code and message for the log, without a connection URL', async () => {
    const closed = await tcpServer(() => undefined);
    await closed.close();
    const refused = await rejection(client(closed.port).connect());
    expect(describeDatabaseError(refused)).toBe(`ECONNREFUSED connect ECONNREFUSED 127.0.0.1:${closed.port}`);
    expect(describeDatabaseError(new Error('bad postgres://user:pw@db:5432/x here'))).toBe('bad <database url> here');
    expect(describeDatabaseError(undefined)).toBe('undefined');
  });
});
