/**
 * The "medium" test tier: the refresh and token-read services built by hand, as their modules
 * would build them, over the real Postgres repositories (real migrations, from global setup), a
 * ManualClock, real Metrics and a StubProviderClient in place of the network.
 */
import { ManualClock } from '@app/common';
import { AppConfig, loadConfig } from '@app/config';
import { ConnectionSealer, PostgresConnectionRefreshRepository, PostgresConnectionRepository } from '@app/connections';
import { KeyRing, TokenCipher } from '@app/crypto';
import { Metrics } from '@app/observability';
import { RefreshEngine, RefreshLeases, RefreshPlanner } from '@app/refresh';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { DataSource } from 'typeorm';
import { StoredTokens } from './stored-tokens';
import { StubProviderClient } from './stub-provider-client';

/** A random key ring spec (`kid:base64key`), for sealing as the broker does. */
export function testKeyRing(kid = 'k1'): string {
  return `${kid}:${randomBytes(32).toString('base64')}`;
}

/**
 * An AppConfig as loadConfig reads it, with every provider configured (the stub answers for all
 * of them; these URLs are never called) and explicit secrets, so nothing is written to DATA_DIR.
 */
export function serviceTierConfig(env: Record<string, string> = {}): AppConfig {
  const nowhere = 'http://127.0.0.1:9';
  return loadConfig({
    NODE_ENV: 'test',
    DATA_DIR: tmpdir(),
    TOKEN_ENCRYPTION_KEYS: testKeyRing(),
    SERVICE_API_KEYS: `billing:${randomBytes(24).toString('base64url')}`,
    ADMIN_API_KEYS: `ops:${randomBytes(24).toString('base64url')}`,
    COPPER_CLIENT_ID: 'copper-client',
    COPPER_CLIENT_SECRET: randomBytes(16).toString('hex'),
    COPERNICA_CLIENT_ID: 'copernica-client',
    COPERNICA_CLIENT_SECRET: randomBytes(16).toString('hex'),
    COPYAI_CLIENT_ID: 'copyai-client',
    COPYAI_CLIENT_SECRET: randomBytes(16).toString('hex'),
    COPYAI_AUTHORIZE_URL: `${nowhere}/authorize`,
    COPYAI_TOKEN_URL: `${nowhere}/token`,
    ...env,
  }).config;
}

/** What one replica of the refresh path is: its own leases (its own owner id) and engine. */
export interface RefreshReplica {
  readonly leases: RefreshLeases;
  readonly engine: RefreshEngine;
}

export interface RefreshServices {
  readonly config: AppConfig;
  readonly clock: ManualClock;
  readonly sealer: ConnectionSealer;
  readonly connections: PostgresConnectionRepository;
  readonly refreshes: PostgresConnectionRefreshRepository;
  readonly provider: StubProviderClient;
  readonly metrics: Metrics;
  /** Plaintext of what is stored, opened with the same key ring. */
  readonly stored: StoredTokens;
  /** A replica: new RefreshLeases and RefreshEngine over the shared database, clock and provider. */
  replica(): RefreshReplica;
}

/**
 * Everything the refresh engine needs, over `dataSource`. The jitter's random source is pinned to
 * the middle of its range, so planned times and backoff delays are the same on every run.
 */
export function refreshServices(dataSource: DataSource, options: { clock: ManualClock; config?: AppConfig; metrics?: Metrics }): RefreshServices {
  const { clock } = options;
  const config = options.config ?? serviceTierConfig();
  const metrics = options.metrics ?? new Metrics();
  const random = (): number => 0.5;
  const sealer = new ConnectionSealer(new TokenCipher(KeyRing.parse(config.tokenEncryptionKeys)));
  const connections = new PostgresConnectionRepository(dataSource, sealer, clock);
  const refreshes = new PostgresConnectionRefreshRepository(dataSource, sealer, clock);
  const provider = new StubProviderClient();
  const planner = new RefreshPlanner(clock, random);
  return {
    config,
    clock,
    sealer,
    connections,
    refreshes,
    provider,
    metrics,
    stored: new StoredTokens(connections, sealer),
    replica: () => {
      const leases = new RefreshLeases(config, refreshes, clock);
      return { leases, engine: new RefreshEngine(config, connections, refreshes, leases, sealer, provider, planner, clock, metrics, random) };
    },
  };
}

/**
 * Polls `check` (real time) until it returns something other than undefined, for what happens
 * in another connection or process (a NOTIFY, a waiter reaching its wait). Not a timing
 * assertion: the deadline only turns a hang into a readable failure.
 */
export async function eventually<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`gave up waiting for ${what} after ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
