import { ManualClock } from '@app/common';
import { KeyRing, TokenCipher } from '@app/crypto';
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { StoredTokens } from '../../../test/support/stored-tokens';
import { openTestDataSource, truncateAll } from '../../../test/support/test-database';
import { ConnectionUnreadableError } from './connection.errors';
import { ConnectionErrorCode, ConnectionStatus } from './connection.model';
import { ConnectionSealer } from './connection.sealer';
import { PostgresConnectionRefreshRepository } from './postgres-connection-refresh.repository';
import { PostgresConnectionRepository } from './postgres-connection.repository';

const key = (kid: string): string => `${kid}:${randomBytes(32).toString('base64')}`;

describe('PostgresConnectionRepository (real Postgres)', () => {
  let dataSource: DataSource;
  let repository: PostgresConnectionRepository;
  let refreshes: PostgresConnectionRefreshRepository;
  let stored: StoredTokens;
  const clock = new ManualClock(Date.UTC(2026, 10, 23, 12));
  const ring = KeyRing.parse(`${key('k2')},${key('k1')}`);

  beforeAll(async () => {
    dataSource = await openTestDataSource();
  });
  afterAll(async () => dataSource.destroy());
  beforeEach(async () => {
    await truncateAll(dataSource);
    const sealer = new ConnectionSealer(new TokenCipher(ring));
    repository = new PostgresConnectionRepository(dataSource, sealer, clock);
    refreshes = new PostgresConnectionRefreshRepository(dataSource, sealer, clock);
    stored = new StoredTokens(repository, sealer);
  });

  const connect = (account: string, accessToken: string, refreshToken: string | null = null, provider = 'copyai') =>
    repository.saveConnected({
      account,
      provider,
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
    const opened = await stored.find('acme', 'copyai');
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
    await expect(stored.find('acme', 'copyai')).rejects.toThrow(ConnectionUnreadableError);
    await expect(stored.find('globex', 'copyai')).rejects.toThrow(ConnectionUnreadableError);
  });

  it('binds ciphertext to its field: the refresh token copied into the access column does not open', async () => {
    await connect('acme', 'access-value', 'refresh-value');
    await dataSource.query(`UPDATE connections SET access_token_sealed = refresh_token_sealed`);
    await expect(stored.find('acme', 'copyai')).rejects.toMatchObject({ reason: 'tampered' });
  });

  it('rejects a flipped byte, naming the connection but never the data', async () => {
    const record = await connect('acme', 'secret-access-value');
    const [{ sealed }] = await dataSource.query(`SELECT access_token_sealed AS sealed FROM connections WHERE id = $1`, [record.id]);
    const parts = (sealed as string).split('.');
    const body = Buffer.from(parts[3], 'base64url');
    body[0] ^= 0x01;
    parts[3] = body.toString('base64url');
    await dataSource.query(`UPDATE connections SET access_token_sealed = $2 WHERE id = $1`, [record.id, parts.join('.')]);
    const error = await stored.find('acme', 'copyai').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionUnreadableError);
    expect((error as Error).message).toContain(record.id);
    expect((error as Error).message).not.toContain('secret-access-value');
    expect((error as Error).message).not.toContain(parts[3]);
  });

  it('names the missing key when a value was sealed under a key no longer in the ring', async () => {
    await connect('acme', 'sealed-under-k2');
    const withoutK2 = new ConnectionSealer(new TokenCipher(KeyRing.parse(key('k3'))));
    await expect(new StoredTokens(repository, withoutK2).find('acme', 'copyai')).rejects.toMatchObject({ keyId: 'k2', reason: 'unknown_key' });
  });

  it('reconnecting replaces the tokens, keeps the row and clears needs_reauth', async () => {
    const first = await connect('acme', 'old-access', 'old-refresh');
    await refreshes.markNeedsReauth(first.id, first.version, { code: ConnectionErrorCode.InvalidGrant, message: 'refresh token revoked' });
    expect((await repository.findOne('acme', 'copyai'))?.status).toBe(ConnectionStatus.NeedsReauth);
    const second = await connect('acme', 'new-access', 'new-refresh');
    expect(second.id).toBe(first.id);
    expect(second.status).toBe(ConnectionStatus.Active);
    expect(second.lastError).toBeNull();
    expect(second.version).toBeGreaterThan(first.version);
    expect(await stored.find('acme', 'copyai')).toMatchObject({ accessToken: 'new-access', refreshToken: 'new-refresh' });
  });

  it('finds one connection, an account\'s connections by provider, and nothing for what does not exist', async () => {
    await connect('acme', 'c-access', null, 'copyai');
    await connect('acme', 'p-access', null, 'copper');
    await connect('globex', 'g-access');
    expect(await repository.findOne('acme', 'copper')).toMatchObject({ account: 'acme', provider: 'copper', status: ConnectionStatus.Active, hasRefreshToken: false });
    expect(await repository.findOne('acme', 'copernica')).toBeNull();
    expect((await repository.findByAccount('acme')).map((c) => c.provider)).toEqual(['copper', 'copyai']);
    expect(await repository.findByAccount('nobody')).toEqual([]);
    const sealed = await repository.findSealedByAccount('acme');
    expect(sealed.map((c) => c.record.provider)).toEqual(['copper', 'copyai']);
    expect(sealed.every((c) => c.sealedAccessToken !== null && c.sealedRefreshToken === null)).toBe(true);
    const byId = await repository.findSealedById(sealed[0].record.id);
    expect(byId?.record).toEqual(sealed[0].record);
    expect(byId?.sealedAccessToken).toBe(sealed[0].sealedAccessToken);
    expect(await repository.findSealedById('00000000-0000-4000-8000-000000000000')).toBeNull();
  });

  it('revoking erases both tokens', async () => {
    const record = await connect('acme', 'a0', 'r0');
    const revoked = await repository.markRevoked(record.id, 'connection.revoke');
    expect(revoked).toMatchObject({ status: ConnectionStatus.Revoked, hasRefreshToken: false });
    const [raw] = await dataSource.query(`SELECT access_token_sealed, refresh_token_sealed FROM connections WHERE id = $1`, [record.id]);
    expect(raw).toEqual({ access_token_sealed: null, refresh_token_sealed: null });
    await expect(stored.find('acme', 'copyai')).rejects.toThrow(ConnectionUnreadableError);
  });

  it('revokes only the version the caller revoked at the provider: a row that moved on keeps its tokens', async () => {
    const read = await connect('acme', 'a0', 'r0');
    const refreshed = await refreshes.saveRefreshed({
      id: read.id,
      expectedVersion: read.version,
      tokens: { accessToken: 'a1', refreshToken: 'r1', expiresAt: null },
      nextRefreshAt: null,
    });
    expect(await repository.markRevokedIfUnchanged(read.id, read.version, 'connection.revoke')).toBeNull();
    expect(await stored.find('acme', 'copyai')).toMatchObject({ status: ConnectionStatus.Active, accessToken: 'a1', refreshToken: 'r1' });

    const revoked = await repository.markRevokedIfUnchanged(read.id, refreshed!.record.version, 'connection.revoke');
    expect(revoked).toMatchObject({ status: ConnectionStatus.Revoked, hasRefreshToken: false, version: refreshed!.record.version + 1 });
    expect(await repository.markRevokedIfUnchanged('00000000-0000-4000-8000-000000000000', 1, 'connection.revoke')).toBeNull();
    expect(await repository.markRevoked('00000000-0000-4000-8000-000000000000', 'connection.revoke')).toBeNull();
  });

  it('records usage in one batch and never moves last_used_at backwards', async () => {
    const a = await connect('acme', 'a');
    const b = await connect('globex', 'b');
    const later = new Date(Date.UTC(2026, 10, 23, 13));
    const earlier = new Date(Date.UTC(2026, 10, 23, 11));
    await repository.recordUsage(new Map([[a.id, later], [b.id, earlier]]));
    await repository.recordUsage(new Map([[a.id, earlier]]));
    await repository.recordUsage(new Map());
    expect((await repository.findSealedById(a.id))?.record.lastUsedAt?.toISOString()).toBe(later.toISOString());
    expect((await repository.findSealedById(b.id))?.record.lastUsedAt?.toISOString()).toBe(earlier.toISOString());
  });
});
