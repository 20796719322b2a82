import { ManualClock } from '@app/common';
import { KeyRing, TokenCipher } from '@app/crypto';
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { openTestDataSource, truncateAll } from '../../../test/support/test-database';
import { ConnectionErrorCode, ConnectionStatus } from './connection.model';
import { ConnectionSealer } from './connection.sealer';
import { PostgresConnectionListRepository } from './postgres-connection-list.repository';
import { PostgresConnectionRefreshRepository } from './postgres-connection-refresh.repository';
import { PostgresConnectionRepository } from './postgres-connection.repository';

describe('PostgresConnectionListRepository (real Postgres)', () => {
  let dataSource: DataSource;
  let repository: PostgresConnectionRepository;
  let refreshes: PostgresConnectionRefreshRepository;
  let listing: PostgresConnectionListRepository;
  const clock = new ManualClock(Date.UTC(2026, 10, 23, 12));

  beforeAll(async () => {
    dataSource = await openTestDataSource();
  });
  afterAll(async () => dataSource.destroy());
  beforeEach(async () => {
    await truncateAll(dataSource);
    const sealer = new ConnectionSealer(new TokenCipher(KeyRing.parse(`k1:${randomBytes(32).toString('base64')}`)));
    repository = new PostgresConnectionRepository(dataSource, sealer, clock);
    refreshes = new PostgresConnectionRefreshRepository(dataSource, sealer, clock);
    listing = new PostgresConnectionListRepository(dataSource);
  });

  const connect = (account: string, accessToken: string, provider = 'copyai') =>
    repository.saveConnected({
      account,
      provider,
      tokens: { accessToken, refreshToken: null, tokenType: 'Bearer', scope: 'read', expiresAt: new Date(clock.nowMs() + 3600_000) },
      identity: { id: 'u-1', email: 'ada@example.test' },
      nextRefreshAt: new Date(clock.nowMs() + 2880_000),
    });

  it('lists with filters and a cursor that pages through every row once', async () => {
    for (let i = 0; i < 7; i++) await connect(`acct-${i}`, `t${i}`);
    const acct3 = (await repository.findOne('acct-3', 'copyai'))!;
    await refreshes.markNeedsReauth(acct3.id, acct3.version, { code: ConnectionErrorCode.InvalidGrant, message: 'x' });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await listing.list({ provider: 'copyai' }, cursor, 3);
      seen.push(...page.items.map((c) => c.account));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual(['acct-0', 'acct-1', 'acct-2', 'acct-3', 'acct-4', 'acct-5', 'acct-6']);
    const needing = await listing.list({ status: ConnectionStatus.NeedsReauth }, null, 10);
    expect(needing.items.map((c) => c.account)).toEqual(['acct-3']);
    await expect(listing.list({}, 'not-a-cursor', 10)).rejects.toMatchObject({ code: 'validation_failed' });
  });

  it('orders by account then provider, combines filters, and ends on a full last page without a cursor', async () => {
    await connect('globex', 'g1', 'copyai');
    await connect('acme', 'a1', 'copyai');
    await connect('acme', 'a2', 'copper');
    const all = await listing.list({}, null, 3);
    expect(all.items.map((c) => `${c.account}/${c.provider}`)).toEqual(['acme/copper', 'acme/copyai', 'globex/copyai']);
    expect(all.nextCursor).toBeNull();
    expect(all.items.every((c) => !('accessToken' in c))).toBe(true);

    const first = await listing.list({}, null, 1);
    const second = await listing.list({}, first.nextCursor, 1);
    expect(second.items.map((c) => `${c.account}/${c.provider}`)).toEqual(['acme/copyai']);

    const both = await listing.list({ provider: 'copyai', status: ConnectionStatus.Active }, null, 10);
    expect(both.items.map((c) => c.account)).toEqual(['acme', 'globex']);
    expect(await listing.list({ provider: 'copernica' }, null, 10)).toEqual({ items: [], nextCursor: null });
  });

  it('counts connections by provider and status', async () => {
    await connect('a', 't1');
    const b = await connect('b', 't2');
    await connect('c', 't3', 'copper');
    await refreshes.markNeedsReauth(b.id, b.version, { code: ConnectionErrorCode.InvalidGrant, message: 'x' });
    const counts = await listing.countByProviderAndStatus();
    expect(counts.sort((x, y) => `${x.provider}${x.status}`.localeCompare(`${y.provider}${y.status}`))).toEqual([
      { provider: 'copper', status: ConnectionStatus.Active, count: 1 },
      { provider: 'copyai', status: ConnectionStatus.Active, count: 1 },
      { provider: 'copyai', status: ConnectionStatus.NeedsReauth, count: 1 },
    ]);
  });
});
