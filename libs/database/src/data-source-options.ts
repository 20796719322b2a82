import { MIGRATIONS } from '@app/migrations';
import type { PostgresConnectionOptions } from 'typeorm/driver/postgres/PostgresConnectionOptions';

export const MIGRATIONS_TABLE = 'schema_migrations';

/**
 * One place that says how the broker talks to Postgres; the app, the CLI and the tests share it.
 * `poolSize` is the most connections the pool opens (the broker passes DATABASE_POOL_SIZE from
 * its config); without it pg's own default applies, plenty for a CLI run or a test.
 */
export function dataSourceOptions(
  url: string,
  { poolSize, ...overrides }: Partial<PostgresConnectionOptions> & { poolSize?: number } = {},
): PostgresConnectionOptions {
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
      ...(poolSize === undefined ? {} : { max: poolSize }),
      connectionTimeoutMillis: 5_000,
      // A probe or request must not hang on a dead server: fail fast, the pool reconnects.
      query_timeout: 15_000,
      keepAlive: true,
    },
    ...overrides,
  };
}
