/**
 * The real Postgres every database-backed test uses. Global setup picks it once per run:
 * TEST_DATABASE_URL or DATABASE_URL when set (a fresh `token_broker_test` database is created
 * beside the one named), otherwise the embedded server under .data/test-postgres.
 */
import { dataSourceOptions, runPendingMigrations } from '@app/database';
import { EmbeddedPostgresServer } from '@app/development';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { DataSource } from 'typeorm';

export const TEST_DATABASE_NAME = 'token_broker_test';
const RESOLVED_URL_VARIABLE = 'TOKEN_BROKER_TEST_DATABASE_URL';

export function testDatabaseUrl(): string {
  const url = process.env[RESOLVED_URL_VARIABLE];
  if (!url) throw new Error(`${RESOLVED_URL_VARIABLE} is unset: run the tests through jest (global setup provides the database)`);
  return url;
}

export async function prepareTestDatabase(): Promise<{ url: string; embedded?: EmbeddedPostgresServer }> {
  const explicit = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL;
  let url: string;
  let embedded: EmbeddedPostgresServer | undefined;
  if (explicit) {
    url = await recreateDatabaseBeside(explicit, TEST_DATABASE_NAME);
  } else {
    // A private cluster per run: concurrent runs on one machine never share (or stop) a server.
    embedded = new EmbeddedPostgresServer({ dataDir: mkdtempSync(join(tmpdir(), 'token-broker-test-')) });
    await embedded.start();
    url = await embedded.createDatabase(TEST_DATABASE_NAME, { recreate: true });
  }
  const dataSource = new DataSource(dataSourceOptions(url));
  await dataSource.initialize();
  try {
    await runPendingMigrations(dataSource);
  } finally {
    await dataSource.destroy();
  }
  process.env[RESOLVED_URL_VARIABLE] = url;
  return { url, embedded };
}

async function recreateDatabaseBeside(serverUrl: string, name: string): Promise<string> {
  const admin = new Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A DataSource on the test database with the real migrations already applied. */
export async function openTestDataSource(entities: DataSource['options']['entities'] = []): Promise<DataSource> {
  const dataSource = new DataSource({ ...dataSourceOptions(testDatabaseUrl()), entities });
  return dataSource.initialize();
}

/**
 * Empties every table the broker owns (not the migrations table), between tests. A broker still
 * running beside it (its audit writer, webhook dispatcher, usage flush) can hold row locks on one
 * table while it waits for another the TRUNCATE has already locked: Postgres then breaks the
 * deadlock by cancelling one side, sometimes the TRUNCATE, which is simply tried again.
 */
export async function truncateAll(dataSource: DataSource): Promise<void> {
  const rows: Array<{ tablename: string }> = await dataSource.query(
    `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations' ORDER BY tablename`,
  );
  if (rows.length === 0) return;
  const statement = `TRUNCATE ${rows.map((r) => `"${r.tablename}"`).join(', ')} CASCADE`;
  for (let attempt = 1; ; attempt++) {
    try {
      await dataSource.query(statement);
      return;
    } catch (error) {
      const code = (error as { driverError?: { code?: string } }).driverError?.code;
      if (code !== DEADLOCK_DETECTED || attempt >= 5) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20 * attempt));
    }
  }
}

const DEADLOCK_DETECTED = '40P01';
