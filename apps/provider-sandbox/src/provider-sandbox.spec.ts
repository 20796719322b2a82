/**
 * The sandbox over real HTTP: each provider's dance with its quirks, PKCE, refresh-token
 * rotation, revocation, expiry, failure injection, the control API and the counters.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  ProviderSandbox,
  SandboxProvider,
  SandboxStats,
  TokenResponse,
  startProviderSandbox,
  tokenFingerprint,
} from './provider-sandbox';

const CALLBACK = {
  copper: 'http://localhost:3000/connect/copper/callback',
  copernica: 'http://localhost:3000/connect/copernica/callback',
  copyai: 'http://localhost:3000/connect/copyai/callback?keep=1',
} as const;

let sandbox: ProviderSandbox;
let clockOffsetMs = 0;

beforeAll(async () => {
  sandbox = await startProviderSandbox({ clock: () => Date.now() + clockOffsetMs });
});

afterAll(async () => {
  await sandbox.close();
});

beforeEach(() => {
  clockOffsetMs = 0;
  sandbox.reset();
});

// ---- helpers -------------------------------------------------------------------------------

function longState(): string {
  return randomBytes(32).toString('base64url');
}

function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

function authorizeUrl(p: SandboxProvider, params: Record<string, string>): string {
  return `${sandbox.endpoints(p).authorizeUrl}?${new URLSearchParams(params).toString()}`;
}

function get(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { redirect: 'manual', headers });
}

function postForm(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', body: new URLSearchParams(fields), headers, redirect: 'manual' });
}

function postJson(path: string, body: unknown): Promise<Response> {
  return fetch(`${sandbox.url}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });
}

/** Hidden inputs of a sandbox page, as a browser would submit them. */
function hiddenInputs(html: string): Record<string, string> {
  const unescape = (s: string): string => s.replace(/&#(\d+);/g, (_m, code: string) => String.fromCharCode(Number(code)));
  const fields: Record<string, string> = {};
  for (const match of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    fields[unescape(match[1])] = unescape(match[2]);
  }
  return fields;
}

function formAction(html: string): string | undefined {
  return /<form[^>]*action="([^"]+)"/.exec(html)?.[1]?.replace(/&#(\d+);/g, (_m, code: string) => String.fromCharCode(Number(code)));
}

function callbackParams(res: Response): URLSearchParams {
  expect(res.status).toBe(302);
  return new URL(res.headers.get('location') ?? 'missing:').searchParams;
}

async function copyaiCode(extra: Record<string, string> = {}): Promise<string> {
  const res = await get(
    authorizeUrl('copyai', {
      response_type: 'code',
      client_id: 'copyai-client',
      redirect_uri: CALLBACK.copyai,
      scope: 'content:read content:write',
      state: 'st-1',
      sandbox_decision: 'allow',
      ...extra,
    }),
  );
  const code = callbackParams(res).get('code');
  if (!code) throw new Error('no code in the Copy.ai callback');
  return code;
}

function copyaiToken(fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  return postForm(sandbox.endpoints('copyai').tokenUrl, fields, headers);
}

function copyaiExchange(code: string, extra: Record<string, string> = {}): Promise<Response> {
  return copyaiToken({
    grant_type: 'authorization_code',
    code,
    redirect_uri: CALLBACK.copyai,
    client_id: 'copyai-client',
    client_secret: 'copyai-secret',
    ...extra,
  });
}

function copyaiRefresh(refreshToken: string): Promise<Response> {
  return copyaiToken({
    grant_type: 'refresh_token',
    refresh_token: refreshToken,
    client_id: 'copyai-client',
    client_secret: 'copyai-secret',
  });
}

async function copyaiTokens(): Promise<TokenResponse> {
  const res = await copyaiExchange(await copyaiCode());
  expect(res.status).toBe(200);
  return (await res.json()) as TokenResponse;
}

function check(p: SandboxProvider, accessToken: string): Promise<Response> {
  return p === 'copernica'
    ? get(`${sandbox.url}/copernica/_sandbox/check?access_token=${encodeURIComponent(accessToken)}`)
    : get(`${sandbox.url}/${p}/_sandbox/check`, { authorization: `Bearer ${accessToken}` });
}

async function copperCallback(extra: Record<string, string> = {}): Promise<{ action: string | undefined; fields: Record<string, string> }> {
  const res = await get(
    authorizeUrl('copper', {
      response_type: 'code',
      client_id: 'copper-client',
      redirect_uri: CALLBACK.copper,
      scope: 'developer/v1/all',
      state: 'copper-state',
      sandbox_decision: 'allow',
      ...extra,
    }),
  );
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/html');
  const html = await res.text();
  expect(html).toContain('method="post"');
  return { action: formAction(html), fields: hiddenInputs(html) };
}

function copperExchange(code: string, extra: Record<string, string> = {}): Promise<Response> {
  return postForm(sandbox.endpoints('copper').tokenUrl, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: CALLBACK.copper,
    client_id: 'copper-client',
    client_secret: 'copper-secret',
    ...extra,
  });
}

function copernicaExchange(code: string, overrides: Record<string, string> = {}): Promise<Response> {
  const query = new URLSearchParams({
    client_id: 'copernica-client',
    client_secret: 'copernica-secret',
    redirect_uri: CALLBACK.copernica,
    code,
    ...overrides,
  });
  return get(`${sandbox.endpoints('copernica').tokenUrl}?${query.toString()}`);
}

