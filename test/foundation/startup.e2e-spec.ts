/**
 * The broker as a developer meets it: the real process started from source, the way
 * `npm run start:dev` does (ts-node, transpile-only, tsconfig path aliases), with nothing but a
 * DATA_DIR. It refuses a bad environment with one message, becomes ready on its own embedded
 * PostgreSQL with generated secrets it never prints, and leaves no database behind on SIGTERM.
 *
 * The ts-node bin runs in this child process itself (`npx` would add an npm process between
 * the test and the broker, and the SIGTERM would reach npm instead).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

jest.setTimeout(180_000);

const ROOT = resolve(__dirname, '..', '..');
const READY_TIMEOUT_MS = 120_000;

interface Broker {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the broker from source with exactly `env` (plus PATH/HOME), nothing inherited from jest. */
function spawnBroker(env: Record<string, string>): Broker {
  const child = spawn(process.execPath, [require.resolve('ts-node/dist/bin.js'), '-T', '-r', 'tsconfig-paths/register', 'apps/token-broker/src/main.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.once('exit', (code, signal) => done({ code, signal })));
  return { child, output: () => output, exited };
}

async function exitWithin<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms / 1000}s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function freePort(): Promise<number> {
  return new Promise((done, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? done(address.port) : reject(new Error('no port'))));
    });
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids of processes working inside `dir` (a postmaster and its children run in their data directory). */
function processesInside(dir: string): number[] {
  if (!existsSync('/proc/self')) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cwd = readlinkSync(`/proc/${entry}/cwd`);
      if (cwd === dir || cwd.startsWith(`${dir}/`)) pids.push(Number(entry));
    } catch {
      // Gone, or not ours to inspect.
    }
  }
  return pids;
}

function postmasterPid(dataDir: string): number | undefined {
  const lockFile = join(dataDir, 'postgres', 'postmaster.pid');
  if (!existsSync(lockFile)) return undefined;
  const pid = Number(readFileSync(lockFile, 'utf8').split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

describe('broker process start-up', () => {
  let dataDir: string;
  let broker: Broker | undefined;

  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'tb-startup-'));
  });

  afterEach(async () => {
    // A failed test must not leave a broker or its database running.
    if (broker && broker.child.exitCode === null && broker.child.signalCode === null) {
      broker.child.kill('SIGKILL');
      await broker.exited;
    }
    const orphan = postmasterPid(dataDir);
    if (orphan !== undefined && isAlive(orphan)) {
      process.kill(orphan, 'SIGINT');
      const deadline = Date.now() + 15_000;
      while (isAlive(orphan) && Date.now() < deadline) await new Promise((done) => setTimeout(done, 100));
    }
    broker = undefined;
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses a bad environment with one message listing every problem and no secret', async () => {
    const badKey = `not-a-key-${randomBytes(12).toString('hex')}`;
    broker = spawnBroker({ DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: 'abc', TOKEN_ENCRYPTION_KEYS: badKey });

    const { code } = await exitWithin(broker.exited, 90_000, 'exit on a bad environment');
    const output = broker.output();
    expect(code).not.toBe(0);
    expect(output.match(/Invalid configuration/g)).toHaveLength(1);
    expect(output).toMatch(/Invalid configuration \(2 problems\)/);
    expect(output).toMatch(/PORT: .*whole number/);
    expect(output).toMatch(/TOKEN_ENCRYPTION_KEYS: /);
    expect(output).not.toContain(badKey);
    expect(output).not.toMatch(/dev-secrets|SERVICE_API_KEYS|ADMIN_API_KEYS|Bearer/);
    expect(output).not.toMatch(/\n\s+at /); // one message, not a stack trace
    expect(postmasterPid(dataDir)).toBeUndefined();
  });

  it('with nothing configured: becomes ready on embedded PostgreSQL, never prints a secret, and stops cleanly on SIGTERM', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const started = Date.now();
    broker = spawnBroker({ DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: String(port), NODE_ENV: 'development', LOG_LEVEL: 'info' });
    const running = broker;

    let ready = false;
    while (!ready) {
      if (running.child.exitCode !== null) throw new Error(`the broker exited before becoming ready:\n${running.output()}`);
      if (Date.now() - started > READY_TIMEOUT_MS) throw new Error(`not ready within ${READY_TIMEOUT_MS / 1000}s:\n${running.output()}`);
      const response = await fetch(`${url}/health/ready`).catch(() => undefined);
      if (response) await response.arrayBuffer();
      ready = response?.status === 200;
      if (!ready) await new Promise((done) => setTimeout(done, 250));
    }
    console.log(`broker from source ready in ${((Date.now() - started) / 1000).toFixed(1)}s (fresh DATA_DIR, initdb included)`);

    const devSecretsFile = join(dataDir, 'dev-secrets.env');
    expect(running.output()).toContain(devSecretsFile);
    const secrets = readFileSync(devSecretsFile, 'utf8')
      .split('\n')
      .filter((line) => /^[A-Z_]+=/.test(line))
      .flatMap((line) => line.slice(line.indexOf('=') + 1).split(','))
      .map((entry) => entry.slice(entry.indexOf(':') + 1));
    expect(secrets.length).toBeGreaterThanOrEqual(3);
    secrets.push(readFileSync(join(dataDir, 'postgres.password'), 'utf8').trim());

    // A request with a key and a 404 make sure request logging has had its chance to leak too.
    await (await fetch(`${url}/no-such-route`, { headers: { authorization: `Bearer ${secrets[1]}` } })).arrayBuffer();

    const postmaster = postmasterPid(dataDir);
    expect(postmaster).toBeDefined();
    expect(isAlive(postmaster as number)).toBe(true);

    running.child.kill('SIGTERM');
    const { code, signal } = await exitWithin(running.exited, 60_000, 'exit after SIGTERM');
    expect({ code, signal }).toEqual({ code: 0, signal: null });

    const output = running.output();
    for (const secret of secrets) expect(output).not.toContain(secret);
    // The request log has the 404, as a JSON line naming the path and status only.
    const notFound = output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((entry) => entry.path === '/no-such-route');
    expect(notFound).toMatchObject({ method: 'GET', statusCode: 404, msg: 'request completed' });

    expect(isAlive(postmaster as number)).toBe(false);
    expect(existsSync(join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);
    expect(processesInside(dataDir)).toEqual([]);
  });
});
