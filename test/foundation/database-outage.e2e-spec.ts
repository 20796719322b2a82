/**
 * The database going away under a running broker (guarantee 12): the token read and the admin
 * routes answer 503 `database_unavailable` with Retry-After (not a 500), within a few seconds, and
 * never say where the database is; readiness names the failed check only; the process keeps
 * serving and recovers by itself once the database is reachable again.
 *
 * The broker reaches Postgres through a TCP proxy that can cut every connection and refuse new
 * ones (the database is down, or its host rejects connections), or accept new connections and
 * never pass a byte (the host is gone and packets vanish).
 */
import { ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { connectAccount } from '../support/connect-dance';
import { TcpProxy } from '../support/tcp-proxy';
import { captureLogs, startProxiedTestBroker, TestBroker } from '../support/test-broker';
import { testDatabaseUrl } from '../support/test-database';

jest.setTimeout(120_000);

/** A refused connection fails at once: the answer must not wait for any timeout. */
const PROMPT_MS = 2_000;
/** A database that never answers costs the pool's connect timeout (5 s, data-source-options.ts), plus slack. */
const CONNECT_TIMEOUT_BOUND_MS = 7_000;

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  body: Record<string, unknown>;
  elapsedMs: number;
}

async function answer(broker: TestBroker, path: string, as?: 'service' | 'admin'): Promise<Answer> {
  const started = Date.now();
  const response = await broker.call(path, { as });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, body: JSON.parse(text) as Record<string, unknown>, elapsedMs: Date.now() - started };
}

