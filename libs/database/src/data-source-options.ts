import { MIGRATIONS } from '@app/migrations';
import type { PostgresConnectionOptions } from 'typeorm/driver/postgres/PostgresConnectionOptions';

export const MIGRATIONS_TABLE = 'schema_migrations';

/** One place that says how the broker talks to Postgres; the app, the CLI and the tests share it. */
export function dataSourceOptions(url: string, overrides: Partial<PostgresConnectionOptions> = {}): PostgresConnectionOptions {
  return {
    type: 'postgres',
    url,
    migrations: MIGRATIONS,
    migrationsTableName: MIGRATIONS_TABLE,
    migrationsTransactionMode: 'each',
    // Schema changes only through migrations/, never from entity metadata.
    synchronize: false,
    migrationsRun: false,
    applicationName: 'token-broker',
    extra: {
      max: Number(process.env.DATABASE_POOL_SIZE ?? 10),
      connectionTimeoutMillis: 5_000,
      // A probe or request must not hang on a dead server: fail fast, the pool reconnects.
      query_timeout: 15_000,
      keepAlive: true,
    },
    ...overrides,
  };
}