// ---- Copper --------------------------------------------------------------------------------

describe('Copper', () => {
  it('calls back with a form POST, exchanges the code for a non-expiring token and serves /users/me', async () => {
    const { action, fields } = await copperCallback();
    expect(action).toBe(CALLBACK.copper);
    expect(fields.state).toBe('copper-state');
    expect(fields.code).toMatch(/^cpr_ac_/);

    const res = await copperExchange(fields.code);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as TokenResponse;
    expect(Object.keys(body).sort()).toEqual(['access_token', 'token_type']);
    expect(body.token_type).toBe('Bearer');
    expect(body.access_token).toMatch(/^cpr_at_[A-Za-z0-9_-]{32}$/);

    const me = await get(`${sandbox.endpoints('copper').apiUrl}/users/me`, { authorization: `Bearer ${body.access_token}` });
    expect(me.status).toBe(200);
    expect(await me.json()).toEqual({ id: 'u-1001', name: 'Ada Lovelace', email: 'ada@example.test' });

    clockOffsetMs = 10 * 365 * 24 * 3600 * 1000;
    expect((await check('copper', body.access_token)).status).toBe(200);
    expect(sandbox.stats().tokenRequests.copper).toEqual({ authorizationCode: 1, refresh: 0, failuresInjected: 0 });
    expect(sandbox.stats().identityRequests.copper).toBe(1);
  });

  it('answers 401 on /users/me without a valid bearer token', async () => {
    const url = `${sandbox.endpoints('copper').apiUrl}/users/me`;
    const missing = await get(url);
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toContain('Bearer');
    expect((await get(url, { authorization: 'Bearer cpr_at_made-up' })).status).toBe(401);
  });

  it('refuses any scope but developer/v1/all, and reports a denial, through the same form POST', async () => {
    const wrongScope = await copperCallback({ scope: 'read' });
    expect(wrongScope.fields).toMatchObject({ error: 'invalid_scope', state: 'copper-state' });
    expect(wrongScope.fields.code).toBeUndefined();

    const denied = await copperCallback({ sandbox_decision: 'deny' });
    expect(denied.fields).toEqual({ error: 'access_denied', state: 'copper-state' });
  });

  it('spends a code on first use and binds it to the redirect_uri and client', async () => {
    const first = await copperCallback();
    expect((await copperExchange(first.fields.code)).status).toBe(200);
    const replay = await copperExchange(first.fields.code);
    expect(replay.status).toBe(400);
    expect(await replay.json()).toMatchObject({ error: 'invalid_grant' });

    const second = await copperCallback();
    const mismatch = await copperExchange(second.fields.code, { redirect_uri: 'http://localhost:3000/elsewhere' });
    expect(mismatch.status).toBe(400);
    expect(await mismatch.json()).toMatchObject({ error: 'invalid_grant' });
    expect(sandbox.stats().invalidGrants).toBe(2);
  });

  it('answers 401 invalid_client for a wrong secret and does not accept HTTP Basic', async () => {
    const { fields } = await copperCallback();
    const wrong = await copperExchange(fields.code, { client_secret: 'nope' });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ error: 'invalid_client' });

    const basic = await postForm(
      sandbox.endpoints('copper').tokenUrl,
      { grant_type: 'authorization_code', code: fields.code, redirect_uri: CALLBACK.copper },
      { authorization: `Basic ${Buffer.from('copper-client:copper-secret').toString('base64')}` },
    );
    expect(basic.status).toBe(401);
  });

  it('sends expires_in and a refresh token when configured to, and refreshes with it', async () => {
    sandbox.configure('copper', { issueRefreshToken: true });
    const { fields } = await copperCallback();
    const body = (await (await copperExchange(fields.code)).json()) as TokenResponse;
    expect(body.expires_in).toBe(3600);
    expect(body.refresh_token).toMatch(/^cpr_rt_/);

    const refreshed = await postForm(sandbox.endpoints('copper').tokenUrl, {
      grant_type: 'refresh_token',
      refresh_token: body.refresh_token ?? '',
      client_id: 'copper-client',
      client_secret: 'copper-secret',
    });
    expect(refreshed.status).toBe(200);
    const next = (await refreshed.json()) as TokenResponse;
    expect(next.access_token).not.toBe(body.access_token);
    expect(next.refresh_token).toMatch(/^cpr_rt_/);

    clockOffsetMs = 3601 * 1000;
    expect((await check('copper', next.access_token)).status).toBe(401);
  });
});

// ---- Copernica -----------------------------------------------------------------------------

