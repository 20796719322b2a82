/**
 * The lifecycle-event outbox against real Postgres (libs/connections/src/lifecycle-events.ts and
 * the repositories' statements): an event exists exactly when its change committed. A change
 * that commits records exactly one event with a snapshot free of sealed values; one that rolls
 * back, or a fenced write that matches no row, records none; a change that did not happen
 * (revoking a revoked connection, a second failure of a reported streak) records none; and the
 * streak bookkeeping (connection.refresh_failing / connection.recovered, provider.misconfigured)
 * reports each streak once.
 *
 * Two tests here FAIL on purpose, each showing a product bug (see their comments):
 * - a second transient failure written at the same clock instant as the one that opened the
 *   streak records connection.refresh_failing again;
 * - two unfenced revokes (markRevoked) racing on one row both record connection.revoked.
 */
import { ManualClock } from '@app/common';
import { KeyRing, TokenCipher } from '@app/crypto';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { openTestDataSource, testDatabaseUrl, truncateAll } from '../../../test/support/test-database';
import { ConnectionErrorCode, ConnectionRecord } from './connection.model';
import { ConnectionSealer } from './connection.sealer';
import { SNAPSHOT_FIELDS } from './lifecycle-events';
import { PostgresConnectionRefreshRepository } from './postgres-connection-refresh.repository';
import { PostgresConnectionRepository } from './postgres-connection.repository';

interface EventRow {
  seq: string;
  type: string;
  connection_id: string | null;
  account: string | null;
  provider: string;
  reason: string | null;
  connection: Record<string, unknown> | null;
}

const HOUR_MS = 3_600_000;
const unavailable = { code: ConnectionErrorCode.ProviderUnavailable, message: 'provider answered 503' };
const invalidClient = { code: ConnectionErrorCode.InvalidClient, message: 'client refused' };

