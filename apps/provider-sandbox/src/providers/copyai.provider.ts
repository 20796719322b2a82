/**
 * Copy.ai (content generation). It publishes no OAuth endpoints, so this plays a textbook
 * RFC 6749 server: form-POST token endpoint with client credentials in the body (HTTP Basic
 * accepted too), expiring access tokens with rotating refresh tokens, PKCE (S256) when the
 * authorization request carries a challenge, `Authorization: Bearer` on the API and an RFC 7009
 * revocation endpoint.
 */
import { defineSandboxProvider, headerValue, rfc6749TokenResponse } from './provider-spec';

export const COPYAI_SCOPE = 'content:read content:write';

export const copyaiProvider = defineSandboxProvider({
  id: 'copyai',
  displayName: 'Copy.ai',
  envPrefix: 'COPYAI',
  extraEnv: { COPYAI_SCOPE },
  prefixes: { code: 'cai_ac_', access: 'cai_at_', refresh: 'cai_rt_', apiKey: 'cai_key_' },
  defaults: {
    latencyMs: 0,
    tokenLifetimeSec: 3600,
    issueRefreshToken: true,
    rotateRefreshTokens: true,
    refreshTokenLifetimeSec: null,
    requirePkce: false,
    requireBasicAuth: false,
    issuer: null,
    authorizeError: null,
    derivedTokenLifetimeSec: 86_400,
    derivedTokenAnswer: 'text',
  },
  paths: {
    authorize: ['/copyai/oauth/authorize'],
    decision: '/copyai/oauth/decision',
    token: '/copyai/oauth/token',
    api: '/copyai/api',
    identity: '/copyai/api/me',
    revoke: '/copyai/oauth/revoke',
  },
  tokenRequest: 'form-post',
  acceptsBasicAuth: true,
  callback: 'redirect',
  tokenPresentation: 'bearer-header',
  tokensExpire: true,
  refreshTokens: true,
  checkAuthorize: () => undefined,
  grantedScope: (requested) => (requested && requested.trim() !== '' ? requested : COPYAI_SCOPE),
  issuesCode: () => true,
  tokenResponse: (issued) => rfc6749TokenResponse(issued, true),
  identity: (user) => ({ id: user.id, name: user.name, email: user.email }),
  // Its documented API keys: x-copy-ai-api-key.
  presentedApiKey: (headers) => {
    const key = headerValue(headers, 'x-copy-ai-api-key');
    return key ? { key, complete: true } : undefined;
  },
  apiKeyNeedsEmail: false,
});
