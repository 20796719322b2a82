import { Injectable } from '@nestjs/common';
import { IncomingHttpHeaders } from 'node:http';
import { Agent, request } from 'undici';
import { jwtExpiry } from './derived-token';
import { ProviderDefinition, ProviderIdentity, StaticCredential, TokenPresentation } from './provider-definition';
import { ProviderError } from './provider-error';
import { providerDefinition, ProviderId } from './provider-registry';
import { ProviderSettings } from './provider-settings';
import { IssuedTokens, readTokenResponse } from './token-response';

/** How long any single provider call may take before it counts as a (transient) failure. */
export const PROVIDER_TIMEOUT_MS = 10_000;

/** The most a provider answer may carry; a token answer is a few hundred bytes. */
export const MAX_PROVIDER_ANSWER_BYTES = 1024 * 1024;

/** How a caller presents `accessToken` to the provider's API (the `apply` of GET /tokens). */
export function presentToken(definition: ProviderDefinition, accessToken: string): TokenPresentation {
  return definition.tokenPresentation === 'access_token_query'
    ? { headers: {}, query: { access_token: accessToken } }
    : { headers: { Authorization: `Bearer ${accessToken}` }, query: {} };
}

/**
 * Every HTTP call the broker makes to a provider: code exchange, refresh, revocation,
 * identity. Each provider's quirks come from its definition; failures become ProviderError
 * with a kind the refresh engine and the connect flow act on.
 */
@Injectable()
export class ProviderClient {
  async exchangeCode(
    settings: ProviderSettings,
    grant: { code: string; redirectUri: string; codeVerifier?: string },
  ): Promise<IssuedTokens> {
    const definition = providerDefinition(settings.id);
    if (definition.tokenExchange === 'query_get') {
      // Copernica: GET …/token?client_id&client_secret&redirect_uri&code, answering {access_token}.
      // Its only way to authenticate the client: the credentials stay in the query whatever clientAuth says.
      const url = new URL(settings.endpoints.tokenUrl);
      const query: Record<string, string> = { code: grant.code, redirect_uri: grant.redirectUri, client_id: settings.clientId, client_secret: settings.clientSecret };
      if (grant.codeVerifier) query.code_verifier = grant.codeVerifier;
      for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
      return readTokenResponse(settings.id, await this.call(settings.id, 'token exchange', url, { method: 'GET' }));
    }
    const params: Record<string, string> = { grant_type: 'authorization_code', code: grant.code, redirect_uri: grant.redirectUri };
    if (grant.codeVerifier) params.code_verifier = grant.codeVerifier;
    return readTokenResponse(settings.id, await this.postForm(settings, settings.endpoints.tokenUrl, 'token exchange', params));
  }

  async refresh(settings: ProviderSettings, refreshToken: string): Promise<IssuedTokens> {
    const body = await this.postForm(settings, settings.endpoints.tokenUrl, 'refresh', { grant_type: 'refresh_token', refresh_token: refreshToken });
    return readTokenResponse(settings.id, body);
  }

  /** RFC 7009. `unsupported` when the provider has no revocation endpoint configured. */
  async revoke(settings: ProviderSettings, token: string, hint: 'access_token' | 'refresh_token'): Promise<'revoked' | 'unsupported'> {
    const definition = providerDefinition(settings.id);
    if (definition.revocation !== 'rfc7009' || !settings.endpoints.revokeUrl) return 'unsupported';
    await this.postForm(settings, settings.endpoints.revokeUrl, 'revocation', { token, token_type_hint: hint });
    return 'revoked';
  }