describe('Copernica', () => {
  it('redirects with a code for a long state, exchanges it by GET for {access_token} alone, and serves /identity', async () => {
    const state = longState();
    const res = await get(
      authorizeUrl('copernica', {
        client_id: 'copernica-client',
        redirect_uri: CALLBACK.copernica,
        state,
        response_type: 'code',
        sandbox_decision: 'allow',
      }),
    );
    const params = callbackParams(res);
    expect(params.get('state')).toBe(state);
    const code = params.get('code') ?? '';
    expect(code).toMatch(/^cpn_ac_/);

    const exchanged = await copernicaExchange(code);
    expect(exchanged.status).toBe(200);
    const body = (await exchanged.json()) as TokenResponse;
    expect(Object.keys(body)).toEqual(['access_token']);
    expect(body.access_token).toMatch(/^cpn_at_/);

    const identity = await get(`${sandbox.endpoints('copernica').apiUrl}/identity?access_token=${body.access_token}`);
    expect(identity.status).toBe(200);
    expect(await identity.json()).toEqual({ id: 'u-1001', name: 'Ada Lovelace', company: 'Analytical Engines' });

    // The token goes in the query; a bearer header is not how Copernica's v2 API reads it.
    const viaHeader = await get(`${sandbox.endpoints('copernica').apiUrl}/identity`, { authorization: `Bearer ${body.access_token}` });
    expect(viaHeader.status).toBe(401);
  });

  it('brings the user back without a code when state is missing or shorter than 32 characters', async () => {
    const base = { client_id: 'copernica-client', redirect_uri: CALLBACK.copernica, response_type: 'code', sandbox_decision: 'allow' };
    const short = callbackParams(await get(authorizeUrl('copernica', { ...base, state: 'x'.repeat(31) })));
    expect(short.get('code')).toBeNull();
    expect(short.get('error')).toBeNull();
    expect(short.get('state')).toBe('x'.repeat(31));

    const none = callbackParams(await get(authorizeUrl('copernica', base)));
    expect([...none.keys()]).toEqual([]);
  });

  it('accepts the /nl/ authorize path, refuses a POST exchange with 405 and rejects a wrong secret', async () => {
    const state = longState();
    const res = await get(
      `${sandbox.url}/copernica/nl/authorize?${new URLSearchParams({
        client_id: 'copernica-client',
        redirect_uri: CALLBACK.copernica,
        state,
        response_type: 'code',
        sandbox_decision: 'allow',
      }).toString()}`,
    );
    const code = callbackParams(res).get('code') ?? '';

    const post = await postForm(sandbox.endpoints('copernica').tokenUrl, {
      grant_type: 'authorization_code',
      code,
      client_id: 'copernica-client',
      client_secret: 'copernica-secret',
      redirect_uri: CALLBACK.copernica,
    });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET');

    const wrong = await copernicaExchange(code, { client_secret: 'nope' });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ error: 'invalid_client' });
    expect((await copernicaExchange(code)).status).toBe(200);
  });

  it('issues tokens that never expire, whatever the configuration', async () => {
    sandbox.configure('copernica', { tokenLifetimeSec: 60, issueRefreshToken: true });
    const minted = sandbox.issueTokens('copernica', { expiresInSec: 0 });
    expect(Object.keys(minted)).toEqual(['access_token']);
    clockOffsetMs = 20 * 365 * 24 * 3600 * 1000;
    expect((await check('copernica', minted.access_token)).status).toBe(200);
  });

  it('has no revocation endpoint', async () => {
    expect(sandbox.endpoints('copernica').revokeUrl).toBeUndefined();
    expect((await postForm(`${sandbox.url}/copernica/oauth/revoke`, { token: 'x' })).status).toBe(404);
  });
});

// ---- Copy.ai -------------------------------------------------------------------------------

