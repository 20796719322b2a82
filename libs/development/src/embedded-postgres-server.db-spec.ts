/**
 * The embedded PostgreSQL a developer gets when DATABASE_URL is unset: data survives restarts
 * and the server comes back after a crash (killed postmaster, orphaned postmaster, stale lock).
 * Each test uses its own DATA_DIR, never the shared test server.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { EmbeddedPostgresServer } from './embedded-postgres-server';

jest.setTimeout(180_000);

async function query<T = Record<string, unknown>>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

async function writeNote(url: string, note: string): Promise<void> {
  await query(url, 'CREATE TABLE IF NOT EXISTS notes (body text NOT NULL)');
  await query(url, 'INSERT INTO notes (body) VALUES ($1)', [note]);
}

async function readNotes(url: string): Promise<string[]> {
  const rows = await query<{ body: string }>(url, 'SELECT body FROM notes ORDER BY body');
  return rows.map((r) => r.body);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(what: string, condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function lockFilePid(dataDir: string): number {
  return Number(readFileSync(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
}

describe('EmbeddedPostgresServer', () => {
  let dataDir: string;
  const servers: EmbeddedPostgresServer[] = [];
  const server = (): EmbeddedPostgresServer => {
    const created = new EmbeddedPostgresServer({ dataDir });
    servers.push(created);
    return created;
  };

  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'tb-embedded-pg-'));
  });

  afterEach(async () => {
    for (const s of servers.splice(0)) await s.stop();
  });

  afterAll(() => {
    rmSync(dataDir, { recursive: true, force: true });
  });

  // The tests below share one cluster and run in order: each starts from what the previous left.

  it('initialises a cluster on first start and keeps its data across a clean restart', async () => {
    const first = server();
    const url = await first.start();
    expect(existsSync(join(dataDir, 'postgres', 'PG_VERSION'))).toBe(true);
    await writeNote(url, 'before restart');
    await first.stop();
    expect(first.pid).toBeUndefined();
    expect(existsSync(join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);

    const second = server();
    const again = await second.start();
    expect(await readNotes(again)).toEqual(['before restart']);
  });

  it('starts after the postmaster was killed (SIGKILL) and left its lock file behind', async () => {
    const crashed = server();
    const url = await crashed.start();
    await writeNote(url, 'before crash');
    const pid = lockFilePid(dataDir);
    expect(pid).toBe(crashed.pid);

    process.kill(pid, 'SIGKILL');
    await waitUntil('the killed postmaster is gone', () => !isAlive(pid));
    expect(existsSync(join(dataDir, 'postgres', 'postmaster.pid'))).toBe(true);

    const recovered = server();
    const recoveredUrl = await recovered.start();
    expect(await readNotes(recoveredUrl)).toEqual(['before crash', 'before restart']);
  });

  it('stops an orphaned postmaster still running on the same data directory, then starts', async () => {
    const orphan = server();
    const orphanUrl = await orphan.start();
    await writeNote(orphanUrl, 'from the orphan');
    const orphanPid = orphan.pid as number;

    // A second instance on the same DATA_DIR, as after the broker that owned the first was killed.
    const successor = server();
    const url = await successor.start();
    expect(isAlive(orphanPid)).toBe(false);
    expect(successor.pid).not.toBe(orphanPid);
    expect(await readNotes(url)).toEqual(['before crash', 'before restart', 'from the orphan']);
  });

  it('starts when a stale postmaster.pid names a live process that is not PostgreSQL', async () => {
    const clean = server();
    await clean.start();
    await clean.stop();

    // The pid of this very test process: alive, and its command line may well mention "postgres".
    const lockFile = join(dataDir, 'postgres', 'postmaster.pid');
    writeFileSync(lockFile, `${process.pid}\n${join(dataDir, 'postgres')}\n0\n5432\n\n127.0.0.1\n  0  0\nready\n`);

    const restarted = server();
    const url = await restarted.start();
    expect(isAlive(process.pid)).toBe(true);
    expect(lockFilePid(dataDir)).toBe(restarted.pid);
    expect(await readNotes(url)).toEqual(['before crash', 'before restart', 'from the orphan']);
  });

  it('listens on a fixed port when asked, the same one after a restart', async () => {
    const { port } = await freePortNumber();
    const fixed = new EmbeddedPostgresServer({ dataDir, port });
    servers.push(fixed);
    const url = await fixed.start();
    expect(new URL(url).port).toBe(String(port));
    await fixed.stop();
    const again = await fixed.start();
    expect(again).toBe(url);
    expect(await readNotes(again)).toContain('before restart');
  });
});

async function freePortNumber(): Promise<{ port: number }> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve({ port: address.port }) : reject(new Error('no port'))));
    });
  });
}
