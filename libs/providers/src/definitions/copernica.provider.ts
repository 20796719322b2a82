import { ProviderDefinition } from '../provider-definition';

/** Copernica. Token exchange is an HTTP GET; the token never expires and goes in the query. */
export const copernica: ProviderDefinition = {
  id: 'copernica',
  displayName: 'Copernica',
  envPrefix: 'COPERNICA',
  defaultEndpoints: {
    authorizeUrl: 'https://www.copernica.com/en/authorize',
    tokenUrl: 'https://api.copernica.com/v2/token',
    apiUrl: 'https://api.copernica.com/v2',
  },
  requiredEndpoints: ['authorizeUrl', 'tokenUrl', 'apiUrl'],
  defaultScope: null,
};
