import { ManualClock } from '@app/common';
import { KeyRing, TokenCipher } from '@app/crypto';
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { StoredTokens } from '../../../test/support/stored-tokens';
import { openTestDataSource, truncateAll } from '../../../test/support/test-database';
import { ConnectionErrorCode, ConnectionStatus } from './connection.model';
import { ConnectionSealer } from './connection.sealer';
import { PostgresConnectionRefreshRepository } from './postgres-connection-refresh.repository';
import { PostgresConnectionRepository } from './postgres-connection.repository';

const LEASE_MS = 30_000;
const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000';

describe('PostgresConnectionRefreshRepository (real Postgres)', () => {
  let dataSource: DataSource;
  let repository: PostgresConnectionRepository;
  let refreshes: PostgresConnectionRefreshRepository;
  let stored: StoredTokens;
  const clock = new ManualClock(Date.UTC(2026, 10, 23, 12));

  beforeAll(async () => {
    dataSource = await openTestDataSource();
  });
  afterAll(async () => dataSource.destroy());
  beforeEach(async () => {
    await truncateAll(dataSource);
    clock.set(Date.UTC(2026, 10, 23, 12));
    const sealer = new ConnectionSealer(new TokenCipher(KeyRing.parse(`k1:${randomBytes(32).toString('base64')}`)));
    repository = new PostgresConnectionRepository(dataSource, sealer, clock);
    refreshes = new PostgresConnectionRefreshRepository(dataSource, sealer, clock);
    stored = new StoredTokens(repository, sealer);
  });

  /** A connection whose refresh is due `dueInMs` from now (negative: overdue). */
  const connect = (account: string, accessToken: string, refreshToken: string | null = null, dueInMs = 2880_000, provider = 'copyai') =>
    repository.saveConnected({
      account,
      provider,
      tokens: { accessToken, refreshToken, tokenType: 'Bearer', scope: 'read', expiresAt: new Date(clock.nowMs() + 3600_000) },
      identity: null,
      nextRefreshAt: new Date(clock.nowMs() + dueInMs),
    });

  it('fences refresh writes: a stale version writes nothing', async () => {
    const record = await connect('acme', 'a0', 'r0');
    const tokens = (n: number) => ({ accessToken: `a${n}`, refreshToken: `r${n}`, expiresAt: new Date(clock.nowMs() + 7200_000) });
    const fresh = await refreshes.saveRefreshed({ id: record.id, expectedVersion: record.version, tokens: tokens(1), nextRefreshAt: null });
    expect(fresh?.record.version).toBe(record.version + 1);
    const stale = await refreshes.saveRefreshed({ id: record.id, expectedVersion: record.version, tokens: tokens(2), nextRefreshAt: null });
    expect(stale).toBeNull();
    expect(await stored.find('acme', 'copyai')).toMatchObject({ accessToken: 'a1', refreshToken: 'r1' });
  });

  it('fences failure writes: a reconnect landing between the read and the write is not flagged', async () => {
    const read = await connect('acme', 'a0', 'r0');
    // The user reconnects while a refresh of the old grant is failing.
    const reconnected = await connect('acme', 'a1', 'r1');
    const unavailable = { code: ConnectionErrorCode.ProviderUnavailable, message: 'x' };

    expect(await refreshes.markNeedsReauth(read.id, read.version, { code: ConnectionErrorCode.InvalidGrant, message: 'old grant refused' })).toBeNull();
    expect(await refreshes.recordRefreshFailure(read.id, read.version, unavailable, new Date(clock.nowMs() + 60_000))).toBe(false);

    const now = await repository.findOne('acme', 'copyai');
    expect(now).toMatchObject({ status: ConnectionStatus.Active, version: reconnected.version, lastError: null, refreshFailures: 0 });
    expect(await refreshes.recordRefreshFailure(read.id, reconnected.version, unavailable, null)).toBe(true);
    expect(await refreshes.markNeedsReauth(read.id, reconnected.version, { code: ConnectionErrorCode.InvalidGrant, message: 'refused' })).toMatchObject({
      status: ConnectionStatus.NeedsReauth,
    });
  });

  it('records a failure with its code, a retry time and a released lease, tokens untouched', async () => {
    const record = await connect('acme', 'a0', 'r0');
    await refreshes.claimRefreshLease(record.id, 'replica-a', clock.now(), LEASE_MS);
    const retryAt = new Date(clock.nowMs() + 60_000);
    expect(await refreshes.recordRefreshFailure(record.id, record.version, { code: ConnectionErrorCode.InvalidClient, message: 'client refused' }, retryAt)).toBe(true);
    const after = await repository.findOne('acme', 'copyai');
    expect(after).toMatchObject({ status: ConnectionStatus.Active, version: record.version, refreshFailures: 1, nextRefreshAt: retryAt });
    expect(after?.lastError).toEqual({ code: ConnectionErrorCode.InvalidClient, message: 'client refused', at: clock.now() });
    expect(await refreshes.refreshState(record.id, clock.now())).toEqual({ version: record.version, status: ConnectionStatus.Active, leased: false });
    expect(await stored.find('acme', 'copyai')).toMatchObject({ accessToken: 'a0', refreshToken: 'r0' });
  });

  it('keeps the current refresh token when a refresh response carries none', async () => {
    const record = await connect('acme', 'a0', 'r0');
    await refreshes.saveRefreshed({
      id: record.id,
      expectedVersion: record.version,
      tokens: { accessToken: 'a1', refreshToken: null, expiresAt: null },
      nextRefreshAt: null,
    });
    expect(await stored.find('acme', 'copyai')).toMatchObject({ accessToken: 'a1', refreshToken: 'r0' });
  });

  it('leases a row to one holder at a time until the lease runs out or goes back', async () => {
    const record = await connect('acme', 'a0', 'r0');
    const claimed = await refreshes.claimRefreshLease(record.id, 'replica-a', clock.now(), LEASE_MS);
    expect(claimed?.record).toMatchObject({ id: record.id, version: record.version });
    expect(claimed?.sealedRefreshToken).not.toBeNull();
    expect(await refreshes.refreshState(record.id, clock.now())).toEqual({ version: record.version, status: ConnectionStatus.Active, leased: true });

    expect(await refreshes.claimRefreshLease(record.id, 'replica-b', clock.now(), LEASE_MS)).toBeNull();
    expect(await refreshes.claimRefreshLease(record.id, 'replica-a', clock.now(), LEASE_MS)).not.toBeNull(); // its own lease, renewed

    await refreshes.releaseRefreshLease(record.id, 'replica-b'); // not b's to give back
    expect((await refreshes.refreshState(record.id, clock.now()))?.leased).toBe(true);
    clock.advance(LEASE_MS);
    expect((await refreshes.refreshState(record.id, clock.now()))?.leased).toBe(false);
    expect(await refreshes.claimRefreshLease(record.id, 'replica-b', clock.now(), LEASE_MS)).not.toBeNull(); // a crashed holder blocks nobody

    await refreshes.releaseRefreshLease(record.id, 'replica-b');
    expect((await refreshes.refreshState(record.id, clock.now()))?.leased).toBe(false);
    expect(await refreshes.refreshState(UNKNOWN_ID, clock.now())).toBeNull();
  });

  it('leases only active connections', async () => {
    const record = await connect('acme', 'a0', 'r0');
    await refreshes.markNeedsReauth(record.id, record.version, { code: ConnectionErrorCode.RefreshTokenExpired, message: 'expired' });
    expect(await refreshes.claimRefreshLease(record.id, 'replica-a', clock.now(), LEASE_MS)).toBeNull();
    expect(await refreshes.refreshState(record.id, clock.now())).toMatchObject({ status: ConnectionStatus.NeedsReauth, leased: false });
  });

  it('claims due connections of one provider, oldest due first, never one leased elsewhere', async () => {
    await connect('later', 'a', 'r', -1_000);
    await connect('oldest', 'a', 'r', -3_000);
    await connect('middle', 'a', 'r', -2_000);
    await connect('not-due', 'a', 'r', 60_000);
    await connect('other-provider', 'a', 'r', -5_000, 'copper');
    const held = await connect('held', 'a', 'r', -4_000);
    await refreshes.claimRefreshLease(held.id, 'replica-b', clock.now(), LEASE_MS);
    const reauth = await connect('needs-reauth', 'a', 'r', -6_000);
    await refreshes.markNeedsReauth(reauth.id, reauth.version, { code: ConnectionErrorCode.InvalidGrant, message: 'refused' });

    const first = await refreshes.claimDueForRefresh('copyai', 'replica-a', clock.now(), LEASE_MS, 2);
    expect(first.map((c) => c.record.account)).toEqual(['oldest', 'middle']);
    const rest = await refreshes.claimDueForRefresh('copyai', 'replica-a', clock.now(), LEASE_MS, 10);
    expect(rest.map((c) => c.record.account)).toEqual(['later']);
    expect(await refreshes.claimDueForRefresh('copyai', 'replica-c', clock.now(), LEASE_MS, 10)).toEqual([]);

    expect(await refreshes.releaseLeasesOf('replica-a')).toBe(3);
    expect(await refreshes.releaseLeasesOf('replica-a')).toBe(0);
    const again = await refreshes.claimDueForRefresh('copyai', 'replica-c', clock.now(), LEASE_MS, 10);
    expect(again.map((c) => c.record.account)).toEqual(['oldest', 'middle', 'later']);
  });

  it('lets replicas claim side by side without ever taking the same row', async () => {
    for (let i = 0; i < 40; i++) await connect(`acct-${String(i).padStart(2, '0')}`, 'a', 'r', -1_000 - i);
    const claims = await Promise.all(
      ['replica-a', 'replica-b', 'replica-c', 'replica-d'].map((owner) => refreshes.claimDueForRefresh('copyai', owner, clock.now(), LEASE_MS, 15)),
    );
    const ids = claims.flat().map((c) => c.record.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.length).toBeLessThanOrEqual(40);
    const [{ leased }] = await dataSource.query<Array<{ leased: number }>>(`SELECT count(*)::int AS leased FROM connections WHERE lease_owner IS NOT NULL`);
    expect(leased).toBe(ids.length);
    // What a concurrent claim skipped as locked is still there for the next one.
    const remaining = await refreshes.claimDueForRefresh('copyai', 'replica-e', clock.now(), LEASE_MS, 100);
    expect(ids.length + remaining.length).toBe(40);
  });
});
