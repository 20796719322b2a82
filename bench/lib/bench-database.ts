/**
 * The benchmark's own database: a fresh embedded PostgreSQL in a temp dir, or a fresh database
 * created on the server named by BENCH_DATABASE_URL (and dropped afterwards), so every run
 * starts from an empty, freshly migrated schema.
 */
import { dataSourceOptions, runPendingMigrations } from '@app/database';
import { EmbeddedPostgresServer } from '@app/development';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { Cleanup } from './cleanup';

export interface BenchDatabase {
  url: string;
  kind: 'embedded' | 'external';
  /** The embedded server's data directory (also used as the broker's DATA_DIR). */
  dataDir: string;
  /** The embedded postmaster's pid (to measure its CPU); undefined for an external server. */
  pid(): number | undefined;
}

const DATABASE_NAME = 'token_broker_bench';

export async function openBenchDatabase(cleanup: Cleanup, serverUrl: string | undefined): Promise<BenchDatabase> {
  const dataDir = mkdtempSync(join(tmpdir(), 'token-broker-bench-'));
  cleanup.add(`remove ${dataDir}`, () => rmSync(dataDir, { recursive: true, force: true }));
  if (serverUrl) {
    const name = `${DATABASE_NAME}_${randomBytes(4).toString('hex')}`;
    await adminQuery(serverUrl, `CREATE DATABASE "${name}"`);
    cleanup.add(`drop database ${name}`, () => adminQuery(serverUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
    const url = new URL(serverUrl);
    url.pathname = `/${name}`;
    return { url: url.toString(), kind: 'external', dataDir, pid: () => undefined };
  }
  const server = new EmbeddedPostgresServer({ dataDir, database: DATABASE_NAME });
  cleanup.add('stop embedded PostgreSQL', () => server.stop());
  const url = await server.start();
  return { url, kind: 'embedded', dataDir, pid: () => server.pid };
}

/** Applies the broker's migrations with the broker's own runner (the broker then finds nothing to do). */
export async function migrate(url: string): Promise<string[]> {
  const dataSource = new DataSource(dataSourceOptions(url));
  await dataSource.initialize();
  try {
    return await runPendingMigrations(dataSource);
  } finally {
    await dataSource.destroy();
  }
}

async function adminQuery(serverUrl: string, sql: string): Promise<void> {
  const client = new Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
