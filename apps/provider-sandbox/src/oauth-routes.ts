/**
 * The OAuth endpoints every fake provider serves (authorize, consent decision, token, identity,
 * a token check and, where the provider has one, RFC 7009 revocation), driven by each
 * provider's spec so the quirks stay in ../providers/*. The token path is the hot one under a
 * benchmark: no logging, no per-request allocation beyond the body and the tokens.
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  HttpError,
  Router,
  basicCredentials,
  bearerToken,
  param,
  readForm,
  sendHtml,
  sendJson,
  sendRedirect,
} from './http-kit';
import { autoPostPage, consentPage, errorPage } from './pages';
import { AuthorizeRequest, OAuthError, ProviderSpec } from './providers/provider-spec';
import { DEFAULT_USER, SandboxInputError, userFromId } from './sandbox-input';
import { AccessTokenRecord, GrantResult, SandboxState } from './sandbox-state';
import { InjectedFailure } from './sandbox.types';

export interface OAuthRouteDeps {
  state: SandboxState;
  /** Responses a 'timeout' failure holds open; close() ends them. */
  hung: Set<ServerResponse>;
}

const TOKEN_HEADERS = { 'cache-control': 'no-store', pragma: 'no-cache' };
/** An S256 challenge is BASE64URL of 32 bytes: 43 characters, no padding. */
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;

export function registerProviderRoutes(router: Router, spec: ProviderSpec, deps: OAuthRouteDeps): void {
  for (const path of spec.paths.authorize) {
    router.add('GET', path, (_req, res, query) => authorize(spec, deps, res, query));
  }
  router.add('POST', spec.paths.decision, async (req, res) => decide(spec, deps, res, await readForm(req)));
  router.add(spec.tokenRequest === 'get-query' ? 'GET' : 'POST', spec.paths.token, (req, res, query) =>
    token(spec, deps, req, res, query),
  );
  router.add('GET', spec.paths.identity, (req, res, query) => {
    deps.state.stats.identityRequest(spec.id);
    const record = authenticatedRecord(spec, deps, req, res, query);
    if (record) sendJson(res, 200, spec.identity(record.grant.user));
  });
  router.add('GET', `/${spec.id}/_sandbox/check`, (req, res, query) => {
    if (authenticatedRecord(spec, deps, req, res, query)) sendJson(res, 200, { valid: true });
  });
  if (spec.paths.revoke) {
    router.add('POST', spec.paths.revoke, (req, res) => revoke(spec, deps, req, res));
  }
  if (spec.paths.authenticate) {
    router.add('POST', spec.paths.authenticate, (req, res) => authenticate(spec, deps, req, res));
  }
  const check = spec.paths.derivedTokenCheck;
  if (check) {
    router.add('GET', check, (req, res) => {
      const presented = bearerToken(req);
      const record = presented === undefined ? undefined : deps.state.validDerivedToken(spec, presented);
      if (record) return sendJson(res, 200, { valid: true });
      sendJson(res, 401, { error: 'invalid_token', error_description: 'missing, unknown or expired JWT' }, { 'www-authenticate': `Bearer realm="${spec.id}"` });
    });
  }
}

/**
 * The authentication service that mints derived tokens (Copernica's REST v4 JWTs): a form POST
 * of `access_token=<an access token or API key>`; the JWT comes back as the behaviour says
 * (text by default). An unknown or revoked token is 401. Failures planned for `authenticate`
 * and the provider's latency apply.
 */
async function authenticate(spec: ProviderSpec, deps: OAuthRouteDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const form = await readForm(req);
  const behaviour = deps.state.behaviour(spec.id);
  if (behaviour.latencyMs > 0) await sleep(behaviour.latencyMs);
  const failure = deps.state.takeFailure(spec.id, 'authenticate');
  if (failure) return injectFailure(deps, res, failure);
  const presented = param(form, 'access_token');
  const record =
    presented === undefined ? undefined : (deps.state.validAccessToken(spec, presented) ?? deps.state.validApiKey(spec, { key: presented, complete: true }));
  if (!record) return sendJson(res, 401, { error: 'invalid_token', error_description: 'missing, unknown or revoked access token' }, TOKEN_HEADERS);
  const jwt = deps.state.mintDerivedToken(spec, record, behaviour.derivedTokenLifetimeSec);
  if (behaviour.derivedTokenAnswer === 'json-string') return sendJson(res, 200, jwt, TOKEN_HEADERS);
  if (behaviour.derivedTokenAnswer === 'json-object') return sendJson(res, 200, { token: jwt }, TOKEN_HEADERS);
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(jwt), ...TOKEN_HEADERS });
  res.end(jwt);
}

