import { KeyRing, TokenCipher } from '@app/crypto';
import { randomBytes } from 'node:crypto';
import { ConnectionUnreadableError } from './connection.errors';
import { AuthMode, ConnectionRecord, ConnectionStatus, SealedConnection } from './connection.model';
import { ConnectionSealer, asUnreadable } from './connection.sealer';

const key = (kid: string): string => `${kid}:${randomBytes(32).toString('base64')}`;

function record(id: string): ConnectionRecord {
  const at = new Date(Date.UTC(2026, 10, 23, 12));
  return {
    id,
    account: 'acme',
    provider: 'copyai',
    status: ConnectionStatus.Active,
    authMode: AuthMode.OAuth2,
    credentialUserEmail: null,
    tokenType: 'Bearer',
    scope: null,
    expiresAt: null,
    refreshTokenExpiresAt: null,
    hasRefreshToken: true,
    identity: null,
    createdAt: at,
    updatedAt: at,
    connectedAt: at,
    lastRefreshedAt: null,
    lastUsedAt: null,
    lastError: null,
    version: 2,
    nextRefreshAt: null,
    refreshFailures: 0,
    hasDerivedToken: false,
    derivedExpiresAt: null,
    derivedRefreshAt: null,
  };
}

describe('ConnectionSealer', () => {
  const sealer = new ConnectionSealer(new TokenCipher(KeyRing.parse(`${key('k2')},${key('k1')}`)));
  const sealedFor = (id: string, accessToken: string, refreshToken: string | null): SealedConnection => {
    const sealed = sealer.sealTokens(id, { accessToken, refreshToken, expiresAt: null });
    return { record: record(id), sealedAccessToken: sealed.access, sealedRefreshToken: sealed.refresh, sealedCredential: null, sealedDerivedToken: null };
  };
  const withApiKey = (id: string, apiKey: string): SealedConnection => ({
    record: { ...record(id), authMode: AuthMode.ApiKey, hasRefreshToken: false },
    sealedAccessToken: null,
    sealedRefreshToken: null,
    sealedCredential: sealer.sealCredential(id, apiKey),
    sealedDerivedToken: null,
  });

  it('opens what it sealed, and seals no refresh token when there is none', () => {
    const both = sealedFor('row-1', 'access-1', 'refresh-1');
    expect(both.sealedAccessToken).not.toContain('access-1');
    expect(sealer.unseal(both)).toMatchObject({ id: 'row-1', accessToken: 'access-1', refreshToken: 'refresh-1' });
    expect(sealer.openAccessToken(both)).toBe('access-1');

    const accessOnly = sealedFor('row-1', 'access-2', null);
    expect(accessOnly.sealedRefreshToken).toBeNull();
    expect(sealer.unseal(accessOnly)).toMatchObject({ accessToken: 'access-2', refreshToken: null });
  });

  it('opens the access token alone without touching the refresh token', () => {
    const row = sealedFor('row-1', 'access-1', 'refresh-1');
    const otherRow = sealedFor('row-2', 'access-2', 'refresh-2');
    const mixed = { ...row, sealedRefreshToken: otherRow.sealedRefreshToken };
    expect(sealer.openAccessToken(mixed)).toBe('access-1');
    expect(() => sealer.unseal(mixed)).toThrow(ConnectionUnreadableError);
  });

  it('serves the API key of an api_key connection, sealed under its own context', () => {
    const row = withApiKey('row-3', 'key-3');
    expect(row.sealedCredential).not.toContain('key-3');
    expect(sealer.openServed(row)).toBe('key-3');
    expect(sealer.unseal(row)).toMatchObject({ accessToken: 'key-3', refreshToken: null, authMode: AuthMode.ApiKey });
    // Not an access token of the row, nor the key of another row.
    expect(() => sealer.openAccessToken({ ...row, sealedAccessToken: row.sealedCredential })).toThrow(ConnectionUnreadableError);
    expect(() => sealer.openServed({ ...withApiKey('row-4', 'key-4'), sealedCredential: row.sealedCredential })).toThrow(ConnectionUnreadableError);
    expect(sealer.openServed(sealedFor('row-5', 'access-5', null))).toBe('access-5');
  });

  it('seals a derived token under its own context: it opens only as the derived token of its row', () => {
    const sealed = sealer.sealDerivedToken('row-6', 'jwt-6');
    expect(sealed).not.toContain('jwt-6');
    expect(sealer.openDerivedToken('row-6', sealed)).toBe('jwt-6');
    expect(() => sealer.openDerivedToken('row-7', sealed)).toThrow(ConnectionUnreadableError);
    expect(() => sealer.openAccessToken({ ...sealedFor('row-6', 'a', null), sealedAccessToken: sealed })).toThrow(ConnectionUnreadableError);
  });

  it('refuses a row without a token, naming the connection', () => {
    const empty: SealedConnection = { record: record('row-9'), sealedAccessToken: null, sealedRefreshToken: null, sealedCredential: null, sealedDerivedToken: null };
    expect(() => sealer.unseal(empty)).toThrow(expect.objectContaining({ connectionId: 'row-9', reason: 'no token stored' }));
    expect(() => sealer.openAccessToken(empty)).toThrow(expect.objectContaining({ connectionId: 'row-9', reason: 'no token stored' }));
  });

  it('names the key a value was sealed under when the ring lacks it, never the value', () => {
    const row = sealedFor('row-1', 'secret-access', 'secret-refresh');
    const withoutK2 = new ConnectionSealer(new TokenCipher(KeyRing.parse(key('k3'))));
    const error = (() => {
      try {
        return withoutK2.openAccessToken(row);
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(ConnectionUnreadableError);
    expect(error).toMatchObject({ connectionId: 'row-1', keyId: 'k2', reason: 'unknown_key' });
    expect((error as Error).message).not.toContain('secret-access');
  });

  it('passes on errors that are not the cipher refusing a value', () => {
    const other = new RangeError('something else');
    expect(asUnreadable(other, 'row-1', 'v1.k1.x.y')).toBe(other);
  });
});
