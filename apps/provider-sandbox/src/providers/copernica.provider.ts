/**
 * Copernica (email marketing). Quirks played here: authorize lives under `/en/` or `/nl/` and
 * takes no scope; a `state` shorter than 32 characters (or none) brings the user back with no
 * code and no error; the code is exchanged with an HTTP GET carrying the client secret in the
 * query (a POST gets 405) and the answer is `{access_token}` alone; tokens never expire and
 * cannot be refreshed; the API takes `?access_token=`; there is no revocation endpoint. Its
 * authentication service mints REST v4 JWTs (24 hours) from an access token or API key posted as
 * `access_token=…`, answering the JWT as text.
 */
import { defineSandboxProvider } from './provider-spec';

const MIN_STATE_LENGTH = 32;

export const copernicaProvider = defineSandboxProvider({
  id: 'copernica',
  displayName: 'Copernica',
  envPrefix: 'COPERNICA',
  extraEnv: {},
  prefixes: { code: 'cpn_ac_', access: 'cpn_at_', refresh: 'cpn_rt_', apiKey: 'cpn_key_' },
  defaults: {
    latencyMs: 0,
    tokenLifetimeSec: null,
    issueRefreshToken: false,
    rotateRefreshTokens: false,
    refreshTokenLifetimeSec: null,
    requirePkce: false,
    requireBasicAuth: false,
    issuer: null,
    authorizeError: null,
    derivedTokenLifetimeSec: 86_400,
    derivedTokenAnswer: 'text',
  },
  paths: {
    authorize: ['/copernica/en/authorize', '/copernica/nl/authorize'],
    decision: '/copernica/oauth/decision',
    token: '/copernica/v2/token',
    api: '/copernica/v2',
    identity: '/copernica/v2/identity',
    authenticate: '/copernica/authenticate',
    derivedTokenCheck: '/copernica/v4/_sandbox/check',
  },
  tokenRequest: 'get-query',
  acceptsBasicAuth: false,
  callback: 'redirect',
  tokenPresentation: 'access-token-query',
  tokensExpire: false,
  refreshTokens: false,
  checkAuthorize: () => undefined,
  grantedScope: () => undefined,
  issuesCode: (request) => (request.state?.length ?? 0) >= MIN_STATE_LENGTH,
  tokenResponse: (issued) => ({ access_token: issued.accessToken }),
  identity: (user) => ({ id: user.id, name: user.name, company: user.company }),
  // The dashboard's API access tokens go in ?access_token= like an OAuth token.
  presentedApiKey: (_headers, query) => {
    const key = query.get('access_token');
    return key ? { key, complete: true } : undefined;
  },
  apiKeyNeedsEmail: false,
});
