import { readTokenFromAnswer } from '../derived-token';
import { defineProvider } from '../provider-definition';
import { readIdentity } from '../provider-identity';

/**
 * Copernica. The token exchange is an HTTP GET answering `{access_token}` only; the token never
 * expires and is presented as `?access_token=`. A state under 32 characters gets no code back.
 * The access token of its dashboard serves as an API key, presented the same way. Its REST v4
 * takes neither: it wants `Authorization: Bearer <JWT>`, minted from the token by a POST of
 * `access_token=…` to its authentication service and valid 24 hours.
 */
export const copernica = defineProvider({
  id: 'copernica',
  displayName: 'Copernica',
  envPrefix: 'COPERNICA',
  defaultEndpoints: {
    authorizeUrl: 'https://www.copernica.com/en/authorize',
    tokenUrl: 'https://api.copernica.com/v2/token',
    apiUrl: 'https://api.copernica.com/v2',
  },
  requiredEndpoints: ['authorizeUrl', 'tokenUrl', 'apiUrl'],
  defaultClientAuth: 'client_secret_post',
  defaultScope: null,
  callback: 'query',
  pkceByDefault: false,
  tokenExchange: 'query_get',
  tokenPresentation: 'access_token_query',
  identity: { path: '/identity', read: (body) => readIdentity(body, ['id', 'name', 'company']) },
  revocation: 'none',
  minStateLength: 32,
  staticCredential: {
    userEmail: 'none',
    hint: 'In the Copernica dashboard, open Configuration, then API access tokens, and create an access token for the REST API.',
    verification: 'identity',
    present: ({ apiKey }) => ({ headers: {}, query: { access_token: apiKey } }),
  },
  derivedToken: {
    api: 'v4',
    urlVariable: 'AUTHENTICATE_URL',
    defaultUrl: 'https://authenticate.copernica.com',
    defaultLifetimeSec: 86_400,
    mintForm: (stored) => ({ access_token: stored }),
    // The answer is the JWT as text; a JSON string, or an object carrying access_token, token or jwt, is taken too.
    readAnswer: (body) => readTokenFromAnswer(body, ['access_token', 'token', 'jwt']),
  },
});
