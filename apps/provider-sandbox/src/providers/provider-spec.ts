/**
 * What the sandbox needs to know to play one provider: data plus a few hooks. The generic
 * OAuth engine (../oauth-routes.ts) reads only this, so adding a provider is one more file here.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { ProviderBehaviour, SandboxProvider, SandboxUser, TokenResponse } from '../sandbox.types';

/** An error in RFC 6749 terms, before it is turned into a redirect, a form post or a JSON body. */
export interface OAuthError {
  error: string;
  description: string;
}

/** An authorization request after the checks every provider makes (known client, usable redirect URI). */
export interface AuthorizeRequest {
  clientId: string;
  redirectUri: string;
  responseType: string | undefined;
  scope: string | undefined;
  state: string | undefined;
  codeChallenge: string | undefined;
  codeChallengeMethod: string | undefined;
  user: SandboxUser;
}

/** A freshly issued token set, before a provider shapes it into its response body. */
export interface IssuedTokens {
  accessToken: string;
  tokenType: 'Bearer';
  expiresInSec: number | null;
  refreshToken?: string;
  refreshTokenExpiresInSec?: number | null;
  scope: string | undefined;
}

/** An API key as a request presented it, the provider's way. */
export interface PresentedApiKey {
  key: string;
  /** The email presented beside the key, where the provider wants one (Copper). */
  userEmail?: string;
  /** false when the request presents the key but not everything the provider wants with it (Copper's X-PW-Application). */
  complete: boolean;
}

/** One provider the sandbox plays. `Id` is its literal id (see defineSandboxProvider); elsewhere it is SandboxProvider. */
export interface ProviderSpec<Id extends string = SandboxProvider> {
  readonly id: Id;
  readonly displayName: string;
  /** Prefix of the broker's environment variables: `<PREFIX>_CLIENT_ID` and so on. */
  readonly envPrefix: string;
  /** Environment variables beyond the client and the endpoints. */
  readonly extraEnv: Readonly<Record<string, string>>;
  /** Random values carry these so a leak test can grep logs and responses for them. */
  readonly prefixes: { readonly code: string; readonly access: string; readonly refresh: string; readonly apiKey: string };
  readonly defaults: Readonly<ProviderBehaviour>;
  readonly paths: {
    /** The first is the one advertised; the others are accepted too. */
    readonly authorize: readonly string[];
    readonly decision: string;
    readonly token: string;
    /** Base of the provider's API, as the broker's `<PREFIX>_API_URL`. */
    readonly api: string;
    readonly identity: string;
    readonly revoke?: string;
    /**
     * Where derived tokens are minted (Copernica's authentication service: a form POST of
     * `access_token=…` answers a JWT), and an API path that takes one as a Bearer token.
     */
    readonly authenticate?: string;
    readonly derivedTokenCheck?: string;
  };
  /** `form-post`: RFC 6749 form POST with `grant_type`; `get-query`: Copernica's GET with everything in the query. */
  readonly tokenRequest: 'form-post' | 'get-query';
  /** Whether the token (and revoke) endpoint accepts client credentials as HTTP Basic besides the body. */
  readonly acceptsBasicAuth: boolean;
  /** `redirect`: 302 to the redirect URI with a query; `form-post`: an auto-submitting cross-site form POST. */
  readonly callback: 'redirect' | 'form-post';
  /** How an API call presents the access token. */
  readonly tokenPresentation: 'bearer-header' | 'access-token-query';
  readonly tokensExpire: boolean;
  readonly refreshTokens: boolean;
  /** Provider-specific checks on an authorization request; an error is sent back to the redirect URI. */
  checkAuthorize(request: AuthorizeRequest): OAuthError | undefined;
  /** The scope a grant records (and, where the provider echoes it, the token response carries). */
  grantedScope(requested: string | undefined): string | undefined;
  /** False when the provider, after consent, sends the user back without a code. */
  issuesCode(request: AuthorizeRequest): boolean;
  tokenResponse(issued: IssuedTokens): TokenResponse;
  identity(user: SandboxUser): Record<string, string>;
  /** The API key a request presents the provider's documented way, if any. */
  presentedApiKey(headers: IncomingHttpHeaders, query: URLSearchParams): PresentedApiKey | undefined;
  /** Whether an API key must come with its owner's email (Copper). */
  readonly apiKeyNeedsEmail: boolean;
}

/** A header's single value (a repeated header counts as absent: no provider documents one). */
export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** Declares a provider; the `const` type parameter keeps its id literal so the registry can derive SandboxProvider. */
export function defineSandboxProvider<const Id extends string>(spec: ProviderSpec<Id>): ProviderSpec<Id> {
  return spec;
}

/** The RFC 6749 section 5.1 body: only the fields that have a value. */
export function rfc6749TokenResponse(issued: IssuedTokens, withScope: boolean): TokenResponse {
  const body: TokenResponse = { access_token: issued.accessToken, token_type: issued.tokenType };
  if (issued.expiresInSec !== null) body.expires_in = issued.expiresInSec;
  if (issued.refreshToken !== undefined) body.refresh_token = issued.refreshToken;
  if (issued.refreshTokenExpiresInSec != null) body.refresh_token_expires_in = issued.refreshTokenExpiresInSec;
  if (withScope && issued.scope !== undefined) body.scope = issued.scope;
  return body;
}
