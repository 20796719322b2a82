/**
 * Shared bootstrap for one-off commands (`npm run keys:rotate`, ...): the broker's own
 * configuration, a database connection (the embedded server when DATABASE_URL is unset), a
 * clean shutdown, and failures reported as one line with a non-zero exit code.
 *
 * No Nest application: a command needs none of its HTTP, scheduling or logging machinery.
 * Nothing here prints a secret: not the database URL (it may hold a password), not a key.
 */
import 'reflect-metadata';
import { AppConfig, ConfigError, loadConfig } from '@app/config';
import { dataSourceOptions, MIGRATIONS_TABLE, pendingMigrations } from '@app/database';
import { EmbeddedPostgresServer } from '@app/development';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataSource } from 'typeorm';

/** A failure the operator can act on; `exitCode` follows sysexits where one fits. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export const EXIT_CONFIG = 78; // EX_CONFIG, as the broker uses for a bad environment
export const EXIT_TEMPFAIL = 75; // EX_TEMPFAIL: try again later

export interface CliContext {
  config: AppConfig;
  dataSource: DataSource;
  /** Where the data lives, for humans: `external postgres host:port/db` or `embedded under DATA_DIR`. */
  databaseLabel: string;
  close(): Promise<void>;
}

/**
 * Loads the configuration the broker would load from this environment and connects to its
 * database. Refuses (CliError) to start the embedded server while a broker already runs it.
 */
export async function openCliContext(): Promise<CliContext> {
  const { config, notices } = loadConfig(process.env);
  for (const notice of notices) console.error(`note: ${notice}`);

  let embedded: EmbeddedPostgresServer | undefined;
  let url = config.databaseUrl;
  let databaseLabel: string;
  if (url) {
    databaseLabel = `external PostgreSQL ${describeUrl(url)}`;
  } else {
    refuseIfEmbeddedDatabaseInUse(config.dataDir);
    if (!existsSync(join(config.dataDir, 'postgres', 'PG_VERSION'))) {
      throw new CliError(
        `there is no embedded database under DATA_DIR=${config.dataDir} (no broker has run with it); set DATA_DIR to the broker's, or DATABASE_URL`,
      );
    }
    embedded = new EmbeddedPostgresServer({ dataDir: config.dataDir });
    url = await embedded.start();
    databaseLabel = `embedded PostgreSQL under ${join(config.dataDir, 'postgres')}`;
  }

  const dataSource = new DataSource(dataSourceOptions(url, { poolSize: config.databasePoolSize }));
  try {
    await dataSource.initialize();
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
  return {
    config,
    dataSource,
    databaseLabel,
    close: async () => {
      try {
        await dataSource.destroy();
      } finally {
        await embedded?.stop();
      }
    },
  };
}

/**
 * Starting the embedded server while a broker runs it would shut the broker's database down
 * (EmbeddedPostgresServer treats a live postmaster as an orphan to stop). A live
 * `postmaster.pid` means someone is using it: refuse and say how to proceed.
 */
export function refuseIfEmbeddedDatabaseInUse(dataDir: string): void {
  const lockFile = join(dataDir, 'postgres', 'postmaster.pid');
  if (!existsSync(lockFile)) return;
  const lines = readFileSync(lockFile, 'utf8').split('\n');
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isLivePostgres(pid)) return; // stale: the server's start clears it
  const port = Number(lines[3]);
  const known = Number.isInteger(port) && port > 0;
  throw new CliError(
    `the embedded PostgreSQL under DATA_DIR=${dataDir} is already running (pid ${pid}${known ? `, port ${port}` : ''}), most likely for a broker; ` +
      `starting it here would shut that one down. Stop the broker first, or set DATABASE_URL to that server ` +
      `(postgres://postgres:<password in ${join(dataDir, 'postgres.password')}>@127.0.0.1:${known ? port : '<port>'}/token_broker) and run again`,
  );
}

/** The command must see the schema its code expects; applying migrations is the broker's or migration:run's job. */
export async function requireMigrationsApplied(dataSource: DataSource): Promise<void> {
  const [{ exists }] = await dataSource.query<Array<{ exists: boolean }>>(`SELECT to_regclass($1) IS NOT NULL AS exists`, [MIGRATIONS_TABLE]);
  const pending = exists ? await pendingMigrations(dataSource) : dataSource.migrations.map((m) => m.name ?? m.constructor.name);
  if (pending.length > 0) {
    throw new CliError(
      `the database has ${pending.length} pending migration(s) (${pending.join(', ')}); start the broker once or run npm run migration:run first`,
    );
  }
}

/**
 * Runs a command's body: success exits 0; any failure prints one line `<command> failed: <reason>`
 * on stderr and sets a non-zero exit code. Stack traces only with DEBUG set.
 */
export function runCli(command: string, body: () => Promise<void>): void {
  body().then(
    () => {
      process.exitCode = 0;
    },
    (error: unknown) => {
      console.error(`${command} failed: ${oneLine(reason(error))}`);
      if (process.env.DEBUG && error instanceof Error && error.stack) console.error(error.stack);
      process.exitCode = error instanceof CliError ? error.exitCode : error instanceof ConfigError ? EXIT_CONFIG : 1;
    },
  );
}

function reason(error: unknown): string {
  if (error instanceof ConfigError) return `invalid configuration: ${error.problems.join('; ')}`;
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** host:port/database, never the user or password. */
function describeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}${parsed.port ? `:${parsed.port}` : ''}${parsed.pathname}`;
  } catch {
    return '(DATABASE_URL)';
  }
}

function isLivePostgres(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: alive, owned by another user (as root the server runs as `postgres`, but a broker
    // run by another account could hold it).
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('postgres');
  } catch {
    return true; // no /proc (macOS): trust the pid file
  }
}
