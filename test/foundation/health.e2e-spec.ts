/**
 * Kubernetes' view of the broker: /health/live answers while the process runs; /health/ready
 * goes 503 when the database is gone or behind on migrations, and comes back by itself.
 */
import { dataSourceOptions, MIGRATIONS_TABLE, runPendingMigrations } from '@app/database';
import { EmbeddedPostgresServer } from '@app/development';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { freePort, startTestBroker, TestBroker } from '../support/test-broker';

jest.setTimeout(120_000);

interface Probe {
  status: number;
  body: Record<string, unknown>;
}

async function probe(broker: TestBroker, path: string): Promise<Probe> {
  const response = await broker.call(path);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** Polls until `accept` holds, returning the accepted answer; fails with the last one seen. */
async function pollProbe(broker: TestBroker, path: string, accept: (p: Probe) => boolean, timeoutMs = 30_000): Promise<Probe> {
  const deadline = Date.now() + timeoutMs;
  let last: Probe | undefined;
  for (;;) {
    last = await probe(broker, path).catch((error: Error) => ({ status: 0, body: { fetchError: error.message } }));
    if (accept(last)) return last;
    if (Date.now() > deadline) throw new Error(`${path} never reached the expected state; last answer: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function withClient<T>(url: string, use: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

describe('health probes', () => {
  describe('with the database up', () => {
    let broker: TestBroker;

    beforeAll(async () => {
      broker = await startTestBroker();
    });

    afterAll(async () => {
      await broker?.close();
    });

    it('/health/live answers 200 {status: ok} without credentials', async () => {
      const live = await probe(broker, '/health/live');
      expect(live).toEqual({ status: 200, body: { status: 'ok' } });
    });

    it('/health/ready answers 200 with the database and the key ring up', async () => {
      const ready = await probe(broker, '/health/ready');
      expect(ready.status).toBe(200);
      expect(ready.body).toMatchObject({
        status: 'ok',
        info: { database: { status: 'up' }, keyRing: { status: 'up', activeKeyId: 'test1' } },
      });
    });

    it('needs no key, and a bogus key does not close the probes', async () => {
      const response = await broker.call('/health/ready', { headers: { authorization: 'Bearer not-a-key' } });
      expect(response.status).toBe(200);
    });
  });

  describe('with a database of its own that misbehaves', () => {
    let dataDir: string;
    let postgres: EmbeddedPostgresServer;
    let databaseUrl: string;
    let broker: TestBroker;

    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'tb-health-pg-'));
      // A fixed port, so that the server comes back where the broker's pool looks for it.
      postgres = new EmbeddedPostgresServer({ dataDir, port: await freePort() });
      databaseUrl = await postgres.start();
      const dataSource = new DataSource(dataSourceOptions(databaseUrl));
      await dataSource.initialize();
      try {
        await runPendingMigrations(dataSource);
      } finally {
        await dataSource.destroy();
      }
      broker = await startTestBroker({ DATABASE_URL: databaseUrl });
    });

    afterAll(async () => {
      await broker?.close();
      await postgres?.stop();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    });

    it('is ready to begin with', async () => {
      expect((await probe(broker, '/health/ready')).status).toBe(200);
    });

    it('answers 503 naming a migration that is not applied, and 200 once it is', async () => {
      const [row] = await withClient(databaseUrl, async (client) => {
        const { rows } = await client.query<{ id: number; timestamp: string; name: string }>(
          `DELETE FROM ${MIGRATIONS_TABLE} WHERE id = (SELECT max(id) FROM ${MIGRATIONS_TABLE}) RETURNING id, timestamp, name`,
        );
        return rows;
      });
      expect(row).toBeDefined();
      try {
        const notReady = await pollProbe(broker, '/health/ready', (p) => p.status === 503);
        expect(notReady.body).toMatchObject({ statusCode: 503, error: 'not_ready' });
        expect(notReady.body.message).toEqual(expect.stringContaining(row.name));
        expect(notReady.body.message).toMatch(/migration/);
        expect((await probe(broker, '/health/live')).status).toBe(200);
      } finally {
        await withClient(databaseUrl, (client) =>
          client.query(`INSERT INTO ${MIGRATIONS_TABLE} (id, timestamp, name) VALUES ($1, $2, $3)`, [row.id, row.timestamp, row.name]),
        );
      }
      await pollProbe(broker, '/health/ready', (p) => p.status === 200);
    });

    it('answers 503 while Postgres is down, stays live, and recovers without a restart', async () => {
      await postgres.stop();

      const notReady = await pollProbe(broker, '/health/ready', (p) => p.status === 503);
      expect(notReady.body).toMatchObject({ statusCode: 503, error: 'not_ready' });
      expect(notReady.body.message).toEqual(expect.stringContaining('database'));
      // The probe explains itself without leaking the database password.
      expect(JSON.stringify(notReady.body)).not.toContain(decodeURIComponent(new URL(databaseUrl).password));
      expect(await probe(broker, '/health/live')).toEqual({ status: 200, body: { status: 'ok' } });

      await postgres.start();
      const ready = await pollProbe(broker, '/health/ready', (p) => p.status === 200);
      expect(ready.body).toMatchObject({ status: 'ok', info: { database: { status: 'up' } } });
    });
  });
});