// ---- authorize and consent -----------------------------------------------------------------

type ParsedAuthorize =
  | { kind: 'page'; title: string; message: string }
  | { kind: 'redirect-error'; request: AuthorizeRequest; error: OAuthError }
  | { kind: 'ok'; request: AuthorizeRequest };

function isUsableRedirectUri(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hash === '';
  } catch {
    return false;
  }
}

/**
 * RFC 6749 section 4.1.2.1: a bad client or redirect URI gets a page (never a redirect);
 * anything else wrong is sent back to the redirect URI as an error.
 */
function parseAuthorize(spec: ProviderSpec, deps: OAuthRouteDeps, params: URLSearchParams): ParsedAuthorize {
  const clientId = param(params, 'client_id');
  if (clientId === undefined || !deps.state.isKnownClient(spec.id, clientId)) {
    const message = `unknown client: this ${spec.displayName} sandbox has no such client_id.`;
    return { kind: 'page', title: 'Unknown client', message };
  }
  const redirectUri = param(params, 'redirect_uri');
  if (redirectUri === undefined || !isUsableRedirectUri(redirectUri)) {
    const message = 'redirect_uri must be an absolute http(s) URL without a fragment.';
    return { kind: 'page', title: 'Invalid redirect_uri', message };
  }
  let user = userFromId(DEFAULT_USER.id);
  const userId = param(params, 'sandbox_user');
  if (userId !== undefined) {
    try {
      user = userFromId(userId);
    } catch (err) {
      if (err instanceof SandboxInputError) return { kind: 'page', title: 'Invalid sandbox_user', message: err.message };
      throw err;
    }
  }
  const request: AuthorizeRequest = {
    clientId,
    redirectUri,
    responseType: param(params, 'response_type'),
    scope: param(params, 'scope'),
    state: param(params, 'state'),
    codeChallenge: param(params, 'code_challenge'),
    codeChallengeMethod: param(params, 'code_challenge_method'),
    user,
  };
  const error = checkAuthorize(spec, deps, request);
  return error ? { kind: 'redirect-error', request, error } : { kind: 'ok', request };
}

function checkAuthorize(spec: ProviderSpec, deps: OAuthRouteDeps, request: AuthorizeRequest): OAuthError | undefined {
  if (request.responseType !== 'code') {
    return { error: 'unsupported_response_type', description: 'response_type must be code' };
  }
  const specific = spec.checkAuthorize(request);
  if (specific) return specific;
  if (request.codeChallenge !== undefined || request.codeChallengeMethod !== undefined) {
    if (request.codeChallengeMethod !== 'S256') {
      return { error: 'invalid_request', description: 'code_challenge_method must be S256' };
    }
    if (request.codeChallenge === undefined || !S256_CHALLENGE.test(request.codeChallenge)) {
      return { error: 'invalid_request', description: 'code_challenge must be a base64url SHA-256 digest' };
    }
  } else if (deps.state.behaviour(spec.id).requirePkce) {
    return { error: 'invalid_request', description: 'code_challenge is required (PKCE)' };
  }
  return undefined;
}

function authorize(spec: ProviderSpec, deps: OAuthRouteDeps, res: ServerResponse, query: URLSearchParams): void {
  const parsed = parseAuthorize(spec, deps, query);
  if (parsed.kind === 'page') return sendHtml(res, 400, errorPage(parsed.title, parsed.message));
  if (parsed.kind === 'redirect-error') return sendError(spec, deps, res, parsed.request, parsed.error);
  const { request } = parsed;
  // Non-browser tests skip the page and answer the consent directly.
  const shortcut = param(query, 'sandbox_decision');
  if (shortcut !== undefined) return answerDecision(spec, deps, res, request, shortcut);
  sendHtml(
    res,
    200,
    consentPage({
      providerName: spec.displayName,
      decisionPath: spec.paths.decision,
      clientId: request.clientId,
      scope: request.scope,
      userName: request.user.name,
      userEmail: request.user.email,
      fields: {
        client_id: request.clientId,
        redirect_uri: request.redirectUri,
        response_type: request.responseType,
        scope: request.scope,
        state: request.state,
        code_challenge: request.codeChallenge,
        code_challenge_method: request.codeChallengeMethod,
        sandbox_user: request.user.id,
      },
    }),
  );
}

