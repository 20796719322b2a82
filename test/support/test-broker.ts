/**
 * Boots the real broker (Fastify on 127.0.0.1, an ephemeral port) against the test database,
 * with fixed test credentials. End-to-end suites drive it over HTTP with `fetch`.
 */
import { Clock } from '@app/common';
import { loadConfig } from '@app/config';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { RunningBroker, startBroker } from '../../apps/token-broker/src/broker';
import { testDatabaseUrl } from './test-database';

export const TEST_SERVICE_KEY = `svc-${randomBytes(18).toString('base64url')}`;
export const TEST_ADMIN_KEY = `adm-${randomBytes(18).toString('base64url')}`;
export const TEST_ENCRYPTION_KEYS = `test1:${randomBytes(32).toString('base64')}`;

export interface TestBroker extends RunningBroker {
  /** fetch against the broker; `as` picks the API key sent (none by default). */
  call(path: string, init?: RequestInit & { as?: 'service' | 'admin' }): Promise<Response>;
}

/** A port free right now on 127.0.0.1, so PUBLIC_URL (and OAuth callbacks) can name it before the broker starts. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export async function startTestBroker(env: Record<string, string | undefined> = {}, options: { clock?: Clock } = {}): Promise<TestBroker> {
  const port = env.PORT ?? String(await freePort());
  const { config } = loadConfig({
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: port,
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    LOG_LEVEL: 'silent',
    DATABASE_URL: testDatabaseUrl(),
    DATA_DIR: '.data/test-broker',
    TOKEN_ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
    SERVICE_API_KEYS: `tests:${TEST_SERVICE_KEY}`,
    ADMIN_API_KEYS: `ops:${TEST_ADMIN_KEY}`,
    ...env,
  });
  const broker = await startBroker(config, { clock: options.clock });
  return {
    ...broker,
    call: (path, init = {}) => {
      const { as, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (as) headers.set('authorization', `Bearer ${as === 'service' ? TEST_SERVICE_KEY : TEST_ADMIN_KEY}`);
      return fetch(`${broker.url}${path}`, { ...rest, headers, redirect: 'manual' });
    },
  };
}
