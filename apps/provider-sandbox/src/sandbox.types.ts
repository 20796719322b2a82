/**
 * The provider sandbox's public contract. The broker's e2e suites, the browser test, the
 * benchmarks and the demo code against these types; change them only together with them.
 */

import type { SandboxProvider } from './providers';

/** The providers come from the sandbox's registry (providers/index.ts), one file each. */
export type { SandboxProvider };
export { SANDBOX_PROVIDERS } from './providers';

export interface SandboxClient {
  clientId: string;
  clientSecret: string;
}

export interface SandboxOptions {
  /** Default 0 (an ephemeral port). */
  port?: number;
  /** Default '127.0.0.1'. */
  host?: string;
  /** Defaults: `{ clientId: '<provider>-client', clientSecret: '<provider>-secret' }`. */
  clients?: Partial<Record<SandboxProvider, SandboxClient>>;
  /**
   * Milliseconds since the epoch; default `Date.now`. Lets a test age codes and tokens
   * (code expiry, access-token expiry) without sleeping.
   */
  clock?: () => number;
}

export interface ProviderBehaviour {
  /** Added to token endpoint (and revoke) responses; default 0. */
  latencyMs: number;
  /**
   * `expires_in` issued. Copy.ai default 3600; Copper default null (no `expires_in`, no refresh
   * token, as Copper documents); Copernica tokens never expire (ignored). When refresh tokens are
   * issued and this is null, 3600 is used: a refresh token only makes sense for an expiring token.
   */
  tokenLifetimeSec: number | null;
  /** Copy.ai default true; Copper default false (when true Copper also sends `expires_in` + `refresh_token`); Copernica ignored. */
  issueRefreshToken: boolean;
  /** Default true: every refresh issues a new refresh token and the old one becomes invalid (invalid_grant if used again). */
  rotateRefreshTokens: boolean;
  /** If set, refresh tokens expire after this long and token responses include `refresh_token_expires_in`. */
  refreshTokenLifetimeSec: number | null;
  /** Default false; when true authorize requires an S256 `code_challenge` and the token endpoint the matching `code_verifier`. */
  requirePkce: boolean;
  /**
   * Default false; when true the token and revocation endpoints take client credentials only as
   * HTTP Basic (RFC 6749 section 2.3.1), whatever the provider otherwise accepts: a `client_secret`
   * in the body, alone or besides Basic, gets 401 invalid_client. Copernica's GET exchange ignores it.
   */
  requireBasicAuth: boolean;
  /** RFC 9207: when set, every callback (with a code or an error) carries `iss` with this value. Default null: no `iss`. */
  issuer: string | null;
  /**
   * When set, an authorization request the user allows is answered with this `error` instead of a
   * code (any string, even one a client must not echo, e.g. `server_error` or `Bad Code!`). Default null.
   */
  authorizeError: string | null;
  /** Lifetime of a minted derived token (its `exp`); null mints one without `exp`. Default 86400 (Copernica's 24 hours). */
  derivedTokenLifetimeSec: number | null;
  /** How the authentication endpoint answers: the JWT as text (default), as a JSON string, or as JSON `{"token": …}`. */
  derivedTokenAnswer: 'text' | 'json-string' | 'json-object';
}

export type InjectedFailure =
  /** e.g. 503, or 429 with Retry-After, or 400 invalid_grant, 401 invalid_client. */
  | { kind: 'status'; status: number; error?: string; retryAfterSec?: number }
  /** Accept the request and never answer (until `close()`). */
  | { kind: 'timeout' };

export interface SandboxEndpoints {
  authorizeUrl: string;
  tokenUrl: string;
  apiUrl: string;
  revokeUrl?: string;
  /** Where derived tokens are minted (Copernica's authentication service). */
  authenticateUrl?: string;
}

export interface SandboxUser {
  id: string;
  name: string;
  email: string;
  company: string;
}

export interface TokenResponse {
  access_token: string;
  token_type?: string;
  expires_in?: number;
  refresh_token?: string;
  refresh_token_expires_in?: number;
  scope?: string;
}