describe('lifecycle events outbox (real Postgres)', () => {
  let dataSource: DataSource;
  let sealer: ConnectionSealer;
  let connections: PostgresConnectionRepository;
  let refreshes: PostgresConnectionRefreshRepository;
  const clock = new ManualClock(Date.UTC(2026, 10, 23, 12));

  beforeAll(async () => {
    dataSource = await openTestDataSource();
    sealer = new ConnectionSealer(new TokenCipher(KeyRing.parse(`k1:${randomBytes(32).toString('base64')}`)));
  });
  afterAll(async () => dataSource.destroy());
  beforeEach(async () => {
    await truncateAll(dataSource);
    clock.set(Date.UTC(2026, 10, 23, 12));
    connections = new PostgresConnectionRepository(dataSource, sealer, clock);
    refreshes = new PostgresConnectionRefreshRepository(dataSource, sealer, clock);
  });

  const events = (): Promise<EventRow[]> =>
    dataSource.query(`SELECT seq::text, type, connection_id, account, provider, reason, connection FROM lifecycle_events ORDER BY seq`);
  const types = async (): Promise<string[]> => (await events()).map((e) => e.type);
  /** A connection whose access token expires in an hour. */
  const connect = (account: string, provider = 'copyai', repository = connections): Promise<ConnectionRecord> =>
    repository.saveConnected({
      account,
      provider,
      tokens: { accessToken: `at-${account}`, refreshToken: `rt-${account}`, tokenType: 'Bearer', scope: 'read', expiresAt: new Date(clock.nowMs() + HOUR_MS) },
      identity: null,
      nextRefreshAt: new Date(clock.nowMs() + 0.8 * HOUR_MS),
    });
  const refreshed = (record: ConnectionRecord, version = record.version) =>
    refreshes.saveRefreshed({
      id: record.id,
      expectedVersion: version,
      tokens: { accessToken: `at2-${record.account}`, refreshToken: `rt2-${record.account}`, expiresAt: new Date(clock.nowMs() + HOUR_MS) },
      nextRefreshAt: new Date(clock.nowMs() + 0.8 * HOUR_MS),
    });
  /** Runs `work` with repositories whose every statement goes through one transaction, then rolls it back. */
  const inRolledBackTransaction = async (work: (repos: { connections: PostgresConnectionRepository; refreshes: PostgresConnectionRefreshRepository }) => Promise<unknown>) => {
    const runner = dataSource.createQueryRunner();
    await runner.connect();
    await runner.startTransaction();
    try {
      // The EntityManager of a running transaction: .query() and .transaction() (a savepoint) stay inside it.
      const inside = runner.manager as unknown as DataSource;
      await work({ connections: new PostgresConnectionRepository(inside, sealer, clock), refreshes: new PostgresConnectionRefreshRepository(inside, sealer, clock) });
      const seen: Array<{ count: number }> = await runner.query(`SELECT count(*)::int AS count FROM lifecycle_events`);
      return seen[0].count;
    } finally {
      await runner.rollbackTransaction();
      await runner.release();
    }
  };

  it('a committed connect records exactly one connection.connected whose snapshot is the record, with no sealed value', async () => {
    const record = await connect('acme');
    const recorded = await events();
    expect(recorded).toHaveLength(1);
    expect(recorded[0]).toMatchObject({ type: 'connection.connected', connection_id: record.id, account: 'acme', provider: 'copyai', reason: 'oauth2' });
    const snapshot = recorded[0].connection!;
    expect(Object.keys(snapshot).sort()).toEqual([...SNAPSHOT_FIELDS].sort());
    expect(snapshot).toMatchObject({ id: record.id, status: 'active', version: record.version, has_refresh_token: true });
    const [sealed] = await dataSource.query(`SELECT access_token_sealed, refresh_token_sealed FROM connections WHERE id = $1`, [record.id]);
    const text = JSON.stringify(snapshot);
    for (const value of [sealed.access_token_sealed, sealed.refresh_token_sealed, 'at-acme', 'rt-acme']) expect(text).not.toContain(value);
    expect(text).not.toMatch(/_sealed/);
  });

  it('a static credential store records connection.connected with reason api_key; a store fenced out by a newer row records none', async () => {
    const stored = await connections.saveStaticCredential({
      account: 'acme',
      provider: 'copyai',
      credential: { apiKey: 'key-acme-123', userEmail: null },
      expiresAt: null,
      identity: null,
      replacing: null,
    });
    expect(stored).not.toBeNull();
    const stale = await connections.saveStaticCredential({
      account: 'acme',
      provider: 'copyai',
      credential: { apiKey: 'key-acme-456', userEmail: null },
      expiresAt: null,
      identity: null,
      replacing: stored!.version - 1,
    });
    expect(stale).toBeNull();
    const recorded = await events();
    expect(recorded.map((e) => [e.type, e.reason])).toEqual([['connection.connected', 'api_key']]);
    expect(JSON.stringify(recorded[0].connection)).not.toContain('key-acme');
  });

  it('changes that roll back record no event (connect, revoke, needs_reauth, failure streaks)', async () => {
    const record = await connect('acme');
    clock.advance(2 * HOUR_MS);
    const before = (await events()).length;
    const seenInside = await inRolledBackTransaction(async (repos) => {
      await connect('globex', 'copyai', repos.connections);
      await repos.refreshes.recordRefreshFailure(record.id, record.version, unavailable, null);
      clock.advance(1_000);
      await repos.refreshes.recordRefreshFailure(record.id, record.version, invalidClient, null);
      await repos.refreshes.markNeedsReauth(record.id, record.version, { code: ConnectionErrorCode.InvalidGrant, message: 'refused' });
      await repos.connections.markRevoked(record.id, 'connection.revoke');
    });
    // Inside the transaction each change had recorded its event...
    expect(seenInside).toBe(before + 5);
    // ...and none survived the rollback, nor did any change.
    expect((await events()).length).toBe(before);
    expect(await dataSource.query(`SELECT count(*)::int AS n FROM provider_alerts WHERE misconfigured_since IS NOT NULL`)).toEqual([{ n: 0 }]);
    expect(await connections.findOne('acme', 'copyai')).toMatchObject({ status: 'active', version: record.version });
  });

  it('fenced writes that match no row record no event', async () => {
    const old = await connect('acme');
    const current = await connect('acme');
    clock.advance(2 * HOUR_MS);
    expect(await refreshes.markNeedsReauth(old.id, old.version, { code: ConnectionErrorCode.InvalidGrant, message: 'refused' })).toBeNull();
    expect(await refreshes.recordRefreshFailure(old.id, old.version, unavailable, null)).toBe(false);
    expect(await refreshes.recordRefreshFailure(old.id, old.version, invalidClient, null)).toBe(false);
    expect(await refreshed(old)).toBeNull();
    expect(await connections.markRevokedIfUnchanged(old.id, old.version, 'connection.revoke')).toBeNull();
    expect(await types()).toEqual(['connection.connected', 'connection.connected']);
    expect(await dataSource.query(`SELECT count(*)::int AS n FROM provider_alerts`)).toEqual([{ n: 0 }]);
    expect(current.version).toBe(old.version + 1);
  });

  it('needs_reauth records the error code as reason; revoking records the admin action once, not again for a revoked row', async () => {
    const acme = await connect('acme');
    const globex = await connect('globex');
    await refreshes.markNeedsReauth(acme.id, acme.version, { code: ConnectionErrorCode.InvalidGrant, message: 'refused' });
    expect(await connections.markRevoked(globex.id, 'provider.revoke_all')).toMatchObject({ status: 'revoked' });
    expect(await connections.markRevoked(globex.id, 'connection.revoke')).toMatchObject({ status: 'revoked' });
    const revokedAgain = await connections.findOne('globex', 'copyai');
    expect(await connections.markRevokedIfUnchanged(globex.id, revokedAgain!.version, 'connection.revoke')).toMatchObject({ status: 'revoked' });
    const recorded = (await events()).slice(2);
    expect(recorded.map((e) => [e.type, e.account, e.reason, e.connection?.status])).toEqual([
      ['connection.needs_reauth', 'acme', 'invalid_grant', 'needs_reauth'],
      ['connection.revoked', 'globex', 'provider.revoke_all', 'revoked'],
    ]);
  });

  it('refresh_failing: none while the token is valid, one when a failure streak runs past expiry, recovered once on success', async () => {
    const record = await connect('acme');
    clock.advance(0.8 * HOUR_MS);
    expect(await refreshes.recordRefreshFailure(record.id, record.version, unavailable, null)).toBe(true);
    clock.advance(0.1 * HOUR_MS);
    expect(await refreshes.recordRefreshFailure(record.id, record.version, unavailable, null)).toBe(true);
    expect(await types()).toEqual(['connection.connected']);
    // Past expiry: the streak is reported once, however long it lasts.
    for (let i = 0; i < 4; i++) {
      clock.advance(0.1 * HOUR_MS);
      expect(await refreshes.recordRefreshFailure(record.id, record.version, unavailable, null)).toBe(true);
    }
    // An invalid_client in the middle is not a transient failure and does not reopen it.
    clock.advance(1_000);
    await refreshes.recordRefreshFailure(record.id, record.version, invalidClient, null);
    expect(await types()).toEqual(['connection.connected', 'connection.refresh_failing', 'provider.misconfigured']);
    const failing = (await events())[1];
    expect(failing).toMatchObject({ account: 'acme', reason: 'provider_unavailable' });
    expect(failing.connection).toMatchObject({ status: 'active', last_error_code: 'provider_unavailable', refresh_failures: 3 });

    clock.advance(1_000);
    const saved = await refreshed(record);
    expect(saved).not.toBeNull();
    clock.advance(0.8 * HOUR_MS);
    await refreshed(saved!.record);
    const recorded = await events();
    expect(recorded.map((e) => e.type)).toEqual([
      'connection.connected',
      'connection.refresh_failing',
      'provider.misconfigured',
      'connection.recovered',
    ]);
    expect(recorded[3]).toMatchObject({ reason: 'refreshed', connection: expect.objectContaining({ status: 'active', refresh_failures: 0, last_error_code: null }) });
  });

  it('a failure streak ended by needs_reauth or a reconnect is not followed by recovered; a new streak is reported again', async () => {
    const record = await connect('acme');
    clock.advance(2 * HOUR_MS);
    await refreshes.recordRefreshFailure(record.id, record.version, unavailable, null);
    const again = await connect('acme');
    clock.advance(2 * HOUR_MS);
    await refreshes.recordRefreshFailure(again.id, again.version, unavailable, null);
    clock.advance(1_000);
    await refreshes.markNeedsReauth(again.id, again.version, { code: ConnectionErrorCode.InvalidGrant, message: 'refused' });
    expect(await types()).toEqual([
      'connection.connected',
      'connection.refresh_failing',
      'connection.connected',
      'connection.refresh_failing',
      'connection.needs_reauth',
    ]);
  });

  it('provider.misconfigured once per streak and provider, carrying only the provider; a success of that provider ends the streak', async () => {
    const acme = await connect('acme');
    const globex = await connect('globex');
    const copper = await connect('initech', 'copper');
    await refreshes.recordRefreshFailure(acme.id, acme.version, invalidClient, null);
    clock.advance(1_000);
    await refreshes.recordRefreshFailure(globex.id, globex.version, invalidClient, null);
    await refreshes.recordRefreshFailure(acme.id, acme.version, invalidClient, null);
    // A success at another provider does not end copyai's streak.
    await refreshed(copper);
    await refreshes.recordRefreshFailure(globex.id, globex.version, invalidClient, null);
    let recorded = (await events()).filter((e) => e.type === 'provider.misconfigured');
    expect(recorded).toEqual([expect.objectContaining({ provider: 'copyai', connection_id: null, account: null, connection: null, reason: 'invalid_client' })]);

    // A refresh with the client credentials working ends it; the next invalid_client is reported again.
    await refreshed(acme);
    await refreshes.recordRefreshFailure(globex.id, globex.version, invalidClient, null);
    // So does a code exchange (a connect).
    await connect('hooli');
    await refreshes.recordRefreshFailure(globex.id, globex.version, invalidClient, null);
    recorded = (await events()).filter((e) => e.type === 'provider.misconfigured');
    expect(recorded.map((e) => e.provider)).toEqual(['copyai', 'copyai', 'copyai']);
  });

  // Whether a failure opened the streak must come from the value before the write ("it was NULL"),
  // not from comparing the value after it with this write's time: a second transient failure at the
  // same clock reading (a ManualClock, or two failure writes of one connection within one
  // millisecond: an admin "refresh now" beside a read's refresh, neither held back by backoff)
  // would otherwise report the streak twice.
  it('a second failure at the same clock instant does not report the streak twice', async () => {
    const record = await connect('acme');
    clock.advance(2 * HOUR_MS);
    await refreshes.recordRefreshFailure(record.id, record.version, unavailable, null);
    await refreshes.recordRefreshFailure(record.id, record.version, unavailable, null);
    expect(await types()).toEqual(['connection.connected', 'connection.refresh_failing']);
  });

  // "Unless it was revoked already" must be read under the row lock: two unfenced revokes
  // (markRevoked; ConnectionRevoker.revoke falls back to it after three rounds of version changes)
  // that wait on the same lock both proceed once it is free, and a status read from the
  // statement's snapshot would still say 'active' to the second, recording a second
  // connection.revoked for a change that did not happen.
  it('two racing unfenced revokes of one connection record one connection.revoked', async () => {
    const record = await connect('acme');
    const holder = new Client({ connectionString: testDatabaseUrl() });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT id FROM connections WHERE id = $1 FOR UPDATE`, [record.id]);
      const racing = [connections.markRevoked(record.id, 'connection.revoke'), connections.markRevoked(record.id, 'provider.revoke_all')];
      // Both statements have taken their snapshot and wait for the row lock.
      for (let waited = 0; ; waited += 25) {
        const [{ waiting }] = await dataSource.query(
          // (The start of the statement: pg_stat_activity keeps only its first 1 kB.)
          `SELECT count(*)::int AS waiting FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'WITH before AS (SELECT id, status FROM connections%'`,
        );
        if (waiting === 2) break;
        if (waited > 10_000) throw new Error('the revokes never queued on the row lock');
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      await holder.query('COMMIT');
      await Promise.all(racing);
    } finally {
      await holder.end();
    }
    expect(await types()).toEqual(['connection.connected', 'connection.revoked']);
  });

  // A statement trigger fires for an INSERT of no rows too; every refresh write carries an event CTE
  // that usually inserts nothing, and must not wake every dispatcher.
  it('NOTIFYs lifecycle_event only for a statement that recorded an event', async () => {
    const record = await connect('acme');
    const listener = new Client({ connectionString: testDatabaseUrl() });
    await listener.connect();
    const heard: string[] = [];
    listener.on('notification', (message) => heard.push(message.channel));
    try {
      await listener.query('LISTEN lifecycle_event');
      const settle = async (): Promise<number> => {
        // A NOTIFY is delivered at commit; a round trip on the listener after that flushes it.
        await new Promise((resolve) => setTimeout(resolve, 200));
        await listener.query('SELECT 1');
        return heard.length;
      };
      await refreshed(record);
      await refreshes.recordRefreshFailure(record.id, record.version + 1, unavailable, null);
      expect(await settle()).toBe(0);
      await connections.markRevoked(record.id, 'connection.revoke');
      expect(await settle()).toBe(1);
    } finally {
      await listener.end();
    }
    expect(await types()).toEqual(['connection.connected', 'connection.revoked']);
  });
});
