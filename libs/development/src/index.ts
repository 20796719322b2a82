/**
 * Development-only code: the embedded PostgreSQL server (with its process checks and, as root,
 * the `postgres` system user it creates) for machines without DATABASE_URL. The production path
 * never loads it: the broker reaches it through one dynamic import taken only when DATABASE_URL
 * is unset, and lint forbids static imports of @app/development from apps/ and libs/. Test
 * support, the benchmark and the CLI scripts import it directly.
 */
export * from './embedded-postgres-server';