describe('Copy.ai', () => {
  it('runs the dance with PKCE S256 and returns the full RFC 6749 token response', async () => {
    const { verifier, challenge } = pkcePair();
    const code = await copyaiCode({ code_challenge: challenge, code_challenge_method: 'S256' });

    const withoutVerifier = await copyaiExchange(code);
    expect(withoutVerifier.status).toBe(400);
    expect(await withoutVerifier.json()).toMatchObject({ error: 'invalid_grant' });

    const code2 = await copyaiCode({ code_challenge: challenge, code_challenge_method: 'S256' });
    const wrongVerifier = await copyaiExchange(code2, { code_verifier: pkcePair().verifier });
    expect(wrongVerifier.status).toBe(400);

    const code3 = await copyaiCode({ code_challenge: challenge, code_challenge_method: 'S256' });
    const res = await copyaiExchange(code3, { code_verifier: verifier });
    expect(res.status).toBe(200);
    const body = (await res.json()) as TokenResponse;
    expect(body).toEqual({
      access_token: expect.stringMatching(/^cai_at_/),
      token_type: 'Bearer',
      expires_in: 3600,
      refresh_token: expect.stringMatching(/^cai_rt_/),
      scope: 'content:read content:write',
    });

    const me = await get(`${sandbox.endpoints('copyai').apiUrl}/me`, { authorization: `Bearer ${body.access_token}` });
    expect(await me.json()).toEqual({ id: 'u-1001', name: 'Ada Lovelace', email: 'ada@example.test' });
  });

  it('keeps the redirect_uri query when calling back', async () => {
    const res = await get(
      authorizeUrl('copyai', {
        response_type: 'code',
        client_id: 'copyai-client',
        redirect_uri: CALLBACK.copyai,
        state: 's',
        sandbox_decision: 'deny',
      }),
    );
    const params = callbackParams(res);
    expect(Object.fromEntries(params)).toEqual({ keep: '1', error: 'access_denied', state: 's' });
  });

  it('requires a code_challenge when PKCE is required', async () => {
    sandbox.configure('copyai', { requirePkce: true });
    const res = await get(
      authorizeUrl('copyai', {
        response_type: 'code',
        client_id: 'copyai-client',
        redirect_uri: CALLBACK.copyai,
        state: 's',
        sandbox_decision: 'allow',
      }),
    );
    const params = callbackParams(res);
    expect(params.get('error')).toBe('invalid_request');
    expect(params.get('code')).toBeNull();

    const plain = callbackParams(
      await get(
        authorizeUrl('copyai', {
          response_type: 'code',
          client_id: 'copyai-client',
          redirect_uri: CALLBACK.copyai,
          code_challenge: pkcePair().challenge,
          code_challenge_method: 'plain',
          sandbox_decision: 'allow',
        }),
      ),
    );
    expect(plain.get('error')).toBe('invalid_request');
  });

  it('rotates refresh tokens: a reused one gets invalid_grant and counts as a duplicate', async () => {
    const first = await copyaiTokens();
    const refreshed = await copyaiRefresh(first.refresh_token ?? '');
    expect(refreshed.status).toBe(200);
    const second = (await refreshed.json()) as TokenResponse;
    expect(second.refresh_token).toMatch(/^cai_rt_/);
    expect(second.refresh_token).not.toBe(first.refresh_token);
    expect(second.access_token).not.toBe(first.access_token);

    const replay = await copyaiRefresh(first.refresh_token ?? '');
    expect(replay.status).toBe(400);
    expect(await replay.json()).toMatchObject({ error: 'invalid_grant' });

    expect((await copyaiRefresh(second.refresh_token ?? '')).status).toBe(200);

    const stats = sandbox.stats();
    expect(stats.tokenRequests.copyai).toEqual({ authorizationCode: 1, refresh: 3, failuresInjected: 0 });
    expect(stats.duplicateRefreshUses).toBe(1);
    expect(stats.invalidGrants).toBe(1);
    expect(stats.refreshTokenUses).toEqual({
      [tokenFingerprint(first.refresh_token ?? '')]: 2,
      [tokenFingerprint(second.refresh_token ?? '')]: 1,
    });
    for (const key of Object.keys(stats.refreshTokenUses)) expect(key).toMatch(/^[0-9a-f]{16}$/);
  });

  it('without rotation keeps the refresh token valid and omits it from refresh responses', async () => {
    sandbox.configure('copyai', { rotateRefreshTokens: false });
    const first = await copyaiTokens();
    const a = (await (await copyaiRefresh(first.refresh_token ?? '')).json()) as TokenResponse;
    expect(a.refresh_token).toBeUndefined();
    expect((await copyaiRefresh(first.refresh_token ?? '')).status).toBe(200);
    expect(sandbox.stats().duplicateRefreshUses).toBe(1);
    expect(sandbox.stats().invalidGrants).toBe(0);
  });

  it('accepts client credentials as HTTP Basic', async () => {
    const code = await copyaiCode();
    const res = await copyaiToken(
      { grant_type: 'authorization_code', code, redirect_uri: CALLBACK.copyai },
      { authorization: `Basic ${Buffer.from('copyai-client:copyai-secret').toString('base64')}` },
    );
    expect(res.status).toBe(200);

    const wrong = await copyaiToken(
      { grant_type: 'refresh_token', refresh_token: 'cai_rt_x' },
      { authorization: `Basic ${Buffer.from('copyai-client:wrong').toString('base64')}` },
    );
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toContain('Basic');
  });

  it('expires access tokens after their lifetime and refresh tokens after theirs', async () => {
    sandbox.configure('copyai', { tokenLifetimeSec: 60, refreshTokenLifetimeSec: 600 });
    const tokens = await copyaiTokens();
    expect(tokens.expires_in).toBe(60);
    expect(tokens.refresh_token_expires_in).toBe(600);
    expect((await check('copyai', tokens.access_token)).status).toBe(200);

    clockOffsetMs = 61 * 1000;
    expect((await check('copyai', tokens.access_token)).status).toBe(401);
    const me = await get(`${sandbox.endpoints('copyai').apiUrl}/me`, { authorization: `Bearer ${tokens.access_token}` });
    expect(me.status).toBe(401);

    clockOffsetMs = 601 * 1000;
    const late = await copyaiRefresh(tokens.refresh_token ?? '');
    expect(late.status).toBe(400);
    expect(await late.json()).toMatchObject({ error: 'invalid_grant' });
  });

  it('revokes the whole grant per RFC 7009 and answers 200 for unknown tokens', async () => {
    const tokens = await copyaiTokens();
    const revokeUrl = sandbox.endpoints('copyai').revokeUrl ?? '';
    const creds = { client_id: 'copyai-client', client_secret: 'copyai-secret' };

    expect((await postForm(revokeUrl, { token: tokens.access_token, token_type_hint: 'access_token', ...creds })).status).toBe(200);
    expect((await check('copyai', tokens.access_token)).status).toBe(401);
    const refresh = await copyaiRefresh(tokens.refresh_token ?? '');
    expect(refresh.status).toBe(400);
    expect(await refresh.json()).toMatchObject({ error: 'invalid_grant' });

    expect((await postForm(revokeUrl, { token: 'cai_at_unknown', ...creds })).status).toBe(200);
    expect((await postForm(revokeUrl, { token: tokens.access_token, client_id: 'copyai-client', client_secret: 'x' })).status).toBe(401);
    expect(sandbox.stats().revocations).toEqual({ copper: 0, copernica: 0, copyai: 2 });
  });

  it('revoking a refresh token also ends its access token', async () => {
    const tokens = sandbox.issueTokens('copyai');
    const res = await postForm(sandbox.endpoints('copyai').revokeUrl ?? '', {
      token: tokens.refresh_token ?? '',
      token_type_hint: 'refresh_token',
      client_id: 'copyai-client',
      client_secret: 'copyai-secret',
    });
    expect(res.status).toBe(200);
    expect((await check('copyai', tokens.access_token)).status).toBe(401);
  });
});