/** The consent form comes back with the request in hidden fields; it is checked again like a fresh one. */
function decide(spec: ProviderSpec, deps: OAuthRouteDeps, res: ServerResponse, form: URLSearchParams): void {
  const parsed = parseAuthorize(spec, deps, form);
  if (parsed.kind === 'page') return sendHtml(res, 400, errorPage(parsed.title, parsed.message));
  if (parsed.kind === 'redirect-error') return sendError(spec, deps, res, parsed.request, parsed.error);
  answerDecision(spec, deps, res, parsed.request, param(form, 'decision') ?? '');
}

function answerDecision(
  spec: ProviderSpec,
  deps: OAuthRouteDeps,
  res: ServerResponse,
  request: AuthorizeRequest,
  decision: string,
): void {
  if (decision === 'deny') {
    return sendError(spec, deps, res, request, { error: 'access_denied', description: 'the user denied access' });
  }
  if (decision !== 'allow') return sendHtml(res, 400, errorPage('Invalid decision', 'decision must be allow or deny.'));
  const { authorizeError } = deps.state.behaviour(spec.id);
  if (authorizeError !== null) {
    return sendError(spec, deps, res, request, { error: authorizeError, description: 'error injected by the provider sandbox' });
  }
  if (!spec.issuesCode(request)) return deliverCallback(spec, deps, res, request.redirectUri, { state: request.state });
  const code = deps.state.issueCode(spec, request);
  deliverCallback(spec, deps, res, request.redirectUri, { code, state: request.state });
}

function sendError(spec: ProviderSpec, deps: OAuthRouteDeps, res: ServerResponse, request: AuthorizeRequest, error: OAuthError): void {
  deliverCallback(spec, deps, res, request.redirectUri, {
    error: error.error,
    error_description: error.error === 'access_denied' ? undefined : error.description,
    state: request.state,
  });
}

/**
 * Back to the client the provider's way: a 302 with a query, or Copper's auto-submitting form POST;
 * with `iss` (RFC 9207) when the provider is configured with an issuer.
 */
function deliverCallback(
  spec: ProviderSpec,
  deps: OAuthRouteDeps,
  res: ServerResponse,
  redirectUri: string,
  given: Record<string, string | undefined>,
): void {
  const fields = { ...given, iss: deps.state.behaviour(spec.id).issuer ?? undefined };
  if (spec.callback === 'form-post') return sendHtml(res, 200, autoPostPage(redirectUri, fields));
  const target = new URL(redirectUri);
  for (const [name, value] of Object.entries(fields)) {
    if (value !== undefined) target.searchParams.set(name, value);
  }
  sendRedirect(res, target.toString());
}

// ---- token endpoint ------------------------------------------------------------------------

function oauthError(status: number, error: string, description: string): HttpError {
  return new HttpError(status, { error, error_description: description });
}

interface ClientCredentials {
  id: string | undefined;
  secret: string | undefined;
  viaBasic: boolean;
}

function clientCredentials(spec: ProviderSpec, deps: OAuthRouteDeps, req: IncomingMessage, params: URLSearchParams): ClientCredentials {
  // A GET exchange (Copernica) has nowhere but its query for the credentials: Basic-only does not apply.
  const basicOnly = spec.tokenRequest === 'form-post' && deps.state.behaviour(spec.id).requireBasicAuth;
  const basic = spec.acceptsBasicAuth || basicOnly ? basicCredentials(req) : undefined;
  if (basicOnly) {
    // One method per request (RFC 6749 section 2.3): a secret in the body is refused even beside Basic.
    if (!basic || params.has('client_secret')) return { id: undefined, secret: undefined, viaBasic: true };
    return { id: basic.id, secret: basic.secret, viaBasic: true };
  }
  if (basic) return { id: basic.id, secret: basic.secret, viaBasic: true };
  return { id: param(params, 'client_id'), secret: param(params, 'client_secret'), viaBasic: false };
}

/** The authenticated client's id, or undefined after answering 401 invalid_client (RFC 6749 section 5.2). */
function authenticateClient(
  spec: ProviderSpec,
  deps: OAuthRouteDeps,
  req: IncomingMessage,
  res: ServerResponse,
  params: URLSearchParams,
): string | undefined {
  const credentials = clientCredentials(spec, deps, req, params);
  if (credentials.id !== undefined && deps.state.authenticateClient(spec.id, credentials.id, credentials.secret)) {
    return credentials.id;
  }
  const headers: Record<string, string> = { ...TOKEN_HEADERS };
  if (credentials.viaBasic) headers['www-authenticate'] = `Basic realm="${spec.id}"`;
  sendJson(res, 401, { error: 'invalid_client', error_description: 'client authentication failed' }, headers);
  return undefined;
}

