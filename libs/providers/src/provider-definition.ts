import type { ProviderId } from './provider-registry';

/**
 * What the broker knows about one OAuth provider, as data plus a few hooks. Each provider is
 * one file in definitions/; the registry lists them, and everything else that names a provider
 * (the ProviderId type, OpenAPI enums, "known providers" messages) is derived from that list.
 * Nothing here touches the database or the HTTP layer of the broker.
 */

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

/** How a caller presents a token or key to the provider's API: the `apply` of GET /tokens. */
export interface TokenPresentation {
  headers: Record<string, string>;
  query: Record<string, string>;
}

/** A static credential as a caller presents it to the provider. */
export interface StaticCredential {
  apiKey: string;
  /** Only where the provider wants one beside the key (Copper); null elsewhere. */
  userEmail: string | null;
}

/**
 * How a provider takes a static credential (an API key) instead of an OAuth grant: what the user
 * supplies, how the broker checks it before storing it, and how a caller presents it.
 */
export interface StaticCredentialDefinition {
  /** Whether the key comes with the email of its owner, which the provider wants beside it (Copper). */
  userEmail: 'required' | 'none';
  /** Where the user finds the key: one short sentence for the connect form. */
  hint: string;
  /**
   * How a key is checked before anything is stored: `identity` calls the provider's identity
   * endpoint with the key presented as `present` says (a refusal there rejects the key);
   * `not_supported` when the provider documents no way to check one.
   */
  verification: 'identity' | 'not_supported';
  /** The `apply` of GET /tokens for an `api_key` connection, and how the check presents the key. */
  present(credential: StaticCredential): TokenPresentation;
}

/**
 * A token the broker mints from the connection's stored token (or key) for an API that wants it
 * instead (Copernica's REST v4: a JWT from its authentication service). Served by GET /tokens
 * with `?api=`, minted on first use and again ahead of its expiry, never once per read.
 */
export interface DerivedTokenDefinition {
  /** The `?api=` value that asks for it. */
  api: string;
  /** The minting endpoint: `<PREFIX>_<variable>` overrides `defaultUrl`. */
  urlVariable: string;
  defaultUrl: string;
  /** How long a token lives when its answer does not say (no `exp` claim). */
  defaultLifetimeSec: number;
  /** The form body of the mint request for the stored token or key. */
  mintForm(stored: string): Record<string, string>;
  /** The token in the minting endpoint's answer (its body as text), or null when it holds none. */
  readAnswer(body: string): string | null;
}

/** How the client authenticates at the token and revocation endpoints (RFC 6749 §2.3.1). */
export type ClientAuthMethod = 'client_secret_post' | 'client_secret_basic';

/**
 * One provider. `Id` is the literal id of the definition (see defineProvider), which is how the
 * registry's list becomes the ProviderId union; elsewhere it is ProviderId.
 *
 * The fields follow a connection's life: configuration, the authorize request and its callback,
 * the code exchange, presenting the token, identity, revocation. Behaviour a provider adds later
 * (credentials that are not OAuth grants, tokens derived from the stored one) is another optional
 * field or hook here, read by the code that needs it, never a branch on a provider's id.
 */
export interface ProviderDefinition<Id extends string = ProviderId> {
  /** Lower-case letters and digits: it appears in URLs (`/connect/:provider`), cookie names and metrics labels. */
  id: Id;
  displayName: string;
  /** Prefix of the provider's environment variables, e.g. `COPPER` → `COPPER_CLIENT_ID`. */
  envPrefix: string;
  /** Public endpoints; a provider without public endpoints (Copy.ai) leaves them out and they become required. */
  defaultEndpoints: ProviderEndpoints;
  /** Endpoints that must be known once the provider is enabled. */
  requiredEndpoints: ReadonlyArray<keyof ProviderEndpoints>;
  /** The default of `<PREFIX>_CLIENT_AUTH`. A `query_get` exchange carries the credentials in its query whatever this says. */
  defaultClientAuth: ClientAuthMethod;

  /** Scope sent on authorize; `null` when the provider takes none. */
  defaultScope: string | null;
  /**
   * Whether PKCE (S256) is sent unless `<PREFIX>_USE_PKCE` says otherwise: on where the provider is a
   * plain RFC 6749 server (it ignores parameters it does not know), off where the provider is known not to use it.
   */
  pkceByDefault: boolean;
  /**
   * The shortest `state` the provider sends a code back for (Copernica: 32). The connect flow checks
   * its own state length against it when it builds the provider's strategy, so a change to how state
   * is made cannot leave users coming back from the provider without a code.
   */
  minStateLength?: number;
  /**
   * How the provider returns the user: `query` (a redirect, GET ?code&state) or `form_post` (a
   * cross-site form POST with code and state in the body, as Copper does). A cross-site POST carries
   * no SameSite=Lax cookie, so only a `form_post` provider's callback is bounced to a same-site GET
   * that does (see the connect controller).
   */
  callback: 'query' | 'form_post';

  /** `form_post`: RFC 6749 form POST. `query_get`: an HTTP GET with everything in the query (Copernica). */
  tokenExchange: 'form_post' | 'query_get';
  /** How an API call presents the token: the `apply` of GET /tokens and the identity request. */
  tokenPresentation: 'bearer_header' | 'access_token_query';
  /** The identity endpoint, relative to the API URL, and how to read its answer; absent when the provider documents none. */
  identity?: { path: string; read(body: Record<string, unknown>): ProviderIdentity };
  /** RFC 7009 revocation when a revoke URL is configured; `none` when the provider has no API for it. */
  revocation: 'rfc7009' | 'none';
  /** The provider's API keys, which the broker stores as `api_key` connections (DESIGN, "Static credentials"). */
  staticCredential: StaticCredentialDefinition;
  /** A token derived from the stored one for another API of the provider; absent for most. */
  derivedToken?: DerivedTokenDefinition;
}

/**
 * Declares a provider. The `const` type parameter keeps the id as its literal ('copper', not
 * string) while every other field is checked against ProviderDefinition, so the registry can
 * derive the ProviderId union from the definitions it lists.
 */
export function defineProvider<const Id extends string>(definition: ProviderDefinition<Id>): ProviderDefinition<Id> {
  return definition;
}
