/**
 * What the broker knows about one OAuth provider, as data. Each provider is one file in
 * definitions/; the registry lists them. Nothing here touches the database or HTTP layer.
 */
export type ProviderId = 'copper' | 'copernica' | 'copyai';

/** Where a provider's endpoints live; each can be overridden by `<PREFIX>_<NAME>_URL`. */
export interface ProviderEndpoints {
  authorizeUrl?: string;
  tokenUrl?: string;
  apiUrl?: string;
  revokeUrl?: string;
}

export interface ProviderDefinition {
  id: ProviderId;
  displayName: string;
  /** Prefix of the provider's environment variables, e.g. `COPPER` → `COPPER_CLIENT_ID`. */
  envPrefix: string;
  /** Public endpoints; a provider without public endpoints (Copy.ai) leaves them out and they become required. */
  defaultEndpoints: ProviderEndpoints;
  /** Endpoints that must be known once the provider is enabled. */
  requiredEndpoints: ReadonlyArray<keyof ProviderEndpoints>;
  /** Scope sent on authorize; `null` when the provider takes none. */
  defaultScope: string | null;
}
