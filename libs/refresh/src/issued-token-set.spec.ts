import { IssuedTokens } from '@app/providers';
import { issuedTokenSet } from './issued-token-set';

const now = new Date('2026-11-30T10:00:00Z');
const issued = (overrides: Partial<IssuedTokens>): IssuedTokens => ({
  accessToken: 'at',
  refreshToken: 'rt',
  tokenType: 'Bearer',
  scope: null,
  expiresInSec: 3600,
  refreshTokenExpiresInSec: null,
  ...overrides,
});

describe('issuedTokenSet', () => {
  it('turns lifetimes into instants', () => {
    const set = issuedTokenSet(issued({ refreshTokenExpiresInSec: 86_400 }), now);
    expect(set.expiresAt).toEqual(new Date('2026-11-30T11:00:00Z'));
    expect(set.refreshTokenExpiresAt).toEqual(new Date('2026-12-01T10:00:00Z'));
    expect(issuedTokenSet(issued({ expiresInSec: null }), now).expiresAt).toBeNull();
  });

  it.each(['Bearer', 'bearer', 'DPoP', 'N_A', 'x'.repeat(32)])('keeps the token type %s', (tokenType) => {
    expect(issuedTokenSet(issued({ tokenType }), now).tokenType).toBe(tokenType);
  });

  it.each([['too long', 'B'.repeat(33)], ['empty', ''], ['with spaces', 'Bearer token'], ['markup', '<b>Bearer</b>']])(
    'drops a token type that would not fit its column or is no name (%s)',
    (_label, tokenType) => {
      expect(issuedTokenSet(issued({ tokenType }), now).tokenType).toBeNull();
    },
  );
});