// ---- consent page, users, bad requests -----------------------------------------------------

describe('consent page', () => {
  it('shows provider, client and scope with Allow/Deny, and the submitted form completes the dance', async () => {
    const page = await get(
      authorizeUrl('copyai', {
        response_type: 'code',
        client_id: 'copyai-client',
        redirect_uri: CALLBACK.copyai,
        scope: 'content:read',
        state: 'st-page',
      }),
    );
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('Copy.ai');
    expect(html).toContain('copyai-client');
    expect(html).toContain('content:read');
    expect(html).toContain('<button id="allow"');
    expect(html).toContain('<button id="deny"');
    expect(formAction(html)).toBe('/copyai/oauth/decision');

    const decision = await postForm(`${sandbox.url}/copyai/oauth/decision`, { ...hiddenInputs(html), decision: 'allow' });
    const params = callbackParams(decision);
    expect(params.get('state')).toBe('st-page');
    const tokens = (await (await copyaiExchange(params.get('code') ?? '')).json()) as TokenResponse;
    expect(tokens.scope).toBe('content:read');
  });

  it("answers Copper's decision with the auto-submitting form POST", async () => {
    const page = await get(
      authorizeUrl('copper', {
        response_type: 'code',
        client_id: 'copper-client',
        redirect_uri: CALLBACK.copper,
        scope: 'developer/v1/all',
        state: 'cs',
      }),
    );
    const html = await page.text();
    const decision = await postForm(`${sandbox.url}${formAction(html) ?? ''}`, { ...hiddenInputs(html), decision: 'deny' });
    expect(decision.status).toBe(200);
    const callback = await decision.text();
    expect(formAction(callback)).toBe(CALLBACK.copper);
    expect(hiddenInputs(callback)).toEqual({ error: 'access_denied', state: 'cs' });
    expect(callback).toContain(".submit()");
  });

  it('logs in the user named by sandbox_user', async () => {
    const code = await copyaiCode({ sandbox_user: 'u-2002' });
    const tokens = (await (await copyaiExchange(code)).json()) as TokenResponse;
    const me = await get(`${sandbox.endpoints('copyai').apiUrl}/me`, { authorization: `Bearer ${tokens.access_token}` });
    expect(await me.json()).toEqual({ id: 'u-2002', name: 'Sandbox User u-2002', email: 'u-2002@example.test' });
  });

  it('shows a 400 page, never a redirect, for an unknown client or a bad redirect_uri', async () => {
    const unknown = await get(authorizeUrl('copyai', { response_type: 'code', client_id: 'someone-else', redirect_uri: CALLBACK.copyai }));
    expect(unknown.status).toBe(400);
    expect(unknown.headers.get('location')).toBeNull();
    const unknownPage = await unknown.text();
    expect(unknownPage).toContain('Unknown client');
    expect(unknownPage).toContain('unknown client');

    const badRedirect = await get(authorizeUrl('copper', { response_type: 'code', client_id: 'copper-client', redirect_uri: 'javascript:alert(1)' }));
    expect(badRedirect.status).toBe(400);
  });

  it('rejects an expired code', async () => {
    const code = await copyaiCode();
    clockOffsetMs = 10 * 60 * 1000 + 1;
    const res = await copyaiExchange(code);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_grant', error_description: 'authorization code expired' });
  });
});

// ---- failure injection ---------------------------------------------------------------------

