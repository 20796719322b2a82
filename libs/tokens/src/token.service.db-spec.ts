/**
 * The token read path (GET /tokens/:account) below HTTP, against real Postgres with the real
 * migrations: TokenService built by hand over the real ConnectionCache (with the real listener),
 * RefreshEngine, repositories and sealer, a ManualClock and a stub provider each test scripts.
 * Errors are checked by their code; apps/token-broker/src/http/http-status.ts maps each to the
 * status named in the test (connection_not_found 404, provider_ambiguous 400, revoked and
 * needs_reauth 409, provider_unavailable 503).
 */
import { DomainError, ErrorCode, ManualClock } from '@app/common';
import { ConnectionErrorCode } from '@app/connections';
import { DatabaseNotifications } from '@app/database';
import { Metrics } from '@app/observability';
import { DataSource } from 'typeorm';
import { refreshServices, RefreshServices } from '../../../test/support/service-tier';
import { issuedTokens } from '../../../test/support/stub-provider-client';
import { openTestDataSource, testDatabaseUrl, truncateAll } from '../../../test/support/test-database';
import { ConnectionCache } from './connection-cache';
import { TokenService } from './token.service';
import { UsageRecorder } from './usage-recorder';

const START = Date.UTC(2026, 10, 23, 12);

/** What a read that throws (synchronously or as a rejection, as tokenFor may) was refused with. */
async function refusal(read: () => unknown): Promise<DomainError> {
  try {
    await read();
  } catch (error) {
    if (error instanceof DomainError) return error;
    throw error;
  }
  throw new Error('expected the read to be refused');
}