/** Polls until `accept` holds, returning the accepted answer; fails with the last one seen. */
async function until(broker: TestBroker, path: string, as: 'service' | 'admin' | undefined, accept: (a: Answer) => boolean, timeoutMs = 30_000): Promise<Answer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = await answer(broker, path, as);
    if (accept(last)) return last;
    if (Date.now() > deadline) throw new Error(`${path} never reached the expected state; last answer: ${last.status} ${last.text}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('database outage', () => {
  const logs = captureLogs('warn');
  let sandbox: ProviderSandbox;
  let proxy: TcpProxy;
  let broker: TestBroker;
  /** What the body of any answer must not reveal about where the database is. */
  let whereabouts: string[];

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    ({ broker, proxy } = await startProxiedTestBroker(
      // No cache: every read goes to the database, as a read of an account this replica has not seen does.
      { ...sandbox.env(), TOKEN_CACHE_MAX_ACCOUNTS: '0' },
      { logger: logs.logger },
    ));
    const databaseUrl = new URL(testDatabaseUrl());
    whereabouts = ['127.0.0.1', 'localhost', `:${proxy.port}`, String(proxy.port), `:${databaseUrl.port}`, 'ECONN', 'postgres://', 'postgresql://'];
  });

  beforeEach(() => logs.claimProcessLogger());

  afterAll(async () => {
    proxy?.restore();
    await broker?.close();
    await proxy?.close();
    await sandbox?.close();
  });

  afterEach(() => proxy.restore());

  const expectDatabaseUnavailable = (got: Answer, withinMs = PROMPT_MS): void => {
    expect({ status: got.status, body: got.body }).toMatchObject({
      status: 503,
      body: { statusCode: 503, error: 'database_unavailable', message: expect.any(String) as string },
    });
    expect(got.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    expect(got.headers.get('content-type')).toMatch(/^application\/json/);
    for (const text of whereabouts) expect(got.text).not.toContain(text);
    expect(got.elapsedMs).toBeLessThan(withinMs);
  };

  it('token read and admin routes answer 503 database_unavailable with Retry-After, keep serving, and recover', async () => {
    await connectAccount(broker, 'outage-acme', 'copyai');
    expect((await answer(broker, '/tokens/outage-acme', 'service')).status).toBe(200);
    expect((await answer(broker, '/admin/connections', 'admin')).status).toBe(200);

    proxy.cutAll();

    expectDatabaseUnavailable(await answer(broker, '/tokens/outage-acme', 'service'));
    expectDatabaseUnavailable(await answer(broker, '/tokens/outage-never-seen?provider=copper', 'service'));
    const list = await answer(broker, '/admin/connections', 'admin');
    expectDatabaseUnavailable(list);
    expectDatabaseUnavailable(await answer(broker, '/admin/connections/outage-acme', 'admin'));
    // The cause is for the log (at warn), and the admin request is audited with the code it got.
    const requestId = list.headers.get('x-request-id');
    expect(logs.entries()).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ context: 'Errors', requestId, cause: expect.stringMatching(/Connection terminated|ECONN/) as string }),
        expect.objectContaining({ context: 'Audit', requestId, action: 'connections.list', actor: 'ops', outcome: 'database_unavailable' }),
      ]),
    );
    // Still serving: the same request again, and liveness, answer at once.
    expectDatabaseUnavailable(await answer(broker, '/tokens/outage-acme', 'service'));
    expect((await answer(broker, '/health/live')).status).toBe(200);
    // Requests that need no database are unaffected: a bad key is still a 401, a bad id a 400.
    expect((await answer(broker, '/tokens/outage-acme')).status).toBe(401);
    expect((await answer(broker, '/tokens/not%20valid', 'service')).status).toBe(400);

    proxy.restore();

    const served = await until(broker, '/tokens/outage-acme', 'service', (a) => a.status === 200);
    expect(served.body).toMatchObject({ account: 'outage-acme', provider: 'copyai' });
    expect((await answer(broker, '/admin/connections', 'admin')).status).toBe(200);
  });

  it('several reads at once during the outage all get a prompt 503', async () => {
    await connectAccount(broker, 'outage-many', 'copyai');
    proxy.cutAll();
    const answers = await Promise.all(Array.from({ length: 20 }, () => answer(broker, '/tokens/outage-many', 'service')));
    for (const got of answers) expectDatabaseUnavailable(got);
  });

  it('a database that accepts connections but never answers is a 503 within the pool\'s connect timeout', async () => {
    await connectAccount(broker, 'outage-silent', 'copyai');
    // Drop what is open, then let new connections in but pass none of their bytes.
    proxy.cutAll();
    proxy.restore();
    proxy.freeze('token-broker');
    try {
      const answers = await Promise.all([
        answer(broker, '/tokens/outage-silent', 'service'),
        answer(broker, '/tokens/outage-silent', 'service'),
        answer(broker, '/admin/connections', 'admin'),
      ]);
      for (const got of answers) expectDatabaseUnavailable(got, CONNECT_TIMEOUT_BOUND_MS);
    } finally {
      // Frozen connections stay frozen until cut.
      proxy.cutAll();
      proxy.restore();
    }
    await until(broker, '/tokens/outage-silent', 'service', (a) => a.status === 200);
  });

  it('the browser routes of the connect flow answer a 503 page with Retry-After, and the link still works afterwards', async () => {
    const created = await broker.call('/connect-sessions', {
      method: 'POST',
      as: 'service',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ account: 'outage-browser', provider: 'copyai' }),
    });
    expect(created.status).toBe(201);
    const { connectUrl } = (await created.json()) as { connectUrl: string };

    proxy.cutAll();
    const page = await fetch(connectUrl, { redirect: 'manual' });
    const html = await page.text();
    expect(page.status).toBe(503);
    expect(page.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(html).toContain('database_unavailable');
    for (const text of whereabouts) expect(html).not.toContain(text);
    const callback = await fetch(`${broker.url}/connect/copyai/callback?code=c&state=${'s'.repeat(43)}`, { redirect: 'manual' });
    expect(callback.status).toBe(503);
    proxy.restore();

    // Nothing was consumed: the link opens its confirmation page once the database is back.
    const deadline = Date.now() + 30_000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) status = (await fetch(connectUrl, { redirect: 'manual' })).status;
    expect(status).toBe(200);
  });

  it('readiness names the failed check, never the database error, host or port, and recovers', async () => {
    await until(broker, '/health/ready', undefined, (a) => a.status === 200);

    proxy.cutAll();

    const notReady = await until(broker, '/health/ready', undefined, (a) => a.status === 503);
    expect(notReady.body).toMatchObject({ statusCode: 503, error: 'not_ready' });
    expect(notReady.body.message).toEqual(expect.stringContaining('database: unreachable'));
    for (const text of whereabouts) expect(notReady.text).not.toContain(text);
    expect(notReady.text).not.toMatch(/terminated|timeout|refused|reset/i);
    // What the body leaves out is in the log, at warn.
    expect(logs.entries()).toEqual(
      expect.arrayContaining([expect.objectContaining({ context: 'Readiness', level: 40, msg: expect.stringContaining('database check fails') as string })]),
    );
    expect((await answer(broker, '/health/live')).status).toBe(200);

    proxy.restore();

    const ready = await until(broker, '/health/ready', undefined, (a) => a.status === 200);
    expect(ready.body).toMatchObject({ status: 'ok', info: { database: { status: 'up' } } });
  });
});