  /** The provider's idea of who connected, or null when it documents no identity endpoint. */
  async fetchIdentity(settings: ProviderSettings, accessToken: string): Promise<ProviderIdentity | null> {
    const definition = providerDefinition(settings.id);
    if (!definition.identity) return null;
    const url = new URL(settings.endpoints.apiUrl + definition.identity.path);
    const presentation = presentToken(definition, accessToken);
    for (const [k, v] of Object.entries(presentation.query)) url.searchParams.set(k, v);
    const body = await this.call(settings.id, 'identity request', url, {
      method: 'GET',
      headers: { ...presentation.headers, accept: 'application/json' },
    });
    return definition.identity.read((typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>);
  }

  /**
   * Checks a static credential the way the provider's definition says (its identity endpoint
   * with the key presented as a caller would), before anything is stored. Answers who the key
   * belongs to. A refusal (401, 403 or any other 4xx but 429) is ProviderError `rejected`; no
   * usable answer (network, timeout, 429, 5xx) is `transient`: the key was not judged.
   * Only for a provider whose verification is `identity`.
   */
  async verifyStaticCredential(provider: ProviderId, apiUrl: string, credential: StaticCredential): Promise<ProviderIdentity> {
    const definition = providerDefinition(provider);
    if (definition.staticCredential.verification !== 'identity' || !definition.identity) {
      throw new Error(`${provider} has no way to check an API key`);
    }
    const url = new URL(apiUrl + definition.identity.path);
    const presentation = definition.staticCredential.present(credential);
    for (const [k, v] of Object.entries(presentation.query)) url.searchParams.set(k, v);
    const what = 'API key check';
    const { status, headers, text } = await this.send(provider, what, url, { method: 'GET', headers: { ...presentation.headers, accept: 'application/json' } });
    if (REDIRECT_STATUSES.has(status)) throw unreachable(provider, what, false);
    const body = parseJson(text);
    if (status >= 200 && status < 300) return definition.identity.read((typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>);
    const retryAfterSec = retryAfter(headerValue(headers['retry-after']));
    if (status === 429 || status >= 500) {
      throw new ProviderError('transient', `${provider} answered the ${what} with HTTP ${status}`, { provider, status, retryAfterSec });
    }
    throw new ProviderError('rejected', `${provider} refused the API key (HTTP ${status})`, { provider, status });
  }

  /**
   * Mints the provider's derived token (DerivedTokenDefinition) from the stored token or key:
   * a form POST to `url`. Its expiry is the JWT's `exp`, else the definition's default lifetime
   * from `now`. A 401 or 403 means the stored token itself was refused: ProviderError
   * `invalid_grant` (the connection needs the user again); 429, 5xx and no answer are
   * `transient`; anything else, or an answer without a token, `rejected`.
   */
  async mintDerivedToken(provider: ProviderId, url: string, stored: string, now: Date): Promise<{ token: string; expiresAt: Date }> {
    const derived = providerDefinition(provider).derivedToken;
    if (!derived) throw new Error(`${provider} derives no token`);
    const what = 'token mint';
    const { status, headers, text } = await this.send(provider, what, new URL(url), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/jwt, application/json, text/plain' },
      body: new URLSearchParams(derived.mintForm(stored)).toString(),
    });
    if (REDIRECT_STATUSES.has(status)) throw unreachable(provider, what, false);
    if (status === 401 || status === 403) {
      throw new ProviderError('invalid_grant', `${provider}'s authentication service refused the stored token (HTTP ${status})`, { provider, status });
    }
    if (status === 429 || status >= 500) {
      throw new ProviderError('transient', `${provider} answered the ${what} with HTTP ${status}`, { provider, status, retryAfterSec: retryAfter(headerValue(headers['retry-after'])) });
    }
    const token = status >= 200 && status < 300 ? derived.readAnswer(text) : null;
    if (token === null) throw new ProviderError('rejected', `${provider} answered the ${what} with HTTP ${status} and no token`, { provider, status });
    return { token, expiresAt: jwtExpiry(token) ?? new Date(now.getTime() + derived.defaultLifetimeSec * 1000) };
  }

  /**
   * A form POST to the token or revocation endpoint, the client authenticated as its settings say
   * (RFC 6749 §2.3.1): `client_secret_post` puts client_id and client_secret in the body;
   * `client_secret_basic` sends them only as HTTP Basic (one method per request, and §4.1.3 asks
   * for client_id in the body only when the client does not authenticate).
   */
  private postForm(settings: ProviderSettings, url: string, what: string, params: Record<string, string>): Promise<unknown> {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    const form = new URLSearchParams(params);
    if (settings.clientAuth === 'client_secret_basic') {
      headers.authorization = basicAuthorization(settings.clientId, settings.clientSecret);
    } else {
      form.set('client_id', settings.clientId);
      form.set('client_secret', settings.clientSecret);
    }
    return this.call(settings.id, what, new URL(url), { method: 'POST', headers, body: form.toString() });
  }

  private async call(provider: string, what: string, url: URL, init: CallInit): Promise<unknown> {
    const { status, headers, text } = await this.send(provider, what, url, init);
    // No redirect is ever followed (a token endpoint that redirects is misconfigured or hostile):
    // one of these statuses counts as a failed call.
    if (REDIRECT_STATUSES.has(status)) throw unreachable(provider, what, false);
    const body = parseJson(text);
    if (status >= 200 && status < 300) return body ?? (text === '' ? {} : undefined);
    throw classify(provider, what, status, headerValue(headers['retry-after']), body);
  }

  /**
   * One request under one deadline covering all of it (connect, send, headers, body). The body
   * is always read to its end: an unread body keeps its socket out of the pool. A body that
   * fails half-way is a failed call like any other network error.
   */
  private async send(provider: string, what: string, url: URL, init: CallInit): Promise<{ status: number; headers: IncomingHttpHeaders; text: string }> {
    // A plain controller and timer rather than AbortSignal.timeout(): far cheaper per call, and the
    // timer goes away with the call instead of lingering for PROVIDER_TIMEOUT_MS (docs/decisions/0012).
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), PROVIDER_TIMEOUT_MS);
    try {
      const response = await request(url, {
        dispatcher: providerAgent,
        method: init.method,
        headers: { ...DEFAULT_HEADERS, ...init.headers },
        body: init.body,
        signal: deadline.signal,
      });
      // A body cut off (or timed out) half way is a transient failure like any other network error.
      const text = await response.body.text();
      return { status: response.statusCode, headers: response.headers, text };
    } catch (error) {
      if ((error as { code?: unknown }).code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') throw oversized(provider, what);
      throw unreachable(provider, what, deadline.signal.aborted);
    } finally {
      clearTimeout(timer);
    }
  }
}