describe('failure injection', () => {
  it('fails the next request with 429 and Retry-After, without spending the refresh token', async () => {
    const tokens = sandbox.issueTokens('copyai');
    sandbox.failNext('copyai', { kind: 'status', status: 429, error: 'rate_limited', retryAfterSec: 7 });

    const limited = await copyaiRefresh(tokens.refresh_token ?? '');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('7');
    expect(await limited.json()).toMatchObject({ error: 'rate_limited' });

    expect((await copyaiRefresh(tokens.refresh_token ?? '')).status).toBe(200);
    const stats = sandbox.stats();
    expect(stats.tokenRequests.copyai).toEqual({ authorizationCode: 0, refresh: 2, failuresInjected: 1 });
    expect(stats.duplicateRefreshUses).toBe(0);
  });

  it('fails exactly `count` requests, defaulting the error to temporarily_unavailable', async () => {
    sandbox.failNext('copper', { kind: 'status', status: 503 }, 2);
    const statuses: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      const { fields } = await copperCallback();
      const res = await copperExchange(fields.code);
      statuses.push(res.status);
      if (res.status === 503) expect(await res.json()).toMatchObject({ error: 'temporarily_unavailable' });
    }
    expect(statuses).toEqual([503, 503, 200]);
  });

  it('keeps failing until cleared, and only the provider it was set for', async () => {
    sandbox.failUntilCleared('copyai', { kind: 'status', status: 400, error: 'invalid_grant' });
    const tokens = sandbox.issueTokens('copyai');
    for (let i = 0; i < 3; i += 1) expect((await copyaiRefresh(tokens.refresh_token ?? '')).status).toBe(400);
    expect(sandbox.stats().invalidGrants).toBe(0);

    const copernica = sandbox.issueTokens('copernica');
    expect((await check('copernica', copernica.access_token)).status).toBe(200);

    sandbox.clearFailures('copyai');
    expect((await copyaiRefresh(tokens.refresh_token ?? '')).status).toBe(200);
    expect(sandbox.stats().tokenRequests.copyai.failuresInjected).toBe(3);
  });

  it('adds the configured latency to the token endpoint', async () => {
    sandbox.configure('copyai', { latencyMs: 150 });
    const tokens = sandbox.issueTokens('copyai');
    const started = performance.now();
    expect((await copyaiRefresh(tokens.refresh_token ?? '')).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('holds a timed-out request open until close(), which ends it', async () => {
    const own = await startProviderSandbox();
    own.failNext('copyai', { kind: 'timeout' });
    const tokens = own.issueTokens('copyai');
    const pending = fetch(own.endpoints('copyai').tokenUrl, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: tokens.refresh_token ?? '',
        client_id: 'copyai-client',
        client_secret: 'copyai-secret',
      }),
    });
    const outcome = pending.then(
      (res) => `answered ${res.status}`,
      () => 'connection ended',
    );
    while (own.stats().tokenRequests.copyai.failuresInjected === 0) await new Promise((r) => setTimeout(r, 5));
    const early = await Promise.race([outcome, new Promise((r) => setTimeout(() => r('still waiting'), 200))]);
    expect(early).toBe('still waiting');

    await own.close();
    expect(await outcome).toBe('connection ended');
  });
});

// ---- control API, env, secrecy, load -------------------------------------------------------

describe('control API over HTTP', () => {
  it('configures, injects and clears failures, issues tokens, reports stats and resets', async () => {
    expect((await postJson('/_sandbox/configure', { provider: 'copyai', tokenLifetimeSec: 120 })).status).toBe(204);
    const issued = await postJson('/_sandbox/issue-tokens', { provider: 'copyai', user: 'u-7' });
    expect(issued.status).toBe(200);
    const tokens = (await issued.json()) as TokenResponse;
    expect(tokens.expires_in).toBe(120);
    const me = await get(`${sandbox.endpoints('copyai').apiUrl}/me`, { authorization: `Bearer ${tokens.access_token}` });
    expect(await me.json()).toMatchObject({ id: 'u-7' });

    expect(
      (await postJson('/_sandbox/fail', { provider: 'copyai', failure: { kind: 'status', status: 503 }, untilCleared: true })).status,
    ).toBe(204);
    expect((await copyaiRefresh(tokens.refresh_token ?? '')).status).toBe(503);
    expect((await copyaiRefresh(tokens.refresh_token ?? '')).status).toBe(503);
    expect((await postJson('/_sandbox/clear-failures', {})).status).toBe(204);
    expect((await copyaiRefresh(tokens.refresh_token ?? '')).status).toBe(200);

    const stats = (await (await fetch(`${sandbox.url}/_sandbox/stats`)).json()) as SandboxStats;
    expect(stats.tokenRequests.copyai).toEqual({ authorizationCode: 0, refresh: 3, failuresInjected: 2 });

    expect((await postJson('/_sandbox/reset', {})).status).toBe(204);
    expect(sandbox.stats().tokenRequests.copyai.refresh).toBe(0);
    expect((await check('copyai', tokens.access_token)).status).toBe(401);
  });

  it('turns a provider Basic-only on command: credentials in the body get 401 invalid_client, HTTP Basic is accepted', async () => {
    expect((await postJson('/_sandbox/configure', { provider: 'copper', requireBasicAuth: true })).status).toBe(204);
    sandbox.configure('copper', { issueRefreshToken: true });
    const refreshToken = sandbox.issueTokens('copper').refresh_token ?? '';
    const tokenUrl = sandbox.endpoints('copper').tokenUrl;

    const inBody = await postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: 'copper-client', client_secret: 'copper-secret' });
    expect(inBody.status).toBe(401);
    expect(inBody.headers.get('www-authenticate')).toContain('Basic');
    expect(await inBody.json()).toMatchObject({ error: 'invalid_client' });

    // Both at once is two methods in one request (RFC 6749 section 2.3): refused as well.
    const basic = { authorization: `Basic ${Buffer.from('copper-client:copper-secret').toString('base64')}` };
    const both = await postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: refreshToken, client_secret: 'copper-secret' }, basic);
    expect(both.status).toBe(401);

    const viaBasic = await postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: refreshToken }, basic);
    expect(viaBasic.status).toBe(200);
    expect(((await viaBasic.json()) as TokenResponse).access_token).toMatch(/^cpr_at_/);
    expect(() => sandbox.configure('copper', { requireBasicAuth: 'yes' as unknown as boolean })).toThrow(/requireBasicAuth/);
  });

  it('rejects bad input with 400 invalid_request', async () => {
    const cases: unknown[] = [
      { provider: 'github' },
      { provider: 'copyai', latencyMs: -1 },
      { provider: 'copyai', lantencyMs: 10 },
    ];
    for (const body of cases) {
      const res = await postJson('/_sandbox/configure', body);
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: 'invalid_request' });
    }
    expect((await postJson('/_sandbox/fail', { provider: 'copyai', failure: { kind: 'status', status: 200 } })).status).toBe(400);
    expect(() => sandbox.configure('copyai', { tokenLifetimeSec: 0 })).toThrow(/tokenLifetimeSec/);
  });
});

