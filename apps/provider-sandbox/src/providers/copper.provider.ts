/**
 * Copper (CRM). Quirks played here: the scope must be exactly `developer/v1/all`; the callback
 * arrives as a cross-site form POST to the redirect URI; tokens do not expire and come without a
 * refresh token (unless configured otherwise, which the broker must also handle); the API takes
 * `Authorization: Bearer`; there is no revocation endpoint.
 */
import { defineSandboxProvider, headerValue, rfc6749TokenResponse } from './provider-spec';

const COPPER_SCOPE = 'developer/v1/all';

export const copperProvider = defineSandboxProvider({
  id: 'copper',
  displayName: 'Copper',
  envPrefix: 'COPPER',
  extraEnv: {},
  prefixes: { code: 'cpr_ac_', access: 'cpr_at_', refresh: 'cpr_rt_', apiKey: 'cpr_key_' },
  defaults: {
    latencyMs: 0,
    tokenLifetimeSec: null,
    issueRefreshToken: false,
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
    authorize: ['/copper/oauth/authorize'],
    decision: '/copper/oauth/decision',
    token: '/copper/oauth/token',
    api: '/copper/developer_api/v1',
    identity: '/copper/developer_api/v1/users/me',
  },
  tokenRequest: 'form-post',
  acceptsBasicAuth: false,
  callback: 'form-post',
  tokenPresentation: 'bearer-header',
  tokensExpire: true,
  refreshTokens: true,
  checkAuthorize: (request) =>
    request.scope === COPPER_SCOPE
      ? undefined
      : { error: 'invalid_scope', description: `scope must be exactly ${COPPER_SCOPE}` },
  grantedScope: () => COPPER_SCOPE,
  issuesCode: () => true,
  tokenResponse: (issued) => rfc6749TokenResponse(issued, false),
  identity: (user) => ({ id: user.id, name: user.name, email: user.email }),
  // Copper's API keys: X-PW-AccessToken, X-PW-Application: developer_api and X-PW-UserEmail, all three.
  presentedApiKey: (headers) => {
    const key = headerValue(headers, 'x-pw-accesstoken');
    if (key === undefined) return undefined;
    const userEmail = headerValue(headers, 'x-pw-useremail');
    return { key, userEmail, complete: headerValue(headers, 'x-pw-application') === 'developer_api' && userEmail !== undefined };
  },
  apiKeyNeedsEmail: true,
});
