import { defineProvider } from '../provider-definition';
import { readIdentity } from '../provider-identity';

/**
 * Copper CRM. The callback arrives as a cross-site form POST; tokens normally never expire and
 * carry no refresh token, but a response with expires_in + refresh_token is honoured. Its API
 * keys go with the email of the user who made them, in three X-PW-* headers.
 */
export const copper = defineProvider({
  id: 'copper',
  displayName: 'Copper',
  envPrefix: 'COPPER',
  defaultEndpoints: {
    authorizeUrl: 'https://app.copper.com/oauth/authorize',
    tokenUrl: 'https://app.copper.com/oauth/token',
    apiUrl: 'https://api.copper.com/developer_api/v1',
  },
  requiredEndpoints: ['authorizeUrl', 'tokenUrl', 'apiUrl'],
  defaultClientAuth: 'client_secret_post',
  defaultScope: 'developer/v1/all',
  callback: 'form_post',
  pkceByDefault: false,
  tokenExchange: 'form_post',
  tokenPresentation: 'bearer_header',
  identity: { path: '/users/me', read: (body) => readIdentity(body, ['id', 'name', 'email']) },
  revocation: 'none',
  staticCredential: {
    userEmail: 'required',
    hint: 'In Copper, open Settings, then Integrations, then API Keys, and generate a key. Enter it with the email address of the Copper user who generated it.',
    verification: 'identity',
    present: ({ apiKey, userEmail }) => ({
      headers: { 'X-PW-AccessToken': apiKey, 'X-PW-Application': 'developer_api', 'X-PW-UserEmail': userEmail ?? '' },
      query: {},
    }),
  },
});
