import { ProviderDefinition } from '../provider-definition';

/** Copper CRM. Callback arrives as a cross-site form POST; tokens normally never expire. */
export const copper: ProviderDefinition = {
  id: 'copper',
  displayName: 'Copper',
  envPrefix: 'COPPER',
  defaultEndpoints: {
    authorizeUrl: 'https://app.copper.com/oauth/authorize',
    tokenUrl: 'https://app.copper.com/oauth/token',
    apiUrl: 'https://api.copper.com/developer_api/v1',
  },
  requiredEndpoints: ['authorizeUrl', 'tokenUrl', 'apiUrl'],
  defaultScope: 'developer/v1/all',
};
