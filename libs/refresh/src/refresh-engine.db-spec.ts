/**
 * The refresh protocol (DESIGN guarantees 3, 5 and 10) against real Postgres with the real
 * migrations: RefreshEngine and RefreshLeases built by hand over the Postgres repositories, a
 * ManualClock, and a stub provider each test scripts (tokens, a ProviderError, or a call held
 * at the provider while the test changes the row). What is checked is what a user would see:
 * the outcome, the stored row and tokens, and how often the provider was asked.
 */
import { ManualClock } from '@app/common';
import { ConnectionErrorCode, ConnectionSealer, ConnectionStatus, PostgresConnectionRepository } from '@app/connections';
import { KeyRing, TokenCipher } from '@app/crypto';
import { Metrics } from '@app/observability';
import { ProviderErrorKind } from '@app/providers';
import { DataSource } from 'typeorm';
import { refreshServices, RefreshReplica, RefreshServices, serviceTierConfig, testKeyRing } from '../../../test/support/service-tier';
import { issuedTokens } from '../../../test/support/stub-provider-client';
import { openTestDataSource, truncateAll } from '../../../test/support/test-database';
import { MISCONFIGURED_RETRY_MS } from './backoff';
import { RefreshOutcome } from './refresh-outcome';
import { RefreshSweeper } from './refresh-sweeper';

const START = Date.UTC(2026, 10, 23, 12);
/** What a token read asks for by default: a token valid for another minute. */
const MIN_VALIDITY_MS = 60_000;

