/**
 * The real broker in a child process (apps/token-broker/src/main.ts, as `npm run start:dev`
 * runs it), for tests that must kill a replica the hard way: SIGKILL gives it no chance to
 * release its refresh leases. Sources are transpiled on the fly by ts-node (no type check,
 * no build step), so the child always runs the code under test, never a stale dist/.
 */
import { join } from 'node:path';
import { ChildServer, spawnChild, waitForOk } from './child-process';
import { freePort, TEST_ADMIN_KEY, TEST_ENCRYPTION_KEYS, TEST_SERVICE_KEY } from './test-broker';
import { testDatabaseUrl } from './test-database';

const ROOT = join(__dirname, '../..');

export interface BrokerProcess extends ChildServer {
  /** e.g. http://127.0.0.1:41234 */
  readonly url: string;
}

/**
 * Starts a broker child against the test database with the test key ring and API keys (so an
 * in-process broker can read what it wrote), and resolves once /health/ready answers 200.
 * `env` is added on top (the sandbox's env(), REFRESH_* settings); a variable set to undefined
 * is left out.
 */
export async function startBrokerProcess(
  env: Record<string, string | undefined>,
  options: { readyTimeoutMs?: number; /** Play a host whose clock is this far off (test/support/skewed-clock.ts). */ clockSkewMs?: number } = {},
): Promise<BrokerProcess> {
  const processHandle = await spawnBrokerProcess(env, options);
  try {
    await waitForOk(`${processHandle.url}/health/ready`, processHandle, options.readyTimeoutMs ?? 90_000);
  } catch (error) {
    await processHandle.kill();
    throw error;
  }
  return processHandle;
}

/** The same broker child, started without waiting for it (a start that is meant to fail, say). */
export async function spawnBrokerProcess(
  env: Record<string, string | undefined>,
  options: { /** Play a host whose clock is this far off (test/support/skewed-clock.ts). */ clockSkewMs?: number } = {},
): Promise<BrokerProcess> {
  const port = await freePort();
  const skew = options.clockSkewMs ? ['-r', join(__dirname, 'skewed-clock.ts')] : [];
  const child = spawnChild(
    'the broker process',
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', '-r', 'tsconfig-paths/register', ...skew, join(ROOT, 'apps/token-broker/src/main.ts')],
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
        // No load balancer waits on a test child: a suite about the drain sets its own.
        SHUTDOWN_DRAIN_MS: '0',
        ...(options.clockSkewMs ? { TEST_CLOCK_SKEW_MS: String(options.clockSkewMs) } : {}),
        ...env,
      },
    },
  );
  return { ...child, url: `http://127.0.0.1:${port}` };
}