async function token(
  spec: ProviderSpec,
  deps: OAuthRouteDeps,
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
): Promise<void> {
  const { state } = deps;
  // Copernica's exchange is a GET with everything in the query and no grant_type.
  const params = spec.tokenRequest === 'get-query' ? query : await readForm(req);
  const grantType = spec.tokenRequest === 'get-query' ? 'authorization_code' : param(params, 'grant_type');
  if (grantType === 'authorization_code') state.stats.tokenRequest(spec.id, 'authorizationCode');
  else if (grantType === 'refresh_token') state.stats.tokenRequest(spec.id, 'refresh');

  const { latencyMs } = state.behaviour(spec.id);
  if (latencyMs > 0) await sleep(latencyMs);
  const failure = state.takeFailure(spec.id);
  if (failure) {
    state.stats.failureInjected(spec.id);
    return injectFailure(deps, res, failure);
  }

  const clientId = authenticateClient(spec, deps, req, res, params);
  if (clientId === undefined) return;

  let result: GrantResult;
  if (grantType === 'authorization_code') {
    const code = param(params, 'code');
    if (code === undefined) throw oauthError(400, 'invalid_request', 'code is required');
    result = state.redeemCode(spec, {
      clientId,
      code,
      redirectUri: param(params, 'redirect_uri'),
      codeVerifier: param(params, 'code_verifier'),
    });
  } else if (grantType === 'refresh_token' && spec.refreshTokens) {
    const refreshToken = param(params, 'refresh_token');
    if (refreshToken === undefined) throw oauthError(400, 'invalid_request', 'refresh_token is required');
    result = state.refresh(spec, clientId, refreshToken);
  } else if (grantType === undefined) {
    throw oauthError(400, 'invalid_request', 'grant_type is required');
  } else {
    throw oauthError(400, 'unsupported_grant_type', `${spec.displayName} does not support this grant_type`);
  }

  if (!result.ok) {
    return sendJson(res, 400, { error: result.error.error, error_description: result.error.description }, TOKEN_HEADERS);
  }
  sendJson(res, 200, spec.tokenResponse(result.tokens), TOKEN_HEADERS);
}

function injectFailure(deps: OAuthRouteDeps, res: ServerResponse, failure: InjectedFailure): void {
  if (failure.kind === 'timeout') {
    deps.hung.add(res);
    res.on('close', () => deps.hung.delete(res));
    return;
  }
  const headers: Record<string, string> = { ...TOKEN_HEADERS };
  if (failure.retryAfterSec !== undefined) headers['retry-after'] = String(failure.retryAfterSec);
  sendJson(
    res,
    failure.status,
    { error: failure.error ?? 'temporarily_unavailable', error_description: 'failure injected by the provider sandbox' },
    headers,
  );
}

// ---- API: identity, token check, revocation ------------------------------------------------

/** The record of the valid token (or API key) presented, or undefined after answering 401 the RFC 6750 way. */
function authenticatedRecord(
  spec: ProviderSpec,
  deps: OAuthRouteDeps,
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
): AccessTokenRecord | undefined {
  const presented = spec.tokenPresentation === 'bearer-header' ? bearerToken(req) : param(query, 'access_token');
  let record = presented === undefined ? undefined : deps.state.validAccessToken(spec, presented);
  // Not an OAuth token: an API key presented the provider's own way.
  if (!record) {
    const apiKey = spec.presentedApiKey(req.headers, query);
    if (apiKey) record = deps.state.validApiKey(spec, apiKey);
  }
  if (!record) {
    const headers: Record<string, string> = {};
    if (spec.tokenPresentation === 'bearer-header') {
      const challenge = `Bearer realm="${spec.id}"`;
      headers['www-authenticate'] = presented === undefined ? challenge : `${challenge}, error="invalid_token"`;
    }
    const body = { error: 'invalid_token', error_description: 'missing, unknown, expired or revoked access token' };
    sendJson(res, 401, body, headers);
  }
  return record;
}

async function revoke(spec: ProviderSpec, deps: OAuthRouteDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const form = await readForm(req);
  const { latencyMs } = deps.state.behaviour(spec.id);
  if (latencyMs > 0) await sleep(latencyMs);
  const clientId = authenticateClient(spec, deps, req, res, form);
  if (clientId === undefined) return;
  const tokenValue = param(form, 'token');
  if (tokenValue === undefined) throw oauthError(400, 'invalid_request', 'token is required');
  deps.state.stats.revocation(spec.id);
  deps.state.revoke(spec, clientId, tokenValue, param(form, 'token_type_hint'));
  // RFC 7009 section 2.2: 200 whether or not the token was known.
  res.writeHead(200, { 'content-length': 0, ...TOKEN_HEADERS });
  res.end();
}
