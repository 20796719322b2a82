import { ProviderError } from './provider-error';

/** A token endpoint's answer, normalised (RFC 6749 §5.1 plus the common refresh_token_expires_in). */
export interface IssuedTokens {
  accessToken: string;
  refreshToken: string | null;
  tokenType: string | null;
  scope: string | null;
  /** Seconds the access token lives, as the provider said; null: no expiry given. */
  expiresInSec: number | null;
  refreshTokenExpiresInSec: number | null;
}

export function readTokenResponse(provider: string, body: unknown): IssuedTokens {
  const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  if (typeof b.access_token !== 'string' || b.access_token === '') {
    throw new ProviderError('rejected', `${provider} answered the token request without an access_token`, { provider });
  }
  return {
    accessToken: b.access_token,
    refreshToken: typeof b.refresh_token === 'string' && b.refresh_token !== '' ? b.refresh_token : null,
    tokenType: typeof b.token_type === 'string' ? b.token_type : null,
    scope: typeof b.scope === 'string' ? b.scope : null,
    expiresInSec: seconds(b.expires_in),
    refreshTokenExpiresInSec: seconds(b.refresh_token_expires_in),
  };
}

function seconds(value: unknown): number | null {
  const n = typeof value === 'string' ? Number(value) : value;
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? Math.floor(n) : null;
}
