import { IncomingMessage, Server, ServerResponse, createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { MAX_PROVIDER_ANSWER_BYTES, ProviderClient } from './provider-client';
import { ProviderError } from './provider-error';
import { ProviderId } from './provider-registry';
import { ProviderSettings } from './provider-settings';

const SECRET = 'client-secret-that-must-never-show';
const REFRESH_TOKEN = 'refresh-token-that-must-never-show';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A bare HTTP server answering whatever the test says, recording each request and connection. */
class ScriptedProvider {
  readonly seen: Seen[] = [];
  connections = 0;
  answer: (res: ServerResponse, seen: Seen) => void = (res) => res.end();
  private readonly server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
      this.seen.push(seen);
      this.answer(res, seen);
    });
  });
  url = '';

  async start(): Promise<void> {
    this.server.on('connection', () => this.connections++);
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}

/**
 * A body far beyond any token answer, sent in 64 KiB chunks as fast as the reader takes them
 * (up to 64 MiB, so that a client without a cap finishes, slowly, instead of hanging the test).
 */
function streamLargeBody(res: ServerResponse, status: number): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.write('{"access_token":"x","padding":"');
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  let sent = 0;
  const pump = (): void => {
    while (!res.destroyed && sent < 64 * 1024 * 1024) {
      sent += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    if (!res.destroyed) res.end('"}');
  };
  pump();
}

/** RFC 6749 section 2.3.1: Basic credentials are form-urlencoded before base64. */
function basicCredentialsOf(header: string | undefined): { id: string; secret: string } {
  expect(header).toMatch(/^Basic [A-Za-z0-9+/]+=*$/);
  const decoded = Buffer.from((header as string).slice('Basic '.length), 'base64').toString('utf8');
  const [id, secret, ...rest] = decoded.split(':');
  expect(rest).toEqual([]);
  // Form-urlencoded: no raw space, colon or other reserved character may survive.
  expect(decoded).toMatch(/^[A-Za-z0-9*._%+-]+:[A-Za-z0-9*._%+-]+$/);
  const unescape = (v: string): string => decodeURIComponent(v.replace(/\+/g, ' '));
  return { id: unescape(id), secret: unescape(secret) };
}

function settingsFor(id: ProviderId, base: string): ProviderSettings {
  return {
    id,
    clientId: `${id}-id`,
    clientSecret: SECRET,
    endpoints: { authorizeUrl: `${base}/authorize`, tokenUrl: `${base}/token`, apiUrl: `${base}/api`, revokeUrl: `${base}/revoke` },
    scope: null,
    usePkce: false,
    clientAuth: 'client_secret_post',
    authorizeParams: {},
    issuer: null,
  };
}

async function failure(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ProviderError);
  const providerError = error as ProviderError;
  expect(providerError.message).not.toContain(SECRET);
  expect(providerError.message).not.toContain(REFRESH_TOKEN);
  expect(JSON.stringify(providerError.details)).not.toContain(SECRET);
  return providerError;
}