export interface TokenRequestCounts {
  authorizationCode: number;
  refresh: number;
  failuresInjected: number;
}

export interface SandboxStats {
  /** Every request that reached a token endpoint, by grant type (including those answered with an injected failure). */
  tokenRequests: Record<SandboxProvider, TokenRequestCounts>;
  /** Key: first 16 hex chars of sha256(refresh_token), never the token itself; value: times it was presented. */
  refreshTokenUses: Record<string, number>;
  /** Presentations of a refresh token already presented before (with rotation these were answered invalid_grant). */
  duplicateRefreshUses: number;
  /** invalid_grant answers the sandbox decided on (bad/used/expired code or refresh token); injected ones are not counted. */
  invalidGrants: number;
  /** Authenticated revocation requests (RFC 7009 answers 200 even for unknown tokens). */
  revocations: Record<SandboxProvider, number>;
  /** Requests to the identity endpoint (`/users/me`, `/identity`, `/api/me`), valid token or not. */
  identityRequests: Record<SandboxProvider, number>;
  /** PKCE: codes issued for an S256 `code_challenge`, and codes redeemed with the `code_verifier` that matched it. */
  pkce: Record<SandboxProvider, { challenged: number; verified: number }>;
  /** Requests that presented an API key (not an OAuth token) to the API: accepted, or refused (unknown key, wrong email, a header missing). */
  apiKeyChecks: Record<SandboxProvider, { accepted: number; refused: number }>;
  /** Derived tokens minted (Copernica's REST v4 JWTs from its authentication endpoint); refused or failed requests are not counted. */
  derivedTokenMints: Record<SandboxProvider, number>;
}

/** An endpoint a failure can be planned for: the token endpoint, or the authentication endpoint that mints derived tokens. */
export type FailingEndpoint = 'token' | 'authenticate';

export interface RegisterApiKeyOptions {
  /** The key's owner (default: the default user); Copper wants their email beside the key. */
  user?: SandboxUser | string;
  /** A key of your choosing instead of a random `<prefix>key_…` one. */
  apiKey?: string;
}

export interface RegisteredApiKey {
  apiKey: string;
  /** The owner's email (what Copper's X-PW-UserEmail must say). */
  userEmail: string;
}

export interface IssueTokensOptions {
  /** Override the access token lifetime; null = no expiry. 0 or less mints an already expired token. Ignored for Copernica. */
  expiresInSec?: number | null;
  user?: SandboxUser;
}

export interface ProviderSandbox {
  /** e.g. http://127.0.0.1:41234 */
  url: string;
  endpoints(p: SandboxProvider): SandboxEndpoints;
  /** Every broker environment variable for the three providers. */
  env(): Record<string, string>;
  configure(p: SandboxProvider, b: Partial<ProviderBehaviour>): void;
  /** The next `count` (default 1) requests to the endpoint (default the token endpoint: exchange or refresh) fail this way. */
  failNext(p: SandboxProvider, failure: InjectedFailure, count?: number, endpoint?: FailingEndpoint): void;
  /** Every request to the endpoint (default the token endpoint) fails until `clearFailures(p)`. */
  failUntilCleared(p: SandboxProvider, failure: InjectedFailure, endpoint?: FailingEndpoint): void;
  clearFailures(p?: SandboxProvider): void;
  /** Mint a token set directly (no dance) exactly as the token endpoint would; refresh, identity and revoke work with it. */
  issueTokens(p: SandboxProvider, opts?: IssueTokensOptions): TokenResponse;
  /** Makes an API key valid at the provider's API (identity and check endpoints), the provider's documented way. */
  registerApiKey(p: SandboxProvider, opts?: RegisterApiKeyOptions): RegisteredApiKey;
  stats(): SandboxStats;
  resetStats(): void;
  /** Behaviours, failures, codes, tokens and stats back to defaults. */
  reset(): void;
  /** Stops listening; also ends hung 'timeout' requests and open connections. */
  close(): Promise<void>;
}