describe('API keys', () => {
  const apiUrl = (p: SandboxProvider): string => sandbox.endpoints(p).apiUrl;

  it('Copper takes a registered key only with all three X-PW headers and its owner\'s email', async () => {
    const { apiKey, userEmail } = sandbox.registerApiKey('copper', { user: 'u-7' });
    expect(apiKey).toMatch(/^cpr_key_/);
    const headers = { 'X-PW-AccessToken': apiKey, 'X-PW-Application': 'developer_api', 'X-PW-UserEmail': userEmail };
    const ok = await get(`${apiUrl('copper')}/users/me`, headers);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ id: 'u-7', name: 'Sandbox User u-7', email: 'u-7@example.test' });
    expect((await get(`${apiUrl('copper')}/users/me`, { ...headers, 'X-PW-UserEmail': 'U-7@Example.Test' })).status).toBe(200);
    expect((await get(`${apiUrl('copper')}/users/me`, { ...headers, 'X-PW-UserEmail': 'other@example.test' })).status).toBe(401);
    expect((await get(`${apiUrl('copper')}/users/me`, { ...headers, 'X-PW-Application': 'other' })).status).toBe(401);
    expect((await get(`${apiUrl('copper')}/users/me`, { 'X-PW-AccessToken': apiKey, 'X-PW-UserEmail': userEmail })).status).toBe(401);
    expect((await get(`${apiUrl('copper')}/users/me`, { ...headers, 'X-PW-AccessToken': `${apiKey}x` })).status).toBe(401);
    expect(sandbox.stats().apiKeyChecks.copper).toEqual({ accepted: 2, refused: 4 });
  });

  it('Copernica takes a key as ?access_token=, Copy.ai as x-copy-ai-api-key; a key of one provider is nothing to another', async () => {
    const copernica = sandbox.registerApiKey('copernica');
    expect((await get(`${apiUrl('copernica')}/identity?access_token=${copernica.apiKey}`)).status).toBe(200);
    const copyai = sandbox.registerApiKey('copyai', { apiKey: 'chosen-key' });
    expect(copyai.apiKey).toBe('chosen-key');
    expect((await get(`${sandbox.url}/copyai/_sandbox/check`, { 'x-copy-ai-api-key': 'chosen-key' })).status).toBe(200);
    expect((await get(`${sandbox.url}/copyai/_sandbox/check`, { 'x-copy-ai-api-key': copernica.apiKey })).status).toBe(401);
    expect((await get(`${apiUrl('copernica')}/identity?access_token=chosen-key`)).status).toBe(401);
  });

  it('registers keys over the control API too', async () => {
    const res = await postJson('/_sandbox/api-keys', { provider: 'copernica', user: 'u-9' });
    expect(res.status).toBe(200);
    const { apiKey } = (await res.json()) as { apiKey: string };
    expect((await get(`${apiUrl('copernica')}/identity?access_token=${apiKey}`)).status).toBe(200);
    expect((await postJson('/_sandbox/api-keys', { provider: 'copernica', apiKey: 'with space' })).status).toBe(400);
  });
});

describe('Copernica authentication service (REST v4 JWTs)', () => {
  const authenticateUrl = (): string => sandbox.endpoints('copernica').authenticateUrl!;
  const v4Check = (jwt: string): Promise<Response> => get(`${sandbox.url}/copernica/v4/_sandbox/check`, { authorization: `Bearer ${jwt}` });
  const claims = (jwt: string): { exp?: number; sub: string } => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));

  it('mints a 24-hour JWT as text from an access token or an API key, counts it, and v4 takes it until it expires', async () => {
    const { access_token: accessToken } = sandbox.issueTokens('copernica');
    const res = await postForm(authenticateUrl(), { access_token: accessToken });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const jwt = await res.text();
    const { exp, sub } = claims(jwt);
    expect(sub).toBe('u-1001');
    expect(exp! * 1000 - Date.now()).toBeGreaterThan(86_395_000);
    expect((await v4Check(jwt)).status).toBe(200);
    const { apiKey } = sandbox.registerApiKey('copernica');
    expect((await postForm(authenticateUrl(), { access_token: apiKey })).status).toBe(200);
    expect(sandbox.stats().derivedTokenMints.copernica).toBe(2);
    clockOffsetMs = 86_401_000;
    expect((await v4Check(jwt)).status).toBe(401);
  });

  it('refuses an unknown token with 401, and follows the configured lifetime and answer format', async () => {
    expect((await postForm(authenticateUrl(), { access_token: 'cpn_at_unknown' })).status).toBe(401);
    expect((await postForm(authenticateUrl(), {})).status).toBe(401);
    const { access_token: accessToken } = sandbox.issueTokens('copernica');
    sandbox.configure('copernica', { derivedTokenLifetimeSec: 120, derivedTokenAnswer: 'json-object' });
    const { token } = (await (await postForm(authenticateUrl(), { access_token: accessToken })).json()) as { token: string };
    expect(claims(token).exp! * 1000 - Date.now()).toBeLessThanOrEqual(120_000);
    sandbox.configure('copernica', { derivedTokenLifetimeSec: null, derivedTokenAnswer: 'json-string' });
    const asString = (await (await postForm(authenticateUrl(), { access_token: accessToken })).json()) as string;
    expect(claims(asString).exp).toBeUndefined();
    expect(sandbox.stats().derivedTokenMints.copernica).toBe(2);
  });

  it('fails as planned for the authenticate endpoint without touching the token endpoint', async () => {
    const { access_token: accessToken } = sandbox.issueTokens('copernica');
    sandbox.failNext('copernica', { kind: 'status', status: 503, retryAfterSec: 9 }, 1, 'authenticate');
    const failed = await postForm(authenticateUrl(), { access_token: accessToken });
    expect(failed.status).toBe(503);
    expect(failed.headers.get('retry-after')).toBe('9');
    expect((await postForm(authenticateUrl(), { access_token: accessToken })).status).toBe(200);
    const fail = await postJson('/_sandbox/fail', { provider: 'copernica', endpoint: 'authenticate', failure: { kind: 'status', status: 401 } });
    expect(fail.status).toBe(204);
    expect((await postForm(authenticateUrl(), { access_token: accessToken })).status).toBe(401);
    expect(sandbox.stats().derivedTokenMints.copernica).toBe(1);
    expect(sandbox.stats().tokenRequests.copernica.failuresInjected).toBe(0);
  });
});

