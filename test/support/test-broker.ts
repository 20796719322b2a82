/**
 * Boots the real broker (Fastify on 127.0.0.1, an ephemeral port) against the test database,
 * with fixed test credentials. End-to-end suites drive it over HTTP with `fetch`.
 */
import { Clock } from '@app/common';
import { loadConfig } from '@app/config';
import { BrokerLogger, createPino } from '@app/observability';
import { Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import { RunningBroker, startBroker } from '../../apps/token-broker/src/broker';
import { TcpProxy } from './tcp-proxy';
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

/**
 * Log lines kept in memory, written by the production logger and redaction at `level` (as
 * startBroker builds it from LOG_LEVEL), for suites that check what is logged. Pass `logger` to
 * startTestBroker.
 */
export interface CapturedLogs {
  readonly logger: BrokerLogger;
  /** Every JSON line written so far. */
  readonly lines: string[];
  /** The lines, parsed. */
  entries(): Array<Record<string, unknown>>;
  /**
   * `new Logger('Context')` writes through Nest's process-wide logger, which the last broker
   * started in this process replaced: make it this one again.
   */
  claimProcessLogger(): void;
}

export function captureLogs(level = 'info'): CapturedLogs {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
      done();
    },
  });
  const logger = new BrokerLogger(createPino(level, sink));
  return {
    logger,
    lines,
    entries: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>),
    claimProcessLogger: () => Logger.overrideLogger(logger),
  };
}

/**
 * A test broker that reaches the test database through a TcpProxy (test/support/tcp-proxy.ts),
 * so a suite can stall or cut its connections. Close both when done.
 */
export async function startProxiedTestBroker(
  env: Record<string, string | undefined> = {},
  options: { clock?: Clock; logger?: BrokerLogger } = {},
): Promise<{ broker: TestBroker; proxy: TcpProxy }> {
  const { proxy, url } = await TcpProxy.forDatabase(testDatabaseUrl());
  try {
    return { broker: await startTestBroker({ ...env, DATABASE_URL: url }, options), proxy };
  } catch (error) {
    await proxy.close();
    throw error;
  }
}

export async function startTestBroker(
  env: Record<string, string | undefined> = {},
  options: { clock?: Clock; logger?: BrokerLogger } = {},
): Promise<TestBroker> {
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
  const broker = await startBroker(config, { clock: options.clock, logger: options.logger });
  return { ...broker, call: brokerEndpoint(broker.url).call };
}

/**
 * How a test calls a broker listening at `url` (in this process or a child): `call` adds the
 * test service or admin key (`as`) and never follows a redirect.
 */
export function brokerEndpoint(url: string): Pick<TestBroker, 'url' | 'call'> {
  return {
    url,
    call: (path, init = {}) => {
      const { as, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (as) headers.set('authorization', `Bearer ${as === 'service' ? TEST_SERVICE_KEY : TEST_ADMIN_KEY}`);
      return fetch(`${url}${path}`, { ...rest, headers, redirect: 'manual' });
    },
  };
}
