/**
 * The read path's cache (DESIGN guarantee 9) against real Postgres with the real migrations and
 * the real listener (DatabaseNotifications): what it serves, what drops an account (the
 * connections table's trigger NOTIFYs, an explicit invalidation, age), what it refuses to keep
 * (a load that raced an invalidation, more than its cap), and that it serves nothing at all while
 * its listener is not live.
 */
import { ManualClock } from '@app/common';
import { AppConfig } from '@app/config';
import {
  ConnectionErrorCode,
  ConnectionRecord,
  ConnectionSealer,
  ConnectionStatus,
  PostgresConnectionRefreshRepository,
  PostgresConnectionRepository,
} from '@app/connections';
import { KeyRing, TokenCipher } from '@app/crypto';
import { DatabaseNotifications } from '@app/database';
import { AddressInfo, createServer } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DataSource } from 'typeorm';
import { eventually, serviceTierConfig } from '../../../test/support/service-tier';
import { openTestDataSource, testDatabaseUrl, truncateAll } from '../../../test/support/test-database';
import { CachedConnection, connectionsFrom } from './cached-connection';
import { ConnectionCache } from './connection-cache';

const START = Date.UTC(2026, 10, 23, 12);

/** V8's full collection, made callable in this process (jest does not run node with --expose-gc). */
function collectGarbage(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}
/** ConnectionCache's safety-net age for an entry. */
const ENTRY_TTL_MS = 5 * 60_000;

/** A postgres:// URL on a port of 127.0.0.1 nothing listens on. */
async function refusingUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `postgres://broker@127.0.0.1:${port}/broker`;
}