describe('RefreshEngine with RefreshLeases (real Postgres, stub provider)', () => {
  let dataSource: DataSource;
  let services: RefreshServices;
  let replica: RefreshReplica;
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
    replica = services.replica();
  });

  /**
   * A Copy.ai connection as the connect flow stores it: access token a0 expiring in 30 s (so a
   * read needs a refresh), refresh token r0, its refresh already due.
   */
  const connect = (
    account: string,
    options: { refreshToken?: string; refreshTokenExpiresInMs?: number; dueInMs?: number; repository?: PostgresConnectionRepository } = {},
  ) =>
    (options.repository ?? services.connections).saveConnected({
      account,
      provider: 'copyai',
      tokens: {
        accessToken: 'a0',
        refreshToken: options.refreshToken ?? 'r0',
        tokenType: 'Bearer',
        scope: 'read',
        expiresAt: new Date(clock.nowMs() + 30_000),
        refreshTokenExpiresAt: options.refreshTokenExpiresInMs === undefined ? null : new Date(clock.nowMs() + options.refreshTokenExpiresInMs),
      },
      identity: null,
      nextRefreshAt: new Date(clock.nowMs() + (options.dueInMs ?? -60_000)),
    });

  /** The user reconnects: new tokens in the same row, a new version. */
  const reconnect = (account: string) =>
    services.connections.saveConnected({
      account,
      provider: 'copyai',
      tokens: { accessToken: 'reconnected-a', refreshToken: 'reconnected-r', tokenType: 'Bearer', scope: 'read', expiresAt: new Date(clock.nowMs() + 3600_000) },
      identity: null,
      nextRefreshAt: new Date(clock.nowMs() + 2880_000),
    });

  /** A token read's request, as TokenService makes it. */
  const read = (id: string, on: RefreshReplica = replica): Promise<RefreshOutcome> =>
    on.engine.refresh({
      connectionId: id,
      trigger: 'read',
      stillNeeded: (record) => record.expiresAt !== null && record.expiresAt.getTime() - clock.nowMs() < MIN_VALIDITY_MS,
    });
  /** An admin's "refresh now", as AdminService makes it. */
  const adminRefresh = (id: string): Promise<RefreshOutcome> => replica.engine.refresh({ connectionId: id, trigger: 'admin', stillNeeded: () => true });

  /** The outcome's kind, and the access token it carries (opened) when it carries a connection. */
  const answer = (outcome: RefreshOutcome) => ({
    kind: outcome.kind,
    accessToken: 'connection' in outcome ? services.sealer.openAccessToken(outcome.connection) : undefined,
  });
  const row = (account: string) => services.connections.findOne(account, 'copyai');
  const leaseState = (id: string) => services.refreshes.refreshState(id, clock.now());

  /** Resolves once `waiter` looks at a row's lease state: it found the lease held by someone else and waits. */
  const waitingForLease = (waiter: RefreshReplica): Promise<void> =>
    new Promise((resolve) => {
      const state = waiter.leases.state.bind(waiter.leases);
      jest.spyOn(waiter.leases, 'state').mockImplementation((id) => {
        resolve();
        return state(id);
      });
    });

  describe('one refresh at a time', () => {
    it('lets one of two replicas call the provider while the other waits for its tokens', async () => {
      const [first, second] = [services.replica(), services.replica()];
      const { id } = await connect('acme');
      const held = services.provider.holds();

      const firstOutcome = read(id, first);
      await held.reached;
      const secondWaits = waitingForLease(second);
      const secondOutcome = read(id, second);
      await secondWaits;
      held.answer(issuedTokens('a1', { refreshToken: 'r1' }));

      expect(answer(await firstOutcome)).toEqual({ kind: 'refreshed', accessToken: 'a1' });
      expect(answer(await secondOutcome)).toEqual({ kind: 'fresh', accessToken: 'a1' });
      expect(services.provider.calls).toEqual([{ provider: 'copyai', refreshToken: 'r0' }]);
      expect(await services.stored.find('acme', 'copyai')).toMatchObject({ accessToken: 'a1', refreshToken: 'r1', lastError: null });
    });

    it('shares one provider call among 50 concurrent requests in one process', async () => {
      const { id } = await connect('acme');
      const held = services.provider.holds();

      const outcomes = Promise.all(Array.from({ length: 50 }, () => read(id)));
      await held.reached;
      held.answer(issuedTokens('a1', { refreshToken: 'r1' }));

      expect(new Set((await outcomes).map((outcome) => JSON.stringify(answer(outcome))))).toEqual(new Set([JSON.stringify({ kind: 'refreshed', accessToken: 'a1' })]));
      expect(services.provider.calls).toHaveLength(1);
    });
  });

  describe('the fence: a row that moved on while the provider answered keeps its new state', () => {
    it('keeps a reconnect that landed during the provider call, and serves its tokens', async () => {
      const { id } = await connect('acme');
      const held = services.provider.holds();

      const outcome = read(id);
      await held.reached;
      await reconnect('acme');
      held.answer(issuedTokens('a1', { refreshToken: 'r1' }));

      expect(answer(await outcome)).toEqual({ kind: 'fresh', accessToken: 'reconnected-a' });
      expect(await services.stored.find('acme', 'copyai')).toMatchObject({ accessToken: 'reconnected-a', refreshToken: 'reconnected-r', status: ConnectionStatus.Active });
    });

    it('keeps a revoke that landed during the provider call: nothing is written back', async () => {
      const { id } = await connect('acme');
      const held = services.provider.holds();

      const outcome = read(id);
      await held.reached;
      const revoked = await services.connections.markRevoked(id, 'connection.revoke');
      held.answer(issuedTokens('a1', { refreshToken: 'r1' }));

      expect(await outcome).toEqual({ kind: 'inactive', status: ConnectionStatus.Revoked });
      const after = await services.connections.findSealedById(id);
      expect(after).toMatchObject({ sealedAccessToken: null, sealedRefreshToken: null, record: { status: ConnectionStatus.Revoked, version: revoked?.version } });
    });

    it.each<ProviderErrorKind>(['invalid_grant', 'invalid_client', 'transient', 'rejected'])(
      'marks nothing when the provider answers %s after the user reconnected',
      async (kind) => {
        const { id } = await connect('acme');
        const held = services.provider.holds();

        const outcome = read(id);
        await held.reached;
        const reconnected = await reconnect('acme');
        held.fail(kind);

        expect(answer(await outcome)).toEqual({ kind: 'fresh', accessToken: 'reconnected-a' });
        expect(await row('acme')).toMatchObject({
          status: ConnectionStatus.Active,
          version: reconnected.version,
          lastError: null,
          refreshFailures: 0,
          nextRefreshAt: reconnected.nextRefreshAt,
        });
      },
    );

    it('marks nothing when the provider fails after the connection was revoked', async () => {
      const { id } = await connect('acme');
      const held = services.provider.holds();

      const outcome = read(id);
      await held.reached;
      await services.connections.markRevoked(id, 'connection.revoke');
      held.fail('invalid_grant');

      expect(await outcome).toEqual({ kind: 'inactive', status: ConnectionStatus.Revoked });
      expect(await row('acme')).toMatchObject({ status: ConnectionStatus.Revoked, lastError: null, refreshFailures: 0 });
    });
  });

  describe('failures mean something', () => {
    it('flags a connection whose refresh token has expired as needs_reauth without asking the provider', async () => {
      const { id } = await connect('acme', { refreshTokenExpiresInMs: 3600_000 });
      clock.advance(2 * 3600_000);

      expect(await read(id)).toMatchObject({ kind: 'needs_reauth', message: expect.stringContaining('refresh token expired') });
      expect(await row('acme')).toMatchObject({ status: ConnectionStatus.NeedsReauth, lastError: { code: ConnectionErrorCode.RefreshTokenExpired }, nextRefreshAt: null });
      expect(services.provider.calls).toEqual([]);
    });

    it('answers reads within the retry window after a transient failure without asking the provider again, but not an admin', async () => {
      const { id } = await connect('acme');
      services.provider.fails('transient', 30);

      expect(await read(id)).toMatchObject({ kind: 'transient', retryAfterSec: 30 });
      expect(await row('acme')).toMatchObject({
        status: ConnectionStatus.Active,
        lastError: { code: ConnectionErrorCode.ProviderUnavailable },
        refreshFailures: 1,
        nextRefreshAt: new Date(START + 30_000),
      });
      expect(await services.stored.find('acme', 'copyai')).toMatchObject({ accessToken: 'a0', refreshToken: 'r0' });

      clock.advance(10_000);
      expect(await read(id)).toMatchObject({ kind: 'transient', message: expect.stringContaining('backing off'), retryAfterSec: 20 });
      expect(services.provider.calls).toHaveLength(1);
      expect((await leaseState(id))?.leased).toBe(false);

      services.provider.answers(issuedTokens('a1', { refreshToken: 'r1' }));
      expect(answer(await adminRefresh(id))).toEqual({ kind: 'refreshed', accessToken: 'a1' });
      expect(services.provider.calls).toHaveLength(2);
      expect(await row('acme')).toMatchObject({ lastError: null, refreshFailures: 0 });
    });

    it('turns invalid_grant into needs_reauth and never asks again, whoever asks', async () => {
      const { id } = await connect('acme');
      services.provider.fails('invalid_grant');

      expect(await read(id)).toMatchObject({ kind: 'needs_reauth' });
      expect(await row('acme')).toMatchObject({ status: ConnectionStatus.NeedsReauth, lastError: { code: ConnectionErrorCode.InvalidGrant }, nextRefreshAt: null });

      clock.advance(24 * 3600_000);
      expect(await read(id)).toEqual({ kind: 'inactive', status: ConnectionStatus.NeedsReauth });
      expect(await adminRefresh(id)).toEqual({ kind: 'inactive', status: ConnectionStatus.NeedsReauth });
      expect(await replica.leases.claimDue('copyai', 10)).toBe(0);
      expect(services.provider.calls).toHaveLength(1);
    });

    it('turns invalid_client into misconfigured, leaving the connection active with its tokens', async () => {
      const { id, version } = await connect('acme');
      services.provider.fails('invalid_client');

      expect(await read(id)).toMatchObject({ kind: 'misconfigured' });
      expect(await services.stored.find('acme', 'copyai')).toMatchObject({
        status: ConnectionStatus.Active,
        version,
        accessToken: 'a0',
        refreshToken: 'r0',
        lastError: { code: ConnectionErrorCode.InvalidClient },
        nextRefreshAt: new Date(START + MISCONFIGURED_RETRY_MS),
      });
      expect(await leaseState(id)).toEqual({ version, status: ConnectionStatus.Active, leased: false });
    });

    it('answers unreadable for a refresh token the key ring cannot open, asks nobody, and gives the lease back', async () => {
      // Stored under a key that has since left the ring.
      const retiredKey = new ConnectionSealer(new TokenCipher(KeyRing.parse(testKeyRing('retired'))));
      const { id, version } = await connect('acme', { repository: new PostgresConnectionRepository(dataSource, retiredKey, clock) });

      expect(await read(id)).toMatchObject({ kind: 'unreadable', message: expect.stringContaining('"retired"') });
      expect(await leaseState(id)).toEqual({ version, status: ConnectionStatus.Active, leased: false });
      expect(await row('acme')).toMatchObject({ status: ConnectionStatus.Active, lastError: { code: ConnectionErrorCode.TokenUnreadable } });
      expect(services.provider.calls).toEqual([]);
    });
  });

  describe("the sweep's held claims", () => {
    it('lets a read refresh a row the sweep claimed; the sweep then does not ask the provider again', async () => {
      const { id } = await connect('acme');
      expect(await replica.leases.claimDue('copyai', 10)).toBe(1);
      services.provider.answers(issuedTokens('a1', { refreshToken: 'r1' }));

      expect(answer(await read(id))).toEqual({ kind: 'refreshed', accessToken: 'a1' });
      expect(replica.leases.takeNext('copyai')).toBeUndefined();
      const due = { stillNeeded: (record: { nextRefreshAt: Date | null }) => record.nextRefreshAt !== null && record.nextRefreshAt.getTime() <= clock.nowMs() };
      expect(answer(await replica.engine.refresh({ connectionId: id, trigger: 'sweep', claimed: true, ...due }))).toEqual({ kind: 'fresh', accessToken: 'a1' });
      expect(services.provider.calls).toEqual([{ provider: 'copyai', refreshToken: 'r0' }]);
    });

    it('lets a read take over a claim the running sweep holds but has not started', async () => {
      // One call at a time: the sweep claims both due rows, starts the older, holds the other.
      services = refreshServices(dataSource, { clock, metrics, config: serviceTierConfig({ REFRESH_CONCURRENCY: '1' }) });
      replica = services.replica();
      await connect('older', { refreshToken: 'r-older', dueInMs: -120_000 });
      const { id } = await connect('newer', { refreshToken: 'r-newer', dueInMs: -60_000 });
      const held = services.provider.holds();
      services.provider.answers(issuedTokens('newer-a1', { refreshToken: 'newer-r1' }));

      const sweep = new RefreshSweeper(services.config, replica.leases, replica.engine, clock).sweep();
      expect(await held.reached).toEqual({ provider: 'copyai', refreshToken: 'r-older' });
      expect(answer(await read(id))).toEqual({ kind: 'refreshed', accessToken: 'newer-a1' });
      held.answer(issuedTokens('older-a1', { refreshToken: 'older-r1' }));

      expect(await sweep).toMatchObject({ claimed: 2, outcomes: { refreshed: 1 } });
      expect(services.provider.calls.map((call) => call.refreshToken)).toEqual(['r-older', 'r-newer']);
      expect(await services.stored.find('older', 'copyai')).toMatchObject({ accessToken: 'older-a1', refreshToken: 'older-r1' });
      expect(await services.stored.find('newer', 'copyai')).toMatchObject({ accessToken: 'newer-a1', refreshToken: 'newer-r1' });
    });

    it('does not hold a claim whose answer comes back after a read claimed and refreshed the row', async () => {
      const { id } = await connect('acme');
      // The sweep's claim lands in the database, but its answer is still on its way back...
      const claimDue = services.refreshes.claimDueForRefresh.bind(services.refreshes);
      let landed!: () => void;
      let deliver!: () => void;
      const claimLanded = new Promise<void>((resolve) => (landed = resolve));
      const delivered = new Promise<void>((resolve) => (deliver = resolve));
      jest.spyOn(services.refreshes, 'claimDueForRefresh').mockImplementation(async (...args) => {
        const rows = await claimDue(...args);
        if (rows.length > 0) {
          landed();
          await delivered;
        }
        return rows;
      });
      const sweep = new RefreshSweeper(services.config, replica.leases, replica.engine, clock).sweep();
      await claimLanded;

      // ...when a read on the same replica claims the row (the lease is its own) and rotates r0 away.
      services.provider.answers(issuedTokens('a1', { refreshToken: 'r1' }));
      expect(answer(await read(id))).toEqual({ kind: 'refreshed', accessToken: 'a1' });
      // Presenting the spent r0 again would be refused by a rotating provider (or revoke the grant).
      services.provider.fails('invalid_grant');
      deliver();

      expect(await sweep).toMatchObject({ claimed: 1 });
      expect(services.provider.calls).toEqual([{ provider: 'copyai', refreshToken: 'r0' }]);
      expect(await services.stored.find('acme', 'copyai')).toMatchObject({ status: ConnectionStatus.Active, accessToken: 'a1', refreshToken: 'r1', lastError: null });
    });

    it('does not hold a row a read was already claiming when the sweep claimed it', async () => {
      const { id } = await connect('acme');
      // The read's claim is on its way (say, waiting for a pool connection) when the sweep's lands.
      const claimLease = services.refreshes.claimRefreshLease.bind(services.refreshes);
      let claiming!: () => void;
      let proceed!: () => void;
      const readClaiming = new Promise<void>((resolve) => (claiming = resolve));
      const readMayProceed = new Promise<void>((resolve) => (proceed = resolve));
      jest.spyOn(services.refreshes, 'claimRefreshLease').mockImplementationOnce(async (...args) => {
        claiming();
        await readMayProceed;
        return claimLease(...args);
      });
      services.provider.answers(issuedTokens('a1', { refreshToken: 'r1' }));

      const reading = read(id);
      await readClaiming;
      expect(await replica.leases.claimDue('copyai', 10)).toBe(1);
      proceed();

      expect(answer(await reading)).toEqual({ kind: 'refreshed', accessToken: 'a1' });
      expect(replica.leases.takeNext('copyai')).toBeUndefined();
      expect(services.provider.calls).toEqual([{ provider: 'copyai', refreshToken: 'r0' }]);
    });
  });
});
