import { ProviderDefinition } from '../provider-definition';

/** Copy.ai. No public OAuth endpoints: authorize and token URLs must be configured. */
export const copyai: ProviderDefinition = {
  id: 'copyai',
  displayName: 'Copy.ai',
  envPrefix: 'COPYAI',
  defaultEndpoints: {
    apiUrl: 'https://api.copy.ai/api',
  },
  requiredEndpoints: ['authorizeUrl', 'tokenUrl', 'apiUrl'],
  defaultScope: null,
};
