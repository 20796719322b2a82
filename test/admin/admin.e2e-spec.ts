import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { DataSource } from 'typeorm';
import { ProviderSandbox, SandboxProvider } from '../../apps/provider-sandbox/src/provider-sandbox';
import { seedConnections } from '../support/seed-connections';
import { StoredTokens } from '../support/stored-tokens';
import { connectAccount } from '../support/connect-dance';
import { useBrokerSuite } from '../support/broker-suite';
import { captureLogs, startTestBroker, TEST_ENCRYPTION_KEYS, TestBroker } from '../support/test-broker';
import { testDatabaseUrl } from '../support/test-database';

/** Every token the sandbox issues starts with one of these (cai_/cpr_/cpn_ + at_/rt_). */
const SANDBOX_TOKEN = /c(ai|pr|pn)_(at|rt)_/;

interface Answer<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

interface ConnectionView {
  account: string;
  provider: string;
  status: string;
  expiresAt: string | null;
  hasRefreshToken: boolean;
  lastRefreshedAt: string | null;
  nextRefreshAt: string | null;
  refreshFailures: number;
  lastError: { code: string; message: string; at: string } | null;
  identity: Record<string, string> | null;
}

interface RevokeBody {
  alreadyRevoked: boolean;
  atProvider: { accessToken: string; refreshToken: string; error: string | null };
  erasedLocally: boolean;
  message: string;
  connection: ConnectionView;
}

/**
 * A revocation endpoint of our own in front of (or instead of) the sandbox's: `answer` gets the
 * form body and returns the HTTP status to send. Counts the requests.
 */
