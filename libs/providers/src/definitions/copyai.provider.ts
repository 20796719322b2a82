import { defineProvider } from '../provider-definition';

/**
 * Copy.ai. No public OAuth endpoints: authorize and token URLs must be configured. Standard
 * form POST exchange with refresh tokens; revocation (RFC 7009) when COPYAI_REVOKE_URL is set.
 * Its documented API takes an API key in `x-copy-ai-api-key`, with no endpoint to check one.
 */
export const copyai = defineProvider({
  id: 'copyai',
  displayName: 'Copy.ai',
  envPrefix: 'COPYAI',
  defaultEndpoints: {
    apiUrl: 'https://api.copy.ai/api',
  },
  requiredEndpoints: ['authorizeUrl', 'tokenUrl', 'apiUrl'],
  defaultClientAuth: 'client_secret_post',
  defaultScope: null,
  callback: 'query',
  pkceByDefault: true,
  tokenExchange: 'form_post',
  tokenPresentation: 'bearer_header',
  revocation: 'rfc7009',
  staticCredential: {
    userEmail: 'none',
    hint: 'In Copy.ai, open Settings, then API, and copy your workspace API key.',
    verification: 'not_supported',
    present: ({ apiKey }) => ({ headers: { 'x-copy-ai-api-key': apiKey }, query: {} }),
  },
});
