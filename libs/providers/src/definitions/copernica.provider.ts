import { defineProvider } from '../provider-definition';
import { readIdentity } from '../provider-identity';

/**
 * Copernica. The token exchange is an HTTP GET answering `{access_token}` only; the token never
 * expires and is presented as `?access_token=`. A state under 32 characters gets no code back.
 * The access token of its dashboard serves as an API key, presented the same way.
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
});
