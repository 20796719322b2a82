import { DataSource } from 'typeorm';

/** Arbitrary, fixed: every replica takes this advisory lock before migrating. */
const MIGRATION_LOCK_ID = 7_201_604_331;

/**
 * Runs pending migrations at start-up. Replicas starting together serialise on a Postgres
 * advisory lock, so exactly one applies each migration and the others find nothing to do.
 */
export async function runPendingMigrations(dataSource: DataSource): Promise<string[]> {
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
    const applied = await dataSource.runMigrations({ transaction: 'each' });
    return applied.map((m) => m.name);
  } finally {
    await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_ID]).catch(() => undefined);
    await runner.release();
  }
}

/** Names of migrations this build knows that the database has not applied. */
export async function pendingMigrations(dataSource: DataSource): Promise<string[]> {
  const known = dataSource.migrations.map((m) => m.name ?? m.constructor.name);
  const rows: Array<{ name: string }> = await dataSource.query(`SELECT name FROM ${dataSource.options.migrationsTableName ?? 'migrations'}`);
  const applied = new Set(rows.map((r) => r.name));
  return known.filter((name) => !applied.has(name));
}
