import { ProviderDefinition } from '../provider-definition';

/**
 * Copy.ai. No public OAuth endpoints: authorize and token URLs must be configured. Standard
 * form POST exchange with refresh tokens; revocation (RFC 7009) when COPYAI_REVOKE_URL is set.
 */
export const copyai: ProviderDefinition = {
  id: 'copyai',
  displayName: 'Copy.ai',
  envPrefix: 'COPYAI',
  defaultEndpoints: {
    apiUrl: 'https://api.copy.ai/api',
  },
  requiredEndpoints: ['authorizeUrl', 'tokenUrl', 'apiUrl'],
  defaultScope: null,
  callback: 'query',
  pkceByDefault: true,
  tokenExchange: 'form_post',
  tokenPresentation: 'bearer_header',
  revocation: 'rfc7009',
};
