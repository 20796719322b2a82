import type { TokenSet } from '@app/connections';
import type { IssuedTokens } from '@app/providers';

/** A token endpoint's answer as the store keeps it: lifetimes in seconds become instants from `now`. */
export function issuedTokenSet(issued: IssuedTokens, now: Date): TokenSet {
  const after = (seconds: number | null): Date | null => (seconds ? new Date(now.getTime() + seconds * 1000) : null);
  return {
    accessToken: issued.accessToken,
    refreshToken: issued.refreshToken,
    tokenType: issued.tokenType,
    scope: issued.scope,
    expiresAt: after(issued.expiresInSec),
    refreshTokenExpiresAt: after(issued.refreshTokenExpiresInSec),
  };
}