interface CallInit {
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
}

/**
 * Every provider call goes through undici's request() on this agent: one keep-alive pool per
 * provider origin, without fetch's WHATWG stream and header machinery, whose CPU per call matters
 * at the refresh sweep's call rate (docs/decisions/0012-provider-calls-through-undici.md). No
 * connection cap: REFRESH_CONCURRENCY already bounds the calls in flight, and a cap would queue them.
 * keepAliveTimeout is undici's default, spelled out: an idle socket is dropped after 4 s (or 1 s
 * before the server's own Keep-Alive timeout, when it sends one), so a provider that closes idle
 * connections does not make us write a request onto a dead socket. maxResponseSize makes undici
 * itself stop reading (and drop the socket) once a body passes MAX_PROVIDER_ANSWER_BYTES, at no
 * cost to a normal call: a provider cannot make a replica hold hundreds of megabytes.
 */
const providerAgent = new Agent({ keepAliveTimeout: 4_000, maxResponseSize: MAX_PROVIDER_ANSWER_BYTES });

/** Headers every call carries; the call's own headers win. */
const DEFAULT_HEADERS: Readonly<Record<string, string>> = { accept: '*/*', 'user-agent': 'token-broker' };

/** Redirect statuses: a provider call never follows one (see call()). */
const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);

/** A call that got no usable answer: network error, timeout, redirect. Always transient. */
function unreachable(provider: string, what: string, timedOut: boolean): ProviderError {
  return new ProviderError(
    'transient',
    timedOut ? `${provider} did not answer the ${what} within ${PROVIDER_TIMEOUT_MS / 1000}s` : `${provider} could not be reached for the ${what}`,
    { provider },
  );
}

/**
 * An answer past MAX_PROVIDER_ANSWER_BYTES, whatever its status. `rejected`, not `transient`: the
 * network did its job and the provider said something no token endpoint should say; asking again
 * at once would most likely get the same, and each try costs a megabyte of reading. Not
 * `invalid_client` either: nothing says our credentials are wrong.
 */
function oversized(provider: string, what: string): ProviderError {
  return new ProviderError('rejected', `${provider} answered the ${what} with more than ${MAX_PROVIDER_ANSWER_BYTES / 1024 / 1024} MiB`, { provider });
}

/** RFC 6749 §2.3.1: id and secret are each form-urlencoded, then joined with ":" and base64-encoded. */
function basicAuthorization(clientId: string, clientSecret: string): string {
  return `Basic ${Buffer.from(`${formUrlEncode(clientId)}:${formUrlEncode(clientSecret)}`).toString('base64')}`;
}

/** application/x-www-form-urlencoded, as URLSearchParams writes it (space → "+", ":" escaped). */
function formUrlEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

function classify(provider: string, what: string, status: number, retryAfterHeader: string | undefined, body: unknown): ProviderError {
  const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const providerCode = typeof b.error === 'string' ? b.error.slice(0, 64) : undefined;
  const details = { provider, status, providerCode, retryAfterSec: retryAfter(retryAfterHeader) };
  const said = providerCode ? ` (${providerCode})` : '';
  if (status === 429 || status >= 500 || providerCode === 'temporarily_unavailable' || providerCode === 'slow_down') {
    return new ProviderError('transient', `${provider} answered the ${what} with HTTP ${status}${said}`, details);
  }
  if (providerCode === 'invalid_grant') {
    return new ProviderError('invalid_grant', `${provider} refused the grant in the ${what} (invalid_grant)`, details);
  }
  if (providerCode === 'invalid_client' || providerCode === 'unauthorized_client' || (status === 401 && !providerCode)) {
    return new ProviderError('invalid_client', `${provider} refused our client credentials in the ${what}${said}: check its client id and secret`, details);
  }
  return new ProviderError('rejected', `${provider} refused the ${what} with HTTP ${status}${said}`, details);
}

/** A response header as one string; repeated headers join with ", " (RFC 9110 §5.3). */
function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function retryAfter(header: string | undefined): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(Math.ceil(seconds), 86_400);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.min(Math.ceil((date - Date.now()) / 1000), 86_400));
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