describe('ProviderClient', () => {
  const client = new ProviderClient();
  const provider = new ScriptedProvider();
  let copyai: ProviderSettings;

  beforeAll(() => provider.start());
  afterAll(() => provider.close());
  beforeEach(() => {
    provider.seen.length = 0;
    copyai = settingsFor('copyai', provider.url);
  });

  it('refreshes with a form-encoded POST carrying the client credentials, over kept-alive sockets', async () => {
    provider.answer = (res) => json(res, 200, { access_token: 'new-access', refresh_token: 'new-refresh', expires_in: 3600, token_type: 'bearer' });
    const before = provider.connections;
    for (let i = 0; i < 20; i++) {
      await expect(client.refresh(copyai, REFRESH_TOKEN)).resolves.toEqual({
        accessToken: 'new-access',
        refreshToken: 'new-refresh',
        tokenType: 'bearer',
        scope: null,
        expiresInSec: 3600,
        refreshTokenExpiresInSec: null,
      });
    }
    // Not one connection per call. (undici may open a second one: a call made the moment the
    // previous body ends can find that socket not yet back in the pool.)
    expect(provider.connections - before).toBeLessThanOrEqual(2);
    const [seen] = provider.seen;
    expect(seen.method).toBe('POST');
    expect(seen.url).toBe('/token');
    expect(seen.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(seen.headers.accept).toBe('application/json');
    expect(Object.fromEntries(new URLSearchParams(seen.body))).toEqual({
      grant_type: 'refresh_token',
      refresh_token: REFRESH_TOKEN,
      client_id: 'copyai-id',
      client_secret: SECRET,
    });
  });

  it('exchanges a Copernica code with a GET carrying everything in the query and no body', async () => {
    provider.answer = (res) => json(res, 200, { access_token: 'copernica-token' });
    const tokens = await client.exchangeCode(settingsFor('copernica', provider.url), { code: 'the-code', redirectUri: 'http://localhost/cb' });
    expect(tokens.accessToken).toBe('copernica-token');
    const [seen] = provider.seen;
    expect(seen.method).toBe('GET');
    expect(seen.body).toBe('');
    const url = new URL(seen.url, provider.url);
    expect(url.pathname).toBe('/token');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      code: 'the-code',
      redirect_uri: 'http://localhost/cb',
      client_id: 'copernica-id',
      client_secret: SECRET,
    });
  });

  describe('with client_secret_basic', () => {
    // Characters that form-urlencoding must escape (space, colon, plus, slash, non-ASCII).
    const awkwardId = 'copy:ai client+1';
    const awkwardSecret = `${SECRET} w/ é:+`;
    let basic: ProviderSettings;
    beforeEach(() => {
      basic = { ...copyai, clientId: awkwardId, clientSecret: awkwardSecret, clientAuth: 'client_secret_basic' };
    });

    it('refreshes with the credentials in an Authorization: Basic header and none in the body', async () => {
      provider.answer = (res) => json(res, 200, { access_token: 'new-access', expires_in: 60 });
      await expect(client.refresh(basic, REFRESH_TOKEN)).resolves.toMatchObject({ accessToken: 'new-access' });
      const [seen] = provider.seen;
      expect(basicCredentialsOf(seen.headers.authorization)).toEqual({ id: awkwardId, secret: awkwardSecret });
      expect(Object.fromEntries(new URLSearchParams(seen.body))).toEqual({ grant_type: 'refresh_token', refresh_token: REFRESH_TOKEN });
    });

    it('exchanges a code and revokes the same way', async () => {
      provider.answer = (res) => json(res, 200, { access_token: 'issued' });
      await client.exchangeCode(basic, { code: 'the-code', redirectUri: 'http://localhost/cb', codeVerifier: 'v'.repeat(43) });
      provider.answer = (res) => res.writeHead(200).end();
      await expect(client.revoke(basic, REFRESH_TOKEN, 'refresh_token')).resolves.toBe('revoked');

      const [exchange, revocation] = provider.seen;
      expect(basicCredentialsOf(exchange.headers.authorization)).toEqual({ id: awkwardId, secret: awkwardSecret });
      expect(Object.fromEntries(new URLSearchParams(exchange.body))).toEqual({
        grant_type: 'authorization_code',
        code: 'the-code',
        redirect_uri: 'http://localhost/cb',
        code_verifier: 'v'.repeat(43),
      });
      expect(basicCredentialsOf(revocation.headers.authorization)).toEqual({ id: awkwardId, secret: awkwardSecret });
      expect(Object.fromEntries(new URLSearchParams(revocation.body))).toEqual({ token: REFRESH_TOKEN, token_type_hint: 'refresh_token' });
    });

    it("leaves Copernica's GET exchange with its credentials in the query and no Authorization header", async () => {
      provider.answer = (res) => json(res, 200, { access_token: 'copernica-token' });
      const copernica = { ...settingsFor('copernica', provider.url), clientAuth: 'client_secret_basic' as const };
      await client.exchangeCode(copernica, { code: 'the-code', redirectUri: 'http://localhost/cb' });
      const [seen] = provider.seen;
      expect(seen.headers.authorization).toBeUndefined();
      expect(new URL(seen.url, provider.url).searchParams.get('client_secret')).toBe(SECRET);
    });

    it('names no credential in the error when the provider refuses them', async () => {
      provider.answer = (res) => json(res, 401, { error: 'invalid_client', error_description: 'bad client' });
      const error = await failure(client.refresh(basic, REFRESH_TOKEN));
      expect(error.kind).toBe('invalid_client');
      const header = provider.seen[0].headers.authorization as string;
      for (const text of [error.message, error.stack ?? '', JSON.stringify(error.details)]) {
        expect(text).not.toContain(header.slice('Basic '.length));
        expect(text).not.toContain(encodeURIComponent(awkwardSecret));
      }
    });
  });

  describe(`answers larger than ${MAX_PROVIDER_ANSWER_BYTES / 1024 / 1024} MiB`, () => {
    it.each([200, 503])('are cut off and refused, not read to the end (HTTP %i)', async (status) => {
      provider.answer = (res) => streamLargeBody(res, status);
      const started = Date.now();
      const error = await failure(client.refresh(copyai, REFRESH_TOKEN));
      expect(error.kind).toBe('rejected');
      expect(error.message).toBe('copyai answered the refresh with more than 1 MiB');
      expect(error.details).toEqual({ provider: 'copyai' });
      expect(Date.now() - started).toBeLessThan(2_000);

      // The client carries on: the next answer is read normally.
      provider.answer = (res) => json(res, 200, { access_token: 'after' });
      await expect(client.refresh(copyai, REFRESH_TOKEN)).resolves.toMatchObject({ accessToken: 'after' });
    });

    it('leave an answer just under the cap alone', async () => {
      const body = JSON.stringify({ access_token: 'big-but-fine', padding: '' });
      const padding = 'p'.repeat(MAX_PROVIDER_ANSWER_BYTES - Buffer.byteLength(body));
      provider.answer = (res) => json(res, 200, { access_token: 'big-but-fine', padding });
      await expect(client.refresh(copyai, REFRESH_TOKEN)).resolves.toMatchObject({ accessToken: 'big-but-fine' });
    });
  });

  it('reads an empty 200 (RFC 7009 revoke) as success', async () => {
    provider.answer = (res) => res.writeHead(200).end();
    await expect(client.revoke(copyai, REFRESH_TOKEN, 'refresh_token')).resolves.toBe('revoked');
    expect(Object.fromEntries(new URLSearchParams(provider.seen[0].body))).toMatchObject({ token: REFRESH_TOKEN, token_type_hint: 'refresh_token' });
  });

  it('rejects a 200 that is not JSON as an answer without an access_token', async () => {
    provider.answer = (res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>hello</html>');
    const error = await failure(client.refresh(copyai, REFRESH_TOKEN));
    expect(error.kind).toBe('rejected');
    expect(error.message).toBe('copyai answered the token request without an access_token');
  });

  it.each([
    ['503 with Retry-After seconds', 503, { error: 'temporarily_unavailable' }, { 'retry-after': '7' }, 'transient', 7],
    ['429 without a body', 429, undefined, {}, 'transient', undefined],
    ['400 invalid_grant', 400, { error: 'invalid_grant' }, {}, 'invalid_grant', undefined],
    ['401 without a body', 401, undefined, {}, 'invalid_client', undefined],
    ['400 unauthorized_client', 400, { error: 'unauthorized_client' }, {}, 'invalid_client', undefined],
    ['400 slow_down', 400, { error: 'slow_down' }, {}, 'transient', undefined],
    ['400 invalid_request', 400, { error: 'invalid_request', error_description: `bad ${SECRET}` }, {}, 'rejected', undefined],
  ])('classifies %s', async (_name, status, body, headers, kind, retryAfterSec) => {
    provider.answer = (res) => (body === undefined ? res.writeHead(status, headers).end() : json(res, status, body, headers));
    const error = await failure(client.refresh(copyai, REFRESH_TOKEN));
    expect(error.kind).toBe(kind);
    expect(error.details).toEqual({ provider: 'copyai', status, providerCode: body?.error, retryAfterSec });
  });

  it('reads a Retry-After HTTP-date as seconds from now', async () => {
    const at = new Date(Date.now() + 120_000).toUTCString();
    provider.answer = (res) => res.writeHead(503, { 'retry-after': at }).end('down');
    const error = await failure(client.refresh(copyai, REFRESH_TOKEN));
    expect(error.message).toBe('copyai answered the refresh with HTTP 503');
    expect(error.details.retryAfterSec).toBeGreaterThanOrEqual(118);
    expect(error.details.retryAfterSec).toBeLessThanOrEqual(120);
  });

  it('follows no redirect: a 3xx is a transient failure and the Location is never requested', async () => {
    provider.answer = (res, seen) => (seen.url === '/token' ? res.writeHead(307, { location: `${provider.url}/elsewhere` }).end() : json(res, 200, { access_token: 'x' }));
    const error = await failure(client.refresh(copyai, REFRESH_TOKEN));
    expect(error.kind).toBe('transient');
    expect(error.message).toBe('copyai could not be reached for the refresh');
    expect(provider.seen.map((s) => s.url)).toEqual(['/token']);
  });

  it('keeps using the pooled socket after error answers', async () => {
    const before = provider.connections;
    provider.answer = (res) => json(res, 503, { error: 'temporarily_unavailable' });
    for (let i = 0; i < 10; i++) await failure(client.refresh(copyai, REFRESH_TOKEN));
    provider.answer = (res) => res.writeHead(302, { location: '/elsewhere' }).end('moved');
    for (let i = 0; i < 10; i++) await failure(client.refresh(copyai, REFRESH_TOKEN));
    provider.answer = (res) => json(res, 200, { access_token: 'ok' });
    await client.refresh(copyai, REFRESH_TOKEN);
    expect(provider.connections - before).toBeLessThanOrEqual(2);
  });

  it('reports a provider that cannot be reached as transient', async () => {
    const closed = new ScriptedProvider();
    await closed.start();
    const url = closed.url;
    await closed.close();
    const error = await failure(client.refresh(settingsFor('copyai', url), REFRESH_TOKEN));
    expect(error.kind).toBe('transient');
    expect(error.message).toBe('copyai could not be reached for the refresh');
  });
});