describe('TokenService (real Postgres, stub provider)', () => {
  let dataSource: DataSource;
  let notifications: DatabaseNotifications;
  let services: RefreshServices;
  const clock = new ManualClock(START);
  const metrics = new Metrics();

  beforeAll(async () => {
    dataSource = await openTestDataSource();
  });
  afterAll(async () => dataSource.destroy());
  beforeEach(async () => {
    await truncateAll(dataSource);
    clock.set(START);
    services = refreshServices(dataSource, { clock, metrics });
  });
  afterEach(async () => notifications?.onApplicationShutdown());

  /**
   * The read path as a replica starts it, once the test's connections are stored: its listener
   * then hears only later changes (the seeding's own notifications would otherwise arrive at
   * some point and drop what the test just cached). One listener per read path, as one per process.
   */
  const startReadPath = async (): Promise<TokenService> => {
    notifications = new DatabaseNotifications(testDatabaseUrl(), dataSource);
    const cache = new ConnectionCache(services.connections, notifications, services.config);
    await cache.onModuleInit();
    return new TokenService(cache, services.sealer, services.replica().engine, new UsageRecorder(services.connections), clock, metrics);
  };

  /** A connection as the connect flow stores it; `expiresInMs` null for a token that never expires. */
  const connect = (account: string, provider: string, options: { accessToken?: string; expiresInMs?: number | null } = {}) => {
    const expiresInMs = options.expiresInMs === undefined ? 3600_000 : options.expiresInMs;
    return services.connections.saveConnected({
      account,
      provider,
      tokens: {
        accessToken: options.accessToken ?? `${provider}-a0`,
        refreshToken: `${provider}-r0`,
        tokenType: 'Bearer',
        scope: 'read',
        expiresAt: expiresInMs === null ? null : new Date(clock.nowMs() + expiresInMs),
      },
      identity: null,
      nextRefreshAt: expiresInMs === null ? null : new Date(clock.nowMs() + expiresInMs * 0.8),
    });
  };

  describe('serving', () => {
    it.each([
      { provider: 'copyai', apply: { headers: { Authorization: 'Bearer tok-1' }, query: {} } },
      { provider: 'copper', apply: { headers: { Authorization: 'Bearer tok-1' }, query: {} } },
      { provider: 'copernica', apply: { headers: {}, query: { access_token: 'tok-1' } } },
    ])('answers a cached $provider read synchronously, presented as $provider wants it', async ({ provider, apply }) => {
      await connect('acme', provider, { accessToken: 'tok-1', expiresInMs: provider === 'copernica' ? null : 3600_000 });
      const tokens = await startReadPath();
      const expected = {
        account: 'acme',
        provider,
        accessToken: 'tok-1',
        tokenType: 'Bearer',
        scope: 'read',
        expiresAt: provider === 'copernica' ? null : new Date(START + 3600_000).toISOString(),
        apply,
      };

      const miss = tokens.tokenFor('acme', provider, 60);
      expect(miss).toBeInstanceOf(Promise);
      expect(await miss).toMatchObject(expected);
      const hit = tokens.tokenFor('acme', provider, 60);
      expect(hit).not.toBeInstanceOf(Promise);
      expect(hit).toMatchObject(expected);
      expect(services.provider.calls).toEqual([]);
    });

    it('serves the only connection when no provider is named, and refuses to guess between several (400 provider_ambiguous)', async () => {
      await connect('solo', 'copper');
      await connect('multi', 'copyai');
      await connect('multi', 'copernica', { expiresInMs: null });
      const tokens = await startReadPath();

      expect(await tokens.tokenFor('solo', undefined, 60)).toMatchObject({ provider: 'copper', accessToken: 'copper-a0' });
      const ambiguous = await refusal(() => tokens.tokenFor('multi', undefined, 60));
      expect(ambiguous).toMatchObject({ code: ErrorCode.ProviderAmbiguous, details: { providers: ['copernica', 'copyai'] } });
      expect(ambiguous.message).toContain('copernica, copyai');
      expect(await tokens.tokenFor('multi', 'copyai', 60)).toMatchObject({ provider: 'copyai', accessToken: 'copyai-a0' });
    });

    it('answers 404 for an account without connections or without the named provider, 400 for an unknown provider', async () => {
      await connect('acme', 'copyai');
      const tokens = await startReadPath();

      expect(await refusal(() => tokens.tokenFor('nobody', undefined, 60))).toMatchObject({ code: ErrorCode.ConnectionNotFound });
      expect(await refusal(() => tokens.tokenFor('nobody', 'copyai', 60))).toMatchObject({ code: ErrorCode.ConnectionNotFound });
      expect(await refusal(() => tokens.tokenFor('acme', 'copper', 60))).toMatchObject({ code: ErrorCode.ConnectionNotFound });
      expect(await refusal(() => tokens.tokenFor('acme', 'dropbox', 60))).toMatchObject({ code: ErrorCode.ProviderUnknown });
    });

    it('answers 409 for a revoked connection and for one that needs the user again, without asking the provider', async () => {
      const revoked = await connect('gone', 'copyai');
      await services.connections.markRevoked(revoked.id, 'connection.revoke');
      const flagged = await connect('stale', 'copyai');
      await services.refreshes.markNeedsReauth(flagged.id, flagged.version, { code: ConnectionErrorCode.InvalidGrant, message: 'refused' });
      const tokens = await startReadPath();

      expect(await refusal(() => tokens.tokenFor('gone', 'copyai', 60))).toMatchObject({ code: ErrorCode.Revoked });
      const reauth = await refusal(() => tokens.tokenFor('stale', 'copyai', 60));
      expect(reauth).toMatchObject({ code: ErrorCode.NeedsReauth });
      expect(reauth.message).toContain('invalid_grant');
      expect(services.provider.calls).toEqual([]);
    });
  });

  describe('refreshing on read', () => {
    it('refreshes first when the token would not last minValidity, and not otherwise', async () => {
      await connect('acme', 'copyai', { expiresInMs: 600_000 });
      const tokens = await startReadPath();
      services.provider.answers(issuedTokens('copyai-a1', { refreshToken: 'copyai-r1' }));

      expect(await tokens.tokenFor('acme', 'copyai', 60)).toMatchObject({ accessToken: 'copyai-a0' });
      expect(services.provider.calls).toEqual([]);
      expect(await tokens.tokenFor('acme', 'copyai', 900)).toMatchObject({ accessToken: 'copyai-a1', expiresAt: new Date(START + 3600_000).toISOString() });
      expect(services.provider.calls).toEqual([{ provider: 'copyai', refreshToken: 'copyai-r0' }]);
      expect(await tokens.tokenFor('acme', 'copyai', 60)).toMatchObject({ accessToken: 'copyai-a1' });
      expect(await services.stored.find('acme', 'copyai')).toMatchObject({ accessToken: 'copyai-a1', refreshToken: 'copyai-r1' });
    });

    it('keeps serving a still-valid token when the refresh fails transiently, and does not ask again within the retry window', async () => {
      await connect('acme', 'copyai', { expiresInMs: 30_000 });
      const tokens = await startReadPath();
      services.provider.fails('transient', 20);

      expect(await tokens.tokenFor('acme', 'copyai', 60)).toMatchObject({ accessToken: 'copyai-a0' });
      clock.advance(5_000);
      expect(await tokens.tokenFor('acme', 'copyai', 60)).toMatchObject({ accessToken: 'copyai-a0' });
      expect(services.provider.calls).toHaveLength(1);
    });

    it('answers 503 with retryAfter for an expired token the provider cannot refresh right now, and keeps it for the retry window', async () => {
      await connect('acme', 'copyai', { expiresInMs: 30_000 });
      const tokens = await startReadPath();
      clock.advance(60_000);
      services.provider.fails('transient', 42);

      expect(await refusal(() => tokens.tokenFor('acme', 'copyai', 60))).toMatchObject({ code: ErrorCode.ProviderUnavailable, details: { retryAfter: 42 } });
      clock.advance(12_000);
      expect(await refusal(() => tokens.tokenFor('acme', 'copyai', 60))).toMatchObject({ code: ErrorCode.ProviderUnavailable, details: { retryAfter: 30 } });
      expect(services.provider.calls).toHaveLength(1);
    });

    it('answers 409 needs_reauth once the provider refuses the refresh token, from then on without asking it', async () => {
      await connect('acme', 'copyai', { expiresInMs: 30_000 });
      const tokens = await startReadPath();
      services.provider.fails('invalid_grant');

      expect(await refusal(() => tokens.tokenFor('acme', 'copyai', 60))).toMatchObject({ code: ErrorCode.NeedsReauth });
      expect(await refusal(() => tokens.tokenFor('acme', 'copyai', 60))).toMatchObject({ code: ErrorCode.NeedsReauth });
      expect(services.provider.calls).toHaveLength(1);
    });
  });
});
