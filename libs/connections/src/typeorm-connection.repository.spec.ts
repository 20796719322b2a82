import { ManualClock } from '@app/common';
import { KeyRing, TokenCipher } from '@app/crypto';
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { openTestDataSource, truncateAll } from '../../../test/support/test-database';
import { ConnectionUnreadableError } from './connection.errors';
import { ConnectionStatus } from './connection.model';
import { TypeormConnectionRepository } from './typeorm-connection.repository';

const key = (kid: string): string => `${kid}:${randomBytes(32).toString('base64')}`;

describe('TypeormConnectionRepository (real Postgres)', () => {
  let dataSource: DataSource;
  let repository: TypeormConnectionRepository;
  const clock = new ManualClock(Date.UTC(2026, 10, 23, 12));
  const ring = KeyRing.parse(`${key('k2')},${key('k1')}`);

  beforeAll(async () => {
    dataSource = await openTestDataSource();
  });
  afterAll(async () => dataSource.destroy());
  beforeEach(async () => {
    await truncateAll(dataSource);
    repository = new TypeormConnectionRepository(dataSource, new TokenCipher(ring), clock);
  });

  const connect = (account: string, accessToken: string, refreshToken: string | null = null) =>
    repository.saveConnected({
      account,
      provider: 'copyai',
      tokens: { accessToken, refreshToken, tokenType: 'Bearer', scope: 'read', expiresAt: new Date(clock.nowMs() + 3600_000) },
      identity: { id: 'u-1', email: 'ada@example.test' },
      nextRefreshAt: new Date(clock.nowMs() + 2880_000),
    });

  it('stores tokens only as ciphertext: no column of the raw row contains the plaintext', async () => {
    const record = await connect('acme', 'cai_at_PLAINTEXT_ACCESS_1234', 'cai_rt_PLAINTEXT_REFRESH_5678');
    const [raw] = await dataSource.query(`SELECT row_to_json(c)::text AS json, access_key_id, refresh_key_id FROM connections c WHERE id = $1`, [record.id]);
    expect(raw.json).not.toContain('PLAINTEXT_ACCESS');
    expect(raw.json).not.toContain('PLAINTEXT_REFRESH');
    expect([raw.access_key_id, raw.refresh_key_id]).toEqual(['k2', 'k2']);
    const opened = await repository.findWithTokens('acme', 'copyai');
    expect(opened).toMatchObject({ accessToken: 'cai_at_PLAINTEXT_ACCESS_1234', refreshToken: 'cai_rt_PLAINTEXT_REFRESH_5678', identity: { id: 'u-1' } });
  });

  it('binds ciphertext to its row: swapped between two rows, neither opens', async () => {
    const a = await connect('acme', 'token-of-acme');
    const b = await connect('globex', 'token-of-globex');
    await dataSource.query(
      `UPDATE connections SET access_token_sealed = CASE id WHEN $1::uuid THEN (SELECT access_token_sealed FROM connections WHERE id = $2)
         ELSE (SELECT access_token_sealed FROM connections WHERE id = $1) END WHERE id IN ($1, $2)`,
      [a.id, b.id],
    );
    await expect(repository.findWithTokens('acme', 'copyai')).rejects.toThrow(ConnectionUnreadableError);
    await expect(repository.findWithTokens('globex', 'copyai')).rejects.toThrow(ConnectionUnreadableError);
  });

  it('binds ciphertext to its field: the refresh token copied into the access column does not open', async () => {
    await connect('acme', 'access-value', 'refresh-value');
    await dataSource.query(`UPDATE connections SET access_token_sealed = refresh_token_sealed`);
    await expect(repository.findWithTokens('acme', 'copyai')).rejects.toMatchObject({ reason: 'tampered' });
  });

  it('rejects a flipped byte, naming the connection but never the data', async () => {
    const record = await connect('acme', 'secret-access-value');
    const [{ sealed }] = await dataSource.query(`SELECT access_token_sealed AS sealed FROM connections WHERE id = $1`, [record.id]);
    const parts = (sealed as string).split('.');
    const body = Buffer.from(parts[3], 'base64url');
    body[0] ^= 0x01;
    parts[3] = body.toString('base64url');
    await dataSource.query(`UPDATE connections SET access_token_sealed = $2 WHERE id = $1`, [record.id, parts.join('.')]);
    const error = await repository.findWithTokens('acme', 'copyai').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionUnreadableError);
    expect((error as Error).message).toContain(record.id);
    expect((error as Error).message).not.toContain('secret-access-value');
    expect((error as Error).message).not.toContain(parts[3]);
  });

  it('names the missing key when a value was sealed under a key no longer in the ring', async () => {
    await connect('acme', 'sealed-under-k2');
    const withoutK2 = new TypeormConnectionRepository(dataSource, new TokenCipher(KeyRing.parse(key('k3'))), clock);
    await expect(withoutK2.findWithTokens('acme', 'copyai')).rejects.toMatchObject({ keyId: 'k2', reason: 'unknown_key' });
  });

  it('reconnecting replaces the tokens, keeps the row and clears needs_reauth', async () => {
    const first = await connect('acme', 'old-access', 'old-refresh');
    await repository.markNeedsReauth(first.id, first.version, { code: 'invalid_grant', message: 'refresh token revoked' });
    expect((await repository.findOne('acme', 'copyai'))?.status).toBe(ConnectionStatus.NeedsReauth);
    const second = await connect('acme', 'new-access', 'new-refresh');
    expect(second.id).toBe(first.id);
    expect(second.status).toBe(ConnectionStatus.Active);
    expect(second.lastError).toBeNull();
    expect(second.version).toBeGreaterThan(first.version);
    expect(await repository.findWithTokens('acme', 'copyai')).toMatchObject({ accessToken: 'new-access', refreshToken: 'new-refresh' });
  });

  it('fences refresh writes: a stale version writes nothing', async () => {
    const record = await connect('acme', 'a0', 'r0');
    const tokens = (n: number) => ({ accessToken: `a${n}`, refreshToken: `r${n}`, expiresAt: new Date(clock.nowMs() + 7200_000) });
    const fresh = await repository.saveRefreshed({ id: record.id, expectedVersion: record.version, tokens: tokens(1), nextRefreshAt: null });
    expect(fresh?.record.version).toBe(record.version + 1);
    const stale = await repository.saveRefreshed({ id: record.id, expectedVersion: record.version, tokens: tokens(2), nextRefreshAt: null });
    expect(stale).toBeNull();
    expect(await repository.findWithTokens('acme', 'copyai')).toMatchObject({ accessToken: 'a1', refreshToken: 'r1' });
  });

  it('fences failure writes: a reconnect landing between the read and the write is not flagged', async () => {
    const read = await connect('acme', 'a0', 'r0');
    // The user reconnects while a refresh of the old grant is failing.
    const reconnected = await connect('acme', 'a1', 'r1');

    expect(await repository.markNeedsReauth(read.id, read.version, { code: 'invalid_grant', message: 'old grant refused' })).toBeNull();
    expect(await repository.recordRefreshFailure(read.id, read.version, { code: 'provider_unavailable', message: 'x' }, new Date(clock.nowMs() + 60_000))).toBe(false);

    const now = await repository.findOne('acme', 'copyai');
    expect(now).toMatchObject({ status: ConnectionStatus.Active, version: reconnected.version, lastError: null, refreshFailures: 0 });
    expect(await repository.recordRefreshFailure(read.id, reconnected.version, { code: 'provider_unavailable', message: 'x' }, null)).toBe(true);
    expect(await repository.markNeedsReauth(read.id, reconnected.version, { code: 'invalid_grant', message: 'refused' })).toMatchObject({
      status: ConnectionStatus.NeedsReauth,
    });
  });

  it('keeps the current refresh token when a refresh response carries none', async () => {
    const record = await connect('acme', 'a0', 'r0');
    await repository.saveRefreshed({
      id: record.id,
      expectedVersion: record.version,
      tokens: { accessToken: 'a1', refreshToken: null, expiresAt: null },
      nextRefreshAt: null,
    });
    expect(await repository.findWithTokens('acme', 'copyai')).toMatchObject({ accessToken: 'a1', refreshToken: 'r0' });
  });

  it('revoking erases both tokens', async () => {
    const record = await connect('acme', 'a0', 'r0');
    const revoked = await repository.markRevoked(record.id);
    expect(revoked).toMatchObject({ status: ConnectionStatus.Revoked, hasRefreshToken: false });
    const [raw] = await dataSource.query(`SELECT access_token_sealed, refresh_token_sealed FROM connections WHERE id = $1`, [record.id]);
    expect(raw).toEqual({ access_token_sealed: null, refresh_token_sealed: null });
    await expect(repository.findWithTokens('acme', 'copyai')).rejects.toThrow(ConnectionUnreadableError);
  });

  it('lists with filters and a cursor that pages through every row once', async () => {
    for (let i = 0; i < 7; i++) await connect(`acct-${i}`, `t${i}`);
    const acct3 = (await repository.findOne('acct-3', 'copyai'))!;
    await repository.markNeedsReauth(acct3.id, acct3.version, { code: 'invalid_grant', message: 'x' });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await repository.list({ provider: 'copyai' }, cursor, 3);
      seen.push(...page.items.map((c) => c.account));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual(['acct-0', 'acct-1', 'acct-2', 'acct-3', 'acct-4', 'acct-5', 'acct-6']);
    const needing = await repository.list({ status: ConnectionStatus.NeedsReauth }, null, 10);
    expect(needing.items.map((c) => c.account)).toEqual(['acct-3']);
    await expect(repository.list({}, 'not-a-cursor', 10)).rejects.toMatchObject({ code: 'validation_failed' });
  });

  it('records usage in one batch and never moves last_used_at backwards', async () => {
    const a = await connect('acme', 'a');
    const b = await connect('globex', 'b');
    const later = new Date(Date.UTC(2026, 10, 23, 13));
    const earlier = new Date(Date.UTC(2026, 10, 23, 11));
    await repository.recordUsage(new Map([[a.id, later], [b.id, earlier]]));
    await repository.recordUsage(new Map([[a.id, earlier]]));
    expect((await repository.findById(a.id))?.lastUsedAt?.toISOString()).toBe(later.toISOString());
    expect((await repository.findById(b.id))?.lastUsedAt?.toISOString()).toBe(earlier.toISOString());
  });
});
