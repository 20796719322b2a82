/**
 * The real broker in a child process (apps/token-broker/src/main.ts, as `npm run start:dev`
 * runs it), for tests that must kill a replica the hard way: SIGKILL gives it no chance to
 * release its refresh leases. Sources are transpiled on the fly by ts-node (no type check,
 * no build step), so the child always runs the code under test, never a stale dist/.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { freePort, TEST_ADMIN_KEY, TEST_ENCRYPTION_KEYS, TEST_SERVICE_KEY } from './test-broker';
import { testDatabaseUrl } from './test-database';

const ROOT = join(__dirname, '../..');
const OUTPUT_KEPT_CHARS = 20_000;

export interface BrokerProcess {
  readonly pid: number;
  /** e.g. http://127.0.0.1:41234 */
  readonly url: string;
  /** The last few KB of its stdout and stderr (for failure messages). */
  output(): string;
  exited(): boolean;
  /** SIGKILL: no shutdown hooks, no lease release. Resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM (graceful shutdown), then SIGKILL if it is still there after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts a broker child against the test database with the test key ring and API keys (so an
 * in-process broker can read what it wrote), and resolves once /health/ready answers 200.
 * `env` is added on top (the sandbox's env(), REFRESH_* settings).
 */
export async function startBrokerProcess(env: Record<string, string>, options: { readyTimeoutMs?: number } = {}): Promise<BrokerProcess> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', '-r', 'tsconfig-paths/register', join(ROOT, 'apps/token-broker/src/main.ts')],
    {
      cwd: ROOT,
      // Only what the broker needs: nothing from the test runner's environment leaks into its config.
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        TS_NODE_PROJECT: join(ROOT, 'tsconfig.json'),
        NODE_ENV: 'test',
        HOST: '127.0.0.1',
        PORT: String(port),
        PUBLIC_URL: `http://127.0.0.1:${port}`,
        LOG_LEVEL: 'warn',
        DATABASE_URL: testDatabaseUrl(),
        DATA_DIR: '.data/test-broker-process',
        TOKEN_ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
        SERVICE_API_KEYS: `tests:${TEST_SERVICE_KEY}`,
        ADMIN_API_KEYS: `ops:${TEST_ADMIN_KEY}`,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  if (child.pid === undefined) throw new Error('could not spawn the broker process');
  let output = '';
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_KEPT_CHARS);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );

  const url = `http://127.0.0.1:${port}`;
  const processHandle: BrokerProcess = {
    pid: child.pid,
    url,
    output: () => output,
    exited: () => exited,
    kill: async () => {
      if (!exited) child.kill('SIGKILL');
      await exit;
    },
    stop: async (graceMs = 15_000) => {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    },
  };

  try {
    await waitForReady(url, processHandle, options.readyTimeoutMs ?? 90_000);
  } catch (error) {
    await processHandle.kill();
    throw error;
  }
  return processHandle;
}

async function waitForReady(url: string, child: BrokerProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  for (;;) {
    if (child.exited()) throw new Error(`the broker process exited before it was ready:\n${child.output().trim()}`);
    try {
      const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2_000) });
      if (response.status === 200) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`the broker process was not ready within ${timeoutMs / 1000}s (${last}):\n${child.output().trim()}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
