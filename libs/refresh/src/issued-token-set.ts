import type { TokenSet } from '@app/connections';
import type { IssuedTokens } from '@app/providers';

/** RFC 6749 §7.1 token types are registered names; the column holds 32 characters. */
const TOKEN_TYPE = /^[A-Za-z0-9._~+/-]{1,32}$/;

/**
 * A token endpoint's answer as the store keeps it: lifetimes in seconds become instants from
 * `now`, and a value that would not fit its column is dropped here rather than failing the
 * write that must store a freshly rotated refresh token (guarantee 10).
 */
export function issuedTokenSet(issued: IssuedTokens, now: Date): TokenSet {
  const after = (seconds: number | null): Date | null => (seconds ? new Date(now.getTime() + seconds * 1000) : null);
  return {
    accessToken: issued.accessToken,
    refreshToken: issued.refreshToken,
    // Not a token type we could pass on (too long, or not a name): treated as absent, so the stored or default type stands.
    tokenType: issued.tokenType !== null && TOKEN_TYPE.test(issued.tokenType) ? issued.tokenType : null,
    scope: issued.scope,
    expiresAt: after(issued.expiresInSec),
    refreshTokenExpiresAt: after(issued.refreshTokenExpiresInSec),
  };
}