describe('environment and endpoints', () => {
  it('lists every broker variable for the three providers', () => {
    const env = sandbox.env();
    expect(Object.keys(env).sort()).toEqual(
      [
        'COPPER_CLIENT_ID', 'COPPER_CLIENT_SECRET', 'COPPER_AUTHORIZE_URL', 'COPPER_TOKEN_URL', 'COPPER_API_URL',
        'COPERNICA_CLIENT_ID', 'COPERNICA_CLIENT_SECRET', 'COPERNICA_AUTHORIZE_URL', 'COPERNICA_TOKEN_URL', 'COPERNICA_API_URL',
        'COPERNICA_AUTHENTICATE_URL',
        'COPYAI_CLIENT_ID', 'COPYAI_CLIENT_SECRET', 'COPYAI_AUTHORIZE_URL', 'COPYAI_TOKEN_URL', 'COPYAI_API_URL', 'COPYAI_REVOKE_URL',
        'COPYAI_SCOPE',
      ].sort(),
    );
    expect(env.COPPER_AUTHORIZE_URL).toBe(`${sandbox.url}/copper/oauth/authorize`);
    expect(env.COPERNICA_TOKEN_URL).toBe(`${sandbox.url}/copernica/v2/token`);
    expect(env.COPYAI_SCOPE).toBe('content:read content:write');
    expect(env.COPERNICA_AUTHENTICATE_URL).toBe(`${sandbox.url}/copernica/authenticate`);
    expect(sandbox.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('honours custom client credentials', async () => {
    const own = await startProviderSandbox({ clients: { copyai: { clientId: 'mine', clientSecret: 's3' } } });
    try {
      expect(own.env().COPYAI_CLIENT_ID).toBe('mine');
      expect(own.env().COPPER_CLIENT_ID).toBe('copper-client');
      const tokens = own.issueTokens('copyai');
      const res = await postForm(own.endpoints('copyai').tokenUrl, {
        grant_type: 'refresh_token',
        refresh_token: tokens.refresh_token ?? '',
        client_id: 'mine',
        client_secret: 's3',
      });
      expect(res.status).toBe(200);
    } finally {
      await own.close();
    }
  });
});

describe('secrecy and load', () => {
  it('writes nothing to stdout or stderr during a full dance, and stats hold no token', async () => {
    const writes: string[] = [];
    const spies = [
      jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
        writes.push(String(chunk));
        return true;
      }),
      jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
        writes.push(String(chunk));
        return true;
      }),
    ];
    let first: TokenResponse;
    let second: TokenResponse;
    try {
      first = await copyaiTokens();
      second = (await (await copyaiRefresh(first.refresh_token ?? '')).json()) as TokenResponse;
      await copyaiRefresh(first.refresh_token ?? '');
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
    expect(writes).toEqual([]);
    const stats = JSON.stringify(sandbox.stats());
    for (const value of [first.access_token, first.refresh_token, second.access_token, second.refresh_token]) {
      expect(value).toBeDefined();
      expect(stats).not.toContain(value);
    }
    expect(stats).not.toMatch(/cai_(at|rt)_/);
  });

  it('serves many concurrent refreshes of seeded tokens with no duplicate use', async () => {
    sandbox.configure('copyai', { latencyMs: 20 });
    const seeded = Array.from({ length: 300 }, () => sandbox.issueTokens('copyai', { expiresInSec: 30 }));
    const results = await Promise.all(seeded.map((t) => copyaiRefresh(t.refresh_token ?? '').then((r) => r.status)));
    expect(results.every((status) => status === 200)).toBe(true);
    const stats = sandbox.stats();
    expect(stats.tokenRequests.copyai.refresh).toBe(300);
    expect(Object.keys(stats.refreshTokenUses)).toHaveLength(300);
    expect(stats.duplicateRefreshUses).toBe(0);
  });
});