describe('ConnectionCache (real Postgres, real listener)', () => {
  let dataSource: DataSource;
  let connections: PostgresConnectionRepository;
  let refreshes: PostgresConnectionRefreshRepository;
  let sealer: ConnectionSealer;
  const listeners: DatabaseNotifications[] = [];
  const clock = new ManualClock(START);
  const now = (): number => clock.nowMs();

  beforeAll(async () => {
    dataSource = await openTestDataSource();
  });
  afterAll(async () => dataSource.destroy());
  beforeEach(async () => {
    await truncateAll(dataSource);
    clock.set(START);
    sealer = new ConnectionSealer(new TokenCipher(KeyRing.parse(serviceTierConfig().tokenEncryptionKeys)));
    connections = new PostgresConnectionRepository(dataSource, sealer, clock);
    refreshes = new PostgresConnectionRefreshRepository(dataSource, sealer, clock);
  });
  afterEach(async () => {
    for (const listener of listeners.splice(0)) await listener.onApplicationShutdown();
  });

  /** A cache as a replica starts it: its own listener (on `url`), subscribed before it serves. */
  const startCache = async (options: { config?: AppConfig; url?: string } = {}): Promise<{ cache: ConnectionCache; listener: DatabaseNotifications }> => {
    const listener = new DatabaseNotifications(options.url ?? testDatabaseUrl(), dataSource);
    listeners.push(listener);
    const cache = new ConnectionCache(connections, listener, options.config ?? serviceTierConfig());
    await cache.onModuleInit();
    return { cache, listener };
  };

  /** A cached connection as a reader would notice it: its status, and its token while active. */
  const shown = (connection: CachedConnection): string =>
    connection.status === ConnectionStatus.Active ? `active with ${connection.accessTokenVia((sealed) => sealer.openAccessToken(sealed))}` : connection.status;

  const connect = (account: string, accessToken = 'a0', provider = 'copyai') =>
    connections.saveConnected({
      account,
      provider,
      tokens: { accessToken, refreshToken: 'r0', tokenType: 'Bearer', scope: null, expiresAt: new Date(now() + 3600_000) },
      identity: null,
      nextRefreshAt: new Date(now() + 2880_000),
    });

  it('serves a loaded account synchronously, until it is five minutes old, and one without connections as none', async () => {
    await connect('acme');
    await connect('acme', 'c0', 'copper');
    const { cache } = await startCache();

    expect(cache.cached('acme', now())).toBeUndefined();
    const loaded = await cache.load('acme', now());
    expect(connectionsFrom(loaded).map((c) => [c.provider, c.status])).toEqual([
      ['copper', 'active'],
      ['copyai', 'active'],
    ]);
    expect(cache.cached('acme', now())).toBe(loaded);
    expect(cache.cached('acme', now() + ENTRY_TTL_MS - 1)).toBe(loaded);
    expect(cache.cached('acme', now() + ENTRY_TTL_MS)).toBeUndefined();

    // An account without connections is kept too, as none (null), for as long.
    expect(await cache.load('nobody', now())).toBeNull();
    expect(cache.cached('nobody', now())).toBeNull();
    expect(cache.cached('nobody', now() + ENTRY_TTL_MS - 1)).toBeNull();
    expect(cache.cached('nobody', now() + ENTRY_TTL_MS)).toBeUndefined();
  });

  it.each<[string, (record: ConnectionRecord) => Promise<unknown>, string]>([
    ['revoked', (record) => connections.markRevoked(record.id, 'connection.revoke'), 'revoked'],
    ['reconnected', () => connect('acme', 'a-reconnected'), 'active with a-reconnected'],
    [
      'flagged needs_reauth',
      (record) => refreshes.markNeedsReauth(record.id, record.version, { code: ConnectionErrorCode.InvalidGrant, message: 'refused' }),
      'needs_reauth',
    ],
  ])('drops an account within moments of its connection being %s through the repository', async (_change, change, reloaded) => {
    const record = await connect('acme');
    const { cache } = await startCache();
    await cache.load('acme', now());

    await change(record);

    await eventually('the change notification to drop acme', () => (cache.cached('acme', now()) === undefined ? true : undefined));
    expect(connectionsFrom(await cache.load('acme', now())).map(shown)).toEqual([reloaded]);
  });

  it('keeps an account across writes that change neither its tokens nor its status (usage, leases)', async () => {
    const { id } = await connect('acme');
    await connect('beta');
    const { cache } = await startCache();
    const acme = await cache.load('acme', now());
    await cache.load('beta', now());

    await connections.recordUsage(new Map([[id, clock.now()]]));
    await refreshes.claimRefreshLease(id, 'replica-a', clock.now(), 30_000);
    await refreshes.releaseRefreshLease(id, 'replica-a');
    // Notifications arrive in commit order: once beta's change is heard, anything about acme would have been.
    await connect('beta', 'b-reconnected');
    await eventually('the change notification to drop beta', () => (cache.cached('beta', now()) === undefined ? true : undefined));

    expect(cache.cached('acme', now())).toBe(acme);
  });

  it('drops an account at once on invalidate, and only that account', async () => {
    await connect('acme');
    await connect('beta');
    const { cache } = await startCache();
    await cache.load('acme', now());
    const beta = await cache.load('beta', now());

    cache.invalidate('acme');

    expect(cache.cached('acme', now())).toBeUndefined();
    expect(cache.cached('beta', now())).toBe(beta);
  });

  it('answers a load that raced an invalidation but does not keep it', async () => {
    await connect('acme');
    const { cache } = await startCache();

    const loading = cache.load('acme', now());
    cache.invalidate('acme');

    expect(connectionsFrom(await loading)).toHaveLength(1);
    expect(cache.cached('acme', now())).toBeUndefined();
    const again = await cache.load('acme', now());
    expect(cache.cached('acme', now())).toBe(again);
  });

  it('does not hand a read after an invalidation the load that was already running before it', async () => {
    const { id } = await connect('acme');
    const { cache } = await startCache();
    // The first load has read the row, but its answer is slow to come back...
    const findSealedByAccount = connections.findSealedByAccount.bind(connections);
    let answered!: () => void;
    let release!: () => void;
    const firstAnswered = new Promise<void>((resolve) => (answered = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    jest.spyOn(connections, 'findSealedByAccount').mockImplementationOnce(async (account) => {
      const rows = await findSealedByAccount(account);
      answered();
      await released;
      return rows;
    });
    const early = cache.load('acme', now());
    await firstAnswered;

    // ...while the connection is revoked and the cache told so.
    await connections.markRevoked(id, 'connection.revoke');
    cache.invalidate('acme');
    const late = cache.load('acme', now());
    release();

    expect(connectionsFrom(await early).map(shown)).toEqual(['active with a0']);
    expect(connectionsFrom(await late).map(shown)).toEqual(['revoked']);
  });

  it('evicts the oldest tenth of its accounts when it is full', async () => {
    const { cache } = await startCache({ config: serviceTierConfig({ TOKEN_CACHE_MAX_ACCOUNTS: '20' }) });
    const accounts = Array.from({ length: 21 }, (_, i) => `acct-${String(i).padStart(2, '0')}`);
    for (const account of accounts) await cache.load(account, now());

    const kept = accounts.filter((account) => cache.cached(account, now()) !== undefined);
    expect(kept).toEqual(accounts.slice(2));
  });

  it('keeps no part of the caller\'s string alive: an id sliced from a long request URL costs the cache only the id', async () => {
    const gc = collectGarbage();
    await connect('acct-present-0001');
    const { cache } = await startCache();
    // Ids cut out of 100 KB "URLs", as Fastify's router hands them on (V8 slices, which point into the whole string).
    const sliced = (id: string): string => `/tokens/${id}?minValidity=${'0'.repeat(100_000)}60`.slice(8, 8 + id.length);
    gc();
    const before = process.memoryUsage().heapUsed;
    await cache.load(sliced('acct-present-0001'), now());
    for (let i = 0; i < 200; i++) await cache.load(sliced(`acct-missing-${String(i).padStart(4, '0')}`), now());
    gc();
    const retainedMb = (process.memoryUsage().heapUsed - before) / 1e6;
    // 201 accounts cached, as found and as none: a few tens of KB; the URLs would be 20 MB.
    expect(cache.cached('acct-missing-0199', now())).toBeNull();
    expect(cache.cached('acct-present-0001', now())).not.toBeUndefined();
    expect(retainedMb).toBeLessThan(5);
  });

  describe('serves nothing while its listener is not live', () => {
    it('once the listener has shut down (a load still answers, from the database)', async () => {
      await connect('acme');
      const { cache, listener } = await startCache();
      await cache.load('acme', now());

      await listener.onApplicationShutdown();

      expect(cache.cached('acme', now())).toBeUndefined();
      expect(connectionsFrom(await cache.load('acme', now()))).toHaveLength(1);
      expect(cache.cached('acme', now())).toBeUndefined();
    });

    it('when the listener cannot reach the database', async () => {
      await connect('acme');
      const { cache, listener } = await startCache({ url: await refusingUrl() });

      expect(listener.live).toBe(false);
      expect(connectionsFrom(await cache.load('acme', now()))).toHaveLength(1);
      expect(cache.cached('acme', now())).toBeUndefined();
    });

    it('when caching is turned off (TOKEN_CACHE_MAX_ACCOUNTS=0), listener or not', async () => {
      await connect('acme');
      const { cache } = await startCache({ config: serviceTierConfig({ TOKEN_CACHE_MAX_ACCOUNTS: '0' }) });

      expect(connectionsFrom(await cache.load('acme', now()))).toHaveLength(1);
      expect(cache.cached('acme', now())).toBeUndefined();
    });
  });
});