async function startRevocationEndpoint(answer: (form: string, hit: number) => Promise<number>): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server: Server = createServer((req, res) => {
    const hit = ++hits;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      void answer(Buffer.concat(chunks).toString('utf8'), hit).then((status) => {
        res.writeHead(status, { 'content-type': 'application/json', ...(status === 503 ? { 'retry-after': '30' } : {}) });
        res.end(status === 200 ? '' : JSON.stringify({ error: 'temporarily_unavailable' }));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/oauth/revoke`,
    hits: () => hits,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('/admin', () => {
  const logs = captureLogs();
  const suite = useBrokerSuite({ logger: logs.logger });
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let db: DataSource;
  beforeAll(() => ({ sandbox, broker, db } = suite));

  const connect = (account: string, provider: SandboxProvider): Promise<void> => connectAccount(broker, account, provider);
  /** An admin call. Whatever it answers, no sandbox-issued token may be in the body. */
  const admin = async <T = Record<string, unknown>>(path: string, method: 'GET' | 'POST' = 'GET', on: TestBroker = broker): Promise<Answer<T>> => {
    const response = await on.call(path, { as: 'admin', method });
    const text = await response.text();
    expect({ path, leaked: SANDBOX_TOKEN.test(text) }).toEqual({ path, leaked: false });
    return { status: response.status, body: JSON.parse(text) as T, headers: response.headers };
  };
  const readToken = async (account: string, provider: string): Promise<Answer<{ accessToken: string; error?: string }>> => {
    const response = await broker.call(`/tokens/${account}?provider=${provider}`, { as: 'service' });
    return { status: response.status, body: (await response.json()) as { accessToken: string; error?: string }, headers: response.headers };
  };
  /** The plaintext tokens the broker holds for a connection right now (to prove they never leave it). */
  const storedTokens = async (account: string, provider: string): Promise<string[]> => {
    const connection = await StoredTokens.of(broker.app).find(account, provider);
    if (!connection) throw new Error(`no ${provider} connection for ${account}`);
    return [connection.accessToken, connection.refreshToken].filter((t): t is string => t !== null);
  };
  const acceptedBySandbox = async (provider: SandboxProvider, accessToken: string): Promise<boolean> => {
    const url = new URL(`${sandbox.url}/${provider}/_sandbox/check`);
    const headers: Record<string, string> = {};
    if (provider === 'copernica') url.searchParams.set('access_token', accessToken);
    else headers.authorization = `Bearer ${accessToken}`;
    return (await fetch(url, { headers })).status === 200;
  };
  const row = async (account: string, provider: string) =>
    (
      await db.query(
        `SELECT status, access_token_sealed, refresh_token_sealed, access_key_id, refresh_key_id, expires_at, version FROM connections WHERE account = $1 AND provider = $2`,
        [account, provider],
      )
    )[0] as { status: string; access_token_sealed: string | null; refresh_token_sealed: string | null; access_key_id: string | null; refresh_key_id: string | null; version: number };

  describe('access', () => {
    it('needs an admin key: none → 401, a service key → 403, on every admin route', async () => {
      await connect('acme', 'copyai');
      const routes: Array<['GET' | 'POST', string]> = [
        ['GET', '/admin/connections'],
        ['GET', '/admin/connections/acme'],
        ['POST', '/admin/connections/acme/revoke'],
        ['POST', '/admin/connections/acme/refresh'],
        ['POST', '/admin/providers/copyai/revoke-all'],
      ];
      for (const [method, path] of routes) {
        const anonymous = await broker.call(path, { method });
        const service = await broker.call(path, { method, as: 'service' });
        expect({ path, anonymous: anonymous.status, service: service.status }).toEqual({ path, anonymous: 401, service: 403 });
        expect(((await service.json()) as { error: string }).error).toBe('forbidden');
        await anonymous.arrayBuffer();
      }
      // Nothing happened on the way: the connection is still active and was never revoked at the provider.
      expect((await row('acme', 'copyai')).status).toBe('active');
      expect(sandbox.stats().revocations.copyai).toBe(0);
    });
  });

  describe('GET /admin/connections', () => {
    it('pages through every connection in a stable order with a cursor, never showing a token', async () => {
      await seedConnections({ url: testDatabaseUrl(), keyRingSpec: TEST_ENCRYPTION_KEYS, count: 11, sandbox, mode: 'repository', tokenLifetimeSec: 3600 });
      await connect('zeta', 'copper');
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page: Answer<{ items: ConnectionView[]; nextCursor: string | null }> = await admin(
          `/admin/connections?limit=5${cursor ? `&cursor=${cursor}` : ''}`,
        );
        expect(page.status).toBe(200);
        expect(page.headers.get('cache-control')).toBe('no-store');
        expect(page.body.items.length).toBeLessThanOrEqual(5);
        seen.push(...page.body.items.map((c) => `${c.account}/${c.provider}`));
        cursor = page.body.nextCursor;
        pages++;
      } while (cursor);
      expect(pages).toBe(3);
      expect(seen).toHaveLength(12);
      expect(new Set(seen).size).toBe(12);
      expect(seen).toEqual([...seen].sort());
      expect(seen[seen.length - 1]).toBe('zeta/copper');
    });

    it('shows the fields an operator needs, and filters by provider and status', async () => {
      await connect('acme', 'copyai');
      await connect('acme', 'copper');
      await connect('globex', 'copyai');
      await connect('initech', 'copernica');
      await db.query(
        `UPDATE connections SET status = 'needs_reauth', last_error_code = 'invalid_grant', last_error_message = 'copyai refused the grant', last_error_at = now(), version = version + 1
         WHERE account = 'globex'`,
      );

      const all = await admin<{ items: ConnectionView[] }>('/admin/connections');
      expect(all.body.items.map((c) => `${c.account}/${c.provider}/${c.status}`)).toEqual([
        'acme/copper/active',
        'acme/copyai/active',
        'globex/copyai/needs_reauth',
        'initech/copernica/active',
      ]);
      const copyai = all.body.items[1];
      expect(copyai).toMatchObject({ hasRefreshToken: true, refreshFailures: 0, lastError: null, lastRefreshedAt: null });
      expect(new Date(copyai.expiresAt!).getTime()).toBeGreaterThan(Date.now());
      expect(new Date(copyai.nextRefreshAt!).getTime()).toBeGreaterThan(Date.now());
      expect(all.body.items[2].lastError).toMatchObject({ code: 'invalid_grant', message: 'copyai refused the grant' });
      expect(all.body.items[3].identity).toEqual(expect.objectContaining({ id: expect.any(String), company: expect.any(String) }));
      expect(all.body.items[0].expiresAt).toBeNull();

      const byProvider = await admin<{ items: ConnectionView[] }>('/admin/connections?provider=copyai');
      expect(byProvider.body.items.map((c) => c.account)).toEqual(['acme', 'globex']);
      const byStatus = await admin<{ items: ConnectionView[] }>('/admin/connections?status=needs_reauth');
      expect(byStatus.body.items.map((c) => c.account)).toEqual(['globex']);
      const both = await admin<{ items: ConnectionView[]; nextCursor: string | null }>('/admin/connections?provider=copyai&status=active');
      expect(both.body).toEqual({ items: [expect.objectContaining({ account: 'acme', provider: 'copyai' })], nextCursor: null });
      const first = await admin<{ items: ConnectionView[]; nextCursor: string }>('/admin/connections?provider=copyai&limit=1');
      expect(first.body.items.map((c) => c.account)).toEqual(['acme']);
      const second = await admin<{ items: ConnectionView[]; nextCursor: string | null }>(`/admin/connections?provider=copyai&limit=1&cursor=${first.body.nextCursor}`);
      expect(second.body.items.map((c) => c.account)).toEqual(['globex']);
      expect(second.body.nextCursor).toBeNull();
    });

    it('answers bad filters, cursors and limits with a clear 400', async () => {
      const cases: Array<[string, number, string]> = [
        ['/admin/connections?status=bogus', 400, 'validation_failed'],
        ['/admin/connections?provider=dropbox', 400, 'provider_unknown'],
        ['/admin/connections?cursor=not-ours', 400, 'validation_failed'],
        ['/admin/connections?cursor=%24%25%5E', 400, 'validation_failed'],
        [`/admin/connections?cursor=${'a'.repeat(600)}`, 400, 'validation_failed'],
        ['/admin/connections?limit=0', 400, 'validation_failed'],
        ['/admin/connections?limit=201', 400, 'validation_failed'],
        ['/admin/connections?limit=ten', 400, 'validation_failed'],
        ['/admin/connections?status=active&status=revoked', 400, 'validation_failed'],
        ['/admin/connections?color=red', 400, 'validation_failed'],
        ['/admin/connections?limit=200&status=revoked', 200, ''],
      ];
      for (const [path, status, error] of cases) {
        const answer = await admin<{ error?: string; message?: string }>(path);
        expect({ path, status: answer.status, error: answer.body.error ?? '' }).toEqual({ path, status, error });
        if (status === 400) expect(answer.body.message).toEqual(expect.any(String));
      }
      const status = await admin<{ message: string }>('/admin/connections?status=bogus');
      expect(status.body.message).toContain('active, needs_reauth, revoked');
    });
  });

  describe('GET /admin/connections/:account', () => {
    it('shows one connection; provider may be omitted when there is one; 400 naming them when several; 404 unknown', async () => {
      await connect('acme', 'copyai');
      await connect('acme', 'copper');
      await connect('globex', 'copernica');
      const one = await admin<ConnectionView>('/admin/connections/globex');
      expect(one.status).toBe(200);
      expect(one.body).toMatchObject({ account: 'globex', provider: 'copernica', status: 'active', expiresAt: null, hasRefreshToken: false });
      expect((await admin<ConnectionView>('/admin/connections/acme?provider=copper')).body.provider).toBe('copper');

      const ambiguous = await admin<{ error: string; providers: string[]; message: string }>('/admin/connections/acme');
      expect(ambiguous.status).toBe(400);
      expect(ambiguous.body).toMatchObject({ error: 'provider_ambiguous', providers: ['copper', 'copyai'] });
      const cases: Array<[string, number, string]> = [
        ['/admin/connections/nobody', 404, 'connection_not_found'],
        ['/admin/connections/globex?provider=copyai', 404, 'connection_not_found'],
        ['/admin/connections/acme?provider=dropbox', 400, 'provider_unknown'],
        ['/admin/connections/bad%20account!', 400, 'invalid_account'],
        ['/admin/connections/acme?provider=copper&extra=1', 400, 'validation_failed'],
      ];
      for (const [path, status, error] of cases) {
        const answer = await admin<{ error: string }>(path);
        expect({ path, status: answer.status, error: answer.body.error }).toEqual({ path, status, error });
      }
    });
  });

  describe('POST /admin/connections/:account/revoke', () => {
    it('revokes a Copy.ai connection at the provider, erases it locally, and GET /tokens answers 409 revoked', async () => {
      await connect('acme', 'copyai');
      const served = await readToken('acme', 'copyai');
      expect(served.status).toBe(200);
      expect(await acceptedBySandbox('copyai', served.body.accessToken)).toBe(true);
      const before = await row('acme', 'copyai');

      const answer = await admin<RevokeBody>('/admin/connections/acme/revoke', 'POST');
      expect(answer.status).toBe(200);
      expect(answer.headers.get('cache-control')).toBe('no-store');
      expect(answer.body).toMatchObject({
        alreadyRevoked: false,
        atProvider: { accessToken: 'revoked', refreshToken: 'revoked', error: null },
        erasedLocally: true,
        connection: { account: 'acme', provider: 'copyai', status: 'revoked', expiresAt: null, hasRefreshToken: false },
      });
      expect(answer.body.message).toMatch(/revoked at Copy\.ai and erased locally/);

      // At the provider: both tokens were sent to RFC 7009, and the access token no longer works there.
      expect(sandbox.stats().revocations.copyai).toBe(2);
      expect(await acceptedBySandbox('copyai', served.body.accessToken)).toBe(false);
      // Locally: nothing left to decrypt, and the version moved (so every replica's cache drops it).
      const after = await row('acme', 'copyai');
      expect(after).toMatchObject({ status: 'revoked', access_token_sealed: null, refresh_token_sealed: null, access_key_id: null, refresh_key_id: null });
      expect(after.version).toBeGreaterThan(before.version);

      const read = await readToken('acme', 'copyai');
      expect(read.status).toBe(409);
      expect(read.body.error).toBe('revoked');
    });

    it('is idempotent: revoking again answers 200, says it already was, and calls no provider', async () => {
      await connect('acme', 'copyai');
      expect((await admin('/admin/connections/acme/revoke?provider=copyai', 'POST')).status).toBe(200);
      const revocations = sandbox.stats().revocations.copyai;
      const version = (await row('acme', 'copyai')).version;

      const again = await admin<RevokeBody>('/admin/connections/acme/revoke?provider=copyai', 'POST');
      expect(again.status).toBe(200);
      expect(again.body).toMatchObject({
        alreadyRevoked: true,
        erasedLocally: false,
        atProvider: { accessToken: 'not_stored', refreshToken: 'not_stored' },
        connection: { status: 'revoked' },
      });
      expect(again.body.message).toContain('already revoked');
      expect(sandbox.stats().revocations.copyai).toBe(revocations);
      expect((await row('acme', 'copyai')).version).toBe(version);
    });

    it('Copper has no revocation endpoint: says so, and erases the token locally', async () => {
      await connect('globex', 'copper');
      const token = (await readToken('globex', 'copper')).body.accessToken;
      const answer = await admin<RevokeBody>('/admin/connections/globex/revoke', 'POST');
      expect(answer.status).toBe(200);
      expect(answer.body).toMatchObject({
        alreadyRevoked: false,
        atProvider: { accessToken: 'not_supported', refreshToken: 'not_stored', error: null },
        erasedLocally: true,
        connection: { status: 'revoked' },
      });
      expect(answer.body.message).toMatch(/Copper offers no revocation endpoint.*erased locally/);
      expect(sandbox.stats().revocations.copper).toBe(0);
      // Honest about it: the token still works at Copper, but the broker no longer holds or serves it.
      expect(await acceptedBySandbox('copper', token)).toBe(true);
      expect(await row('globex', 'copper')).toMatchObject({ status: 'revoked', access_token_sealed: null });
      expect((await readToken('globex', 'copper')).body.error).toBe('revoked');
    });

    it('a provider failing during revocation does not stop the local erase, and the answer says so', async () => {
      const failing = await startRevocationEndpoint(async () => 503);
      const env = Object.fromEntries(Object.entries(sandbox.env()).filter(([key]) => !key.startsWith('COPERNICA_')));
      const other = await startTestBroker({ ...env, COPYAI_REVOKE_URL: failing.url, REFRESH_SCHEDULER_ENABLED: 'false' });
      try {
        await connect('acme', 'copyai');
        const token = (await readToken('acme', 'copyai')).body.accessToken;

        const answer = await admin<RevokeBody>('/admin/connections/acme/revoke', 'POST', other);
        expect(answer.status).toBe(200);
        expect(answer.body).toMatchObject({
          alreadyRevoked: false,
          atProvider: { accessToken: 'failed', refreshToken: 'failed' },
          erasedLocally: true,
          connection: { status: 'revoked' },
        });
        expect(answer.body.atProvider.error).toContain('HTTP 503');
        expect(answer.body.message).toMatch(/did not confirm the revocation.*erased locally anyway/);
        expect(failing.hits()).toBe(2);
        expect(await row('acme', 'copyai')).toMatchObject({ status: 'revoked', access_token_sealed: null, refresh_token_sealed: null });
        // The answer's warning is true: the provider never revoked it.
        expect(await acceptedBySandbox('copyai', token)).toBe(true);

        // This broker has no Copernica configured: revoke-all for it is a 404.
        const unconfigured = await admin<{ error: string; message: string }>('/admin/providers/copernica/revoke-all', 'POST', other);
        expect(unconfigured.status).toBe(404);
        expect(unconfigured.body.error).toBe('provider_not_found');
        expect(unconfigured.body.message).toContain('COPERNICA_CLIENT_ID');
      } finally {
        await other.close();
        await failing.close();
      }
    });

    it('tokens refreshed by another replica while the revocation is under way are revoked too before the erase', async () => {
      await connect('acme', 'copyai');
      let refreshedToken = '';
      // Forwards to the sandbox; on the first request, the other replica refreshes the connection first.
      const proxy = await startRevocationEndpoint(async (form, hit) => {
        if (hit === 1) {
          expect((await admin('/admin/connections/acme/refresh', 'POST')).status).toBe(200);
          refreshedToken = (await readToken('acme', 'copyai')).body.accessToken;
        }
        const forwarded = await fetch(sandbox.endpoints('copyai').revokeUrl!, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: form,
        });
        return forwarded.status;
      });
      const revoking = await startTestBroker({ ...sandbox.env(), COPYAI_REVOKE_URL: proxy.url, REFRESH_SCHEDULER_ENABLED: 'false' });
      try {
        const answer = await admin<RevokeBody>('/admin/connections/acme/revoke', 'POST', revoking);
        expect(answer.status).toBe(200);
        expect(answer.body).toMatchObject({ atProvider: { accessToken: 'revoked', refreshToken: 'revoked' }, erasedLocally: true });
        // Two rounds: the first pair, then (the version having moved) the refreshed pair.
        expect(proxy.hits()).toBe(4);
        expect(refreshedToken).toMatch(/^cai_at_/);
        expect(await acceptedBySandbox('copyai', refreshedToken)).toBe(false);
        expect(await row('acme', 'copyai')).toMatchObject({ status: 'revoked', access_token_sealed: null, refresh_token_sealed: null });
      } finally {
        await revoking.close();
        await proxy.close();
      }
    });

    it('answers unknown accounts, ambiguous accounts and bad input clearly, changing nothing', async () => {
      await connect('acme', 'copyai');
      await connect('acme', 'copper');
      const cases: Array<[string, number, string]> = [
        ['/admin/connections/acme/revoke', 400, 'provider_ambiguous'],
        ['/admin/connections/nobody/revoke', 404, 'connection_not_found'],
        ['/admin/connections/acme/revoke?provider=copernica', 404, 'connection_not_found'],
        ['/admin/connections/acme/revoke?provider=nope', 400, 'provider_unknown'],
        ['/admin/connections/b%C3%A4d/revoke', 400, 'invalid_account'],
      ];
      for (const [path, status, error] of cases) {
        const answer = await admin<{ error: string; providers?: string[] }>(path, 'POST');
        expect({ path, status: answer.status, error: answer.body.error }).toEqual({ path, status, error });
        if (error === 'provider_ambiguous') expect(answer.body.providers).toEqual(['copper', 'copyai']);
      }
      expect((await admin<{ items: ConnectionView[] }>('/admin/connections')).body.items.map((c) => c.status)).toEqual(['active', 'active']);
      expect(sandbox.stats().revocations.copyai).toBe(0);
    });
  });

  describe('POST /admin/connections/:account/refresh', () => {
    it('refreshes now even though the token is far from expiry; GET /tokens then serves the new token', async () => {
      await connect('acme', 'copyai');
      const before = (await readToken('acme', 'copyai')).body.accessToken;
      sandbox.resetStats();

      const answer = await admin<{ outcome: string; expiresAt: string; connection: ConnectionView }>('/admin/connections/acme/refresh', 'POST');
      expect(answer.status).toBe(200);
      expect(answer.body).toMatchObject({ account: 'acme', provider: 'copyai', outcome: 'refreshed' });
      expect(new Date(answer.body.expiresAt).getTime()).toBeGreaterThan(Date.now());
      expect(answer.body.connection.lastRefreshedAt).not.toBeNull();
      expect(sandbox.stats().tokenRequests.copyai.refresh).toBe(1);

      const after = await readToken('acme', 'copyai');
      expect(after.status).toBe(200);
      expect(after.body.accessToken).not.toBe(before);
      expect(await acceptedBySandbox('copyai', after.body.accessToken)).toBe(true);
    });

    it('invalid_grant: 409 needs_reauth, the connection becomes needs_reauth, and a second try calls no provider', async () => {
      await connect('acme', 'copyai');
      sandbox.failNext('copyai', { kind: 'status', status: 400, error: 'invalid_grant' });
      const first = await admin<{ error: string; outcome: string; message: string }>('/admin/connections/acme/refresh', 'POST');
      expect(first.status).toBe(409);
      expect(first.body).toMatchObject({ statusCode: 409, error: 'needs_reauth', outcome: 'needs_reauth' });
      expect(first.body.message).toContain('connect session');
      const view = await admin<ConnectionView>('/admin/connections/acme');
      expect(view.body).toMatchObject({ status: 'needs_reauth', lastError: { code: 'invalid_grant' } });

      const calls = sandbox.stats().tokenRequests.copyai.refresh;
      const second = await admin<{ error: string; outcome: string; status: string }>('/admin/connections/acme/refresh', 'POST');
      expect(second.status).toBe(409);
      expect(second.body).toMatchObject({ error: 'needs_reauth', outcome: 'inactive', status: 'needs_reauth' });
      expect(sandbox.stats().tokenRequests.copyai.refresh).toBe(calls);
      expect((await readToken('acme', 'copyai')).body.error).toBe('needs_reauth');
    });

    it('a provider outage is 503 with Retry-After, and the connection stays active with its token', async () => {
      await connect('acme', 'copyai');
      const before = (await readToken('acme', 'copyai')).body.accessToken;
      sandbox.failNext('copyai', { kind: 'status', status: 503, retryAfterSec: 7 });
      const answer = await admin<{ error: string; outcome: string; retryAfter: number }>('/admin/connections/acme/refresh', 'POST');
      expect(answer.status).toBe(503);
      expect(answer.body).toMatchObject({ error: 'provider_unavailable', outcome: 'transient', retryAfter: 7 });
      expect(answer.headers.get('retry-after')).toBe('7');
      const view = await admin<ConnectionView>('/admin/connections/acme');
      expect(view.body).toMatchObject({ status: 'active', refreshFailures: 1, lastError: { code: 'provider_unavailable' } });
      expect((await readToken('acme', 'copyai')).body.accessToken).toBe(before);
    });

    it('invalid_client is 502 and leaves the connection intact; tokens without a refresh token are 409 not_refreshable; revoked is 409', async () => {
      await connect('acme', 'copyai');
      await connect('globex', 'copper');
      await connect('initech', 'copernica');
      sandbox.failNext('copyai', { kind: 'status', status: 401, error: 'invalid_client' });
      const misconfigured = await admin<{ error: string; outcome: string }>('/admin/connections/acme/refresh', 'POST');
      expect(misconfigured.status).toBe(502);
      expect(misconfigured.body).toMatchObject({ error: 'provider_misconfigured', outcome: 'misconfigured' });
      expect((await row('acme', 'copyai')).status).toBe('active');

      for (const account of ['globex', 'initech']) {
        const answer = await admin<{ error: string; outcome: string; message: string }>(`/admin/connections/${account}/refresh`, 'POST');
        expect({ account, status: answer.status, error: answer.body.error, outcome: answer.body.outcome }).toEqual({
          account,
          status: 409,
          error: 'not_refreshable',
          outcome: 'not_refreshable',
        });
        expect(answer.body.message).toContain('reconnect');
      }
      expect(sandbox.stats().tokenRequests.copper.refresh + sandbox.stats().tokenRequests.copernica.refresh).toBe(0);

      expect((await admin('/admin/connections/globex/revoke', 'POST')).status).toBe(200);
      const revoked = await admin<{ error: string }>('/admin/connections/globex/refresh', 'POST');
      expect(revoked.status).toBe(409);
      expect(revoked.body.error).toBe('revoked');
      expect((await admin<{ error: string }>('/admin/connections/nobody/refresh', 'POST')).status).toBe(404);
    });
  });

  describe('POST /admin/providers/:provider/revoke-all', () => {
    it('revokes every Copy.ai connection holding tokens, leaves other providers alone, and a second call finds nothing', async () => {
      const seeded = await seedConnections({ url: testDatabaseUrl(), keyRingSpec: TEST_ENCRYPTION_KEYS, count: 12, sandbox, mode: 'repository', tokenLifetimeSec: 3600 });
      await connect('globex', 'copper');
      // One already needs re-authorisation (its tokens are still stored), one was revoked before.
      await db.query(`UPDATE connections SET status = 'needs_reauth', version = version + 1 WHERE account = $1`, [seeded[0].account]);
      expect((await admin(`/admin/connections/${seeded[1].account}/revoke`, 'POST')).status).toBe(200);
      sandbox.resetStats();

      const answer = await admin<Record<string, unknown>>('/admin/providers/copyai/revoke-all', 'POST');
      expect(answer.status).toBe(200);
      expect(answer.body).toMatchObject({
        provider: 'copyai',
        processed: 11,
        revokedAtProvider: 11,
        notSupported: 0,
        failedAtProvider: 0,
        erased: 11,
        alreadyRevoked: 0,
        failedAccounts: [],
      });
      expect(sandbox.stats().revocations.copyai).toBe(22);
      for (const connection of seeded) expect(await acceptedBySandbox('copyai', connection.accessToken)).toBe(false);
      const left = await db.query(`SELECT provider, status, count(*)::int AS n FROM connections GROUP BY provider, status ORDER BY provider`);
      expect(left).toEqual([
        { provider: 'copper', status: 'active', n: 1 },
        { provider: 'copyai', status: 'revoked', n: 12 },
      ]);
      expect((await readToken(seeded[5].account, 'copyai')).body.error).toBe('revoked');

      const again = await admin<Record<string, unknown>>('/admin/providers/copyai/revoke-all', 'POST');
      expect(again.body).toMatchObject({ processed: 0, erased: 0, revokedAtProvider: 0 });
      expect(sandbox.stats().revocations.copyai).toBe(22);

      const copper = await admin<Record<string, unknown>>('/admin/providers/copper/revoke-all', 'POST');
      expect(copper.body).toMatchObject({ processed: 1, notSupported: 1, erased: 1, revokedAtProvider: 0, failedAtProvider: 0 });
    });

    it('404 for an unknown provider; rejects query parameters', async () => {
      const unknown = await admin<{ error: string }>('/admin/providers/dropbox/revoke-all', 'POST');
      expect(unknown.status).toBe(404);
      expect(unknown.body.error).toBe('provider_not_found');
      const extra = await admin<{ error: string }>('/admin/providers/copyai/revoke-all?dryRun=true', 'POST');
      expect(extra.status).toBe(400);
      expect(extra.body.error).toBe('validation_failed');
    });
  });

  it('no token, refresh token or key appears in any admin answer or log line, and changes are audited', async () => {
    await connect('acme', 'copyai');
    await connect('acme', 'copper');
    await connect('initech', 'copernica');
    const secrets = new Set<string>([
      ...(await storedTokens('acme', 'copyai')),
      ...(await storedTokens('acme', 'copper')),
      ...(await storedTokens('initech', 'copernica')),
    ]);
    expect(secrets.size).toBe(4); // Copy.ai access + refresh, Copper access, Copernica access
    const bodies: string[] = [];
    const record = async (path: string, method: 'GET' | 'POST' = 'GET'): Promise<number> => {
      const response = await broker.call(path, { as: 'admin', method });
      bodies.push(await response.text());
      return response.status;
    };
    logs.claimProcessLogger();
    const logStart = logs.lines.length;

    expect(await record('/admin/connections')).toBe(200);
    expect(await record('/admin/connections/acme?provider=copyai')).toBe(200);
    expect(await record('/admin/connections/acme')).toBe(400);
    expect(await record('/admin/connections/acme/refresh?provider=copyai', 'POST')).toBe(200);
    for (const token of await storedTokens('acme', 'copyai')) secrets.add(token);
    expect(secrets.size).toBe(6); // and the refreshed pair
    sandbox.failNext('copyai', { kind: 'status', status: 503 });
    expect(await record('/admin/connections/acme/refresh?provider=copyai', 'POST')).toBe(503);
    expect(await record('/admin/connections/initech/refresh', 'POST')).toBe(409);
    expect(await record('/admin/connections/acme/revoke?provider=copyai', 'POST')).toBe(200);
    expect(await record('/admin/providers/copper/revoke-all', 'POST')).toBe(200);
    expect(await record('/admin/providers/copernica/revoke-all', 'POST')).toBe(200);

    const logged = logs.lines.slice(logStart).join('\n');
    for (const secret of secrets) {
      for (const body of bodies) expect(body.includes(secret)).toBe(false);
      expect(logged.includes(secret)).toBe(false);
    }
    expect(logged).not.toMatch(SANDBOX_TOKEN);
    // Every admin request is one audit line naming the admin key, with its outcome (test/admin/admin-audit.e2e-spec.ts has more).
    const audit = logs.lines
      .slice(logStart)
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => entry.context === 'Audit');
    expect(audit.map((entry) => [entry.action, entry.actor, entry.account ?? entry.provider, entry.outcome])).toEqual([
      ['connections.list', 'ops', null, 'ok'],
      ['connections.get', 'ops', 'acme', 'ok'],
      ['connections.get', 'ops', 'acme', 'provider_ambiguous'],
      ['connection.refresh', 'ops', 'acme', 'refreshed'],
      ['connection.refresh', 'ops', 'acme', 'provider_unavailable'],
      ['connection.refresh', 'ops', 'initech', 'not_refreshable'],
      ['connection.revoke', 'ops', 'acme', 'revoked'],
      ['provider.revoke_all', 'ops', 'copper', 'revoked'],
      ['provider.revoke_all', 'ops', 'copernica', 'revoked'],
    ]);
  });
});
