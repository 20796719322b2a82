/**
 * What the broker knows about one OAuth provider, as data plus a few hooks. Each provider is
 * one file in definitions/; the registry lists them. Nothing here touches the database or
 * the HTTP layer of the broker.
 */
export type ProviderId = 'copper' | 'copernica' | 'copyai';

/** Where a provider's endpoints live; each can be overridden by `<PREFIX>_<NAME>_URL`. */
export interface ProviderEndpoints {
  authorizeUrl?: string;
  tokenUrl?: string;
  apiUrl?: string;
  revokeUrl?: string;
}

/** What a provider's identity endpoint told us about the user who connected. */
export interface ProviderIdentity {
  id?: string;
  name?: string;
  email?: string;
  company?: string;
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
  /**
   * How the provider returns the user: `query` (GET ?code&state) or `form_post` (a cross-site
   * POST with code and state in a form body, as Copper does).
   */
  callback: 'query' | 'form_post';
  /** `form_post`: RFC 6749 form POST. `query_get`: an HTTP GET with everything in the query (Copernica). */
  tokenExchange: 'form_post' | 'query_get';
  /** How an API call presents the token. */
  tokenPresentation: 'bearer_header' | 'access_token_query';
  /** The identity endpoint, relative to the API URL, and how to read its answer. */
  identity?: { path: string; read(body: Record<string, unknown>): ProviderIdentity };
  /** RFC 7009 revocation when a revoke URL is configured; `none` when the provider has no API for it. */
  revocation: 'rfc7009' | 'none';
  /**
   * Whether PKCE (S256) is sent unless `<PREFIX>_USE_PKCE` says otherwise: on where the provider is a
   * plain RFC 6749 server (it ignores parameters it does not know), off where the provider is known not to use it.
   */
  pkceByDefault: boolean;
  /** Providers that silently drop short `state` values (Copernica: 32). Ours are 43 characters. */
  minStateLength?: number;
}
