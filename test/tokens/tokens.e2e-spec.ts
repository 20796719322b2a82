import { ManualClock } from '@app/common';
import { USAGE_RESOLUTION_MS, UsageRecorder } from '@app/tokens';
import { DataSource } from 'typeorm';
import { ProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { connectAccount } from '../support/connect-dance';
import { useBrokerSuite } from '../support/broker-suite';
import { startTestBroker, TestBroker } from '../support/test-broker';

interface TokenBody {
  account: string;
  provider: string;
  accessToken: string;
  expiresAt: string | null;
  apply: { headers: Record<string, string>; query: Record<string, string> };
  error?: string;
  message?: string;
}

describe('GET /tokens/:account', () => {
  const suite = useBrokerSuite();
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let db: DataSource;
  beforeAll(() => ({ sandbox, broker, db } = suite));

  const connect = (account: string, provider: string): Promise<void> => connectAccount(broker, account, provider);
  const read = async (account: string, query = '', on: TestBroker = broker): Promise<{ status: number; body: TokenBody; headers: Headers }> => {
    const response = await on.call(`/tokens/${account}${query}`, { as: 'service' });
    return { status: response.status, body: (await response.json()) as TokenBody, headers: response.headers };
  };
  /**
   * Changes rows behind the broker's back, as another replica would. The broker learns of it by
   * NOTIFY, which arrives within milliseconds but after the UPDATE returns: give it that moment.
   */
  const change = async (sql: string, params: unknown[] = []) => {
    await db.query(sql, params);
    await new Promise((resolve) => setTimeout(resolve, 150));
  };
  /** Makes the stored token look expired to the broker (the sandbox still knows its refresh token). */
  const expire = async (account: string) =>
    change(`UPDATE connections SET expires_at = now() - interval '1 minute', version = version + 1 WHERE account = $1`, [account]);
  const isValidAtSandbox = async (provider: string, apply: TokenBody['apply']) => {
    const url = new URL(`${sandbox.url}/${provider}/_sandbox/check`);
    for (const [k, v] of Object.entries(apply.query)) url.searchParams.set(k, v);
    return (await fetch(url, { headers: apply.headers })).status === 200;
  };

  it('serves each provider’s token with the right way to apply it, valid at the provider', async () => {
    await connect('acme', 'copyai');
    await connect('globex', 'copper');
    await connect('initech', 'copernica');
    const copyai = await read('acme');
    expect(copyai.status).toBe(200);
    // The answer goes through a compiled response schema: a field it does not list would be dropped.
    expect(Object.keys(copyai.body).sort()).toEqual(['accessToken', 'account', 'apply', 'authMode', 'expiresAt', 'provider', 'scope', 'tokenType']);
    expect(copyai.body).toMatchObject({ account: 'acme', provider: 'copyai', tokenType: 'Bearer', authMode: 'oauth2' });
    expect(new Date(copyai.body.expiresAt!).getTime()).toBeGreaterThan(Date.now());
    expect(copyai.body.apply.headers.Authorization).toBe(`Bearer ${copyai.body.accessToken}`);
    expect(copyai.body.expiresAt).not.toBeNull();
    const copper = await read('globex');
    expect(copper.body.apply).toEqual({ headers: { Authorization: `Bearer ${copper.body.accessToken}` }, query: {} });
    expect(copper.body.expiresAt).toBeNull();
    const copernica = await read('initech');
    expect(copernica.body.apply).toEqual({ headers: {}, query: { access_token: copernica.body.accessToken } });
    for (const [provider, body] of [['copyai', copyai.body], ['copper', copper.body], ['copernica', copernica.body]] as const) {
      expect(await isValidAtSandbox(provider, body.apply)).toBe(true);
    }
    expect(copyai.headers.get('cache-control')).toBe('no-store');
  });

  it('refreshes an expired Copy.ai token on the first read; 50 concurrent reads cause exactly one refresh', async () => {
    await connect('acme', 'copyai');
    const before = (await read('acme')).body.accessToken;
    await expire('acme');
    sandbox.resetStats();
    const answers = await Promise.all(Array.from({ length: 50 }, () => read('acme')));
    expect(answers.map((a) => a.status)).toEqual(Array(50).fill(200));
    const tokens = new Set(answers.map((a) => a.body.accessToken));
    expect(tokens.size).toBe(1);
    expect(tokens.has(before)).toBe(false);
    expect(sandbox.stats().tokenRequests.copyai.refresh).toBe(1);
    expect(await isValidAtSandbox('copyai', answers[0].body.apply)).toBe(true);
    // The rotated refresh token was stored with it: a second refresh works (no invalid_grant).
    await expire('acme');
    expect((await read('acme')).status).toBe(200);
    expect(sandbox.stats().invalidGrants).toBe(0);
  });

  it('two broker instances on one database refresh an expiring token exactly once', async () => {
    const second = await startTestBroker({ ...sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false' });
    try {
      await connect('acme', 'copyai');
      for (let round = 0; round < 3; round++) {
        await expire('acme');
        sandbox.resetStats();
        const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => read('acme', '', i % 2 ? second : broker)));
        expect(answers.every((a) => a.status === 200)).toBe(true);
        expect(new Set(answers.map((a) => a.body.accessToken)).size).toBe(1);
        expect(sandbox.stats().tokenRequests.copyai.refresh).toBe(1);
        expect(sandbox.stats().invalidGrants).toBe(0);
        expect(sandbox.stats().duplicateRefreshUses).toBe(0);
      }
    } finally {
      await second.close();
    }
  });

  it('never tries to refresh Copernica tokens or Copper tokens without expires_in', async () => {
    await connect('globex', 'copper');
    await connect('initech', 'copernica');
    sandbox.resetStats();
    for (let i = 0; i < 5; i++) {
      expect((await read('globex', '?minValidity=1800')).status).toBe(200);
      expect((await read('initech', '?minValidity=1800')).status).toBe(200);
    }
    expect(sandbox.stats().tokenRequests.copper.refresh).toBe(0);
    expect(sandbox.stats().tokenRequests.copernica.refresh).toBe(0);
  });

  it('refreshes when the token would not last minValidity, not otherwise', async () => {
    await connect('acme', 'copyai');
    sandbox.resetStats();
    expect((await read('acme', '?minValidity=60')).status).toBe(200);
    expect(sandbox.stats().tokenRequests.copyai.refresh).toBe(0);
    await change(`UPDATE connections SET expires_at = now() + interval '5 minutes', version = version + 1`);
    expect((await read('acme', '?minValidity=600')).status).toBe(200);
    expect(sandbox.stats().tokenRequests.copyai.refresh).toBe(1);
  });

  it('keeps serving a still-valid token while the provider is down, and says 503 once it has expired', async () => {
    await connect('acme', 'copyai');
    await change(`UPDATE connections SET expires_at = now() + interval '30 seconds', version = version + 1`);
    sandbox.failUntilCleared('copyai', { kind: 'status', status: 503, retryAfterSec: 7 });
    const valid = await read('acme');
    expect(valid.status).toBe(200);
    const [row] = await db.query(`SELECT last_error_code, refresh_failures, next_refresh_at FROM connections`);
    expect(row).toMatchObject({ last_error_code: 'provider_unavailable', refresh_failures: 1 });
    expect(new Date(row.next_refresh_at).getTime()).toBeGreaterThan(Date.now() + 5_000);
    const attempts = sandbox.stats().tokenRequests.copyai.refresh;
    // Backing off: more reads do not call the provider again.
    for (let i = 0; i < 5; i++) expect((await read('acme')).status).toBe(200);
    expect(sandbox.stats().tokenRequests.copyai.refresh).toBe(attempts);

    await expire('acme');
    const expired = await read('acme');
    expect(expired.status).toBe(503);
    expect(expired.body).toMatchObject({ statusCode: 503, error: 'provider_unavailable' });
    expect(Number(expired.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(JSON.stringify(expired.body)).not.toMatch(/cai_(at|rt)_/);

    sandbox.clearFailures('copyai');
    await change(`UPDATE connections SET next_refresh_at = now(), version = version + 1`);
    expect((await read('acme')).status).toBe(200);
  });

  it('invalid_grant makes the connection needs_reauth (409) and it is not retried', async () => {
    await connect('acme', 'copyai');
    await expire('acme');
    sandbox.failNext('copyai', { kind: 'status', status: 400, error: 'invalid_grant' });
    const first = await read('acme');
    expect(first.status).toBe(409);
    expect(first.body).toMatchObject({ error: 'needs_reauth' });
    expect(first.body.message).toContain('connect session');
    const calls = sandbox.stats().tokenRequests.copyai.refresh;
    expect((await read('acme')).status).toBe(409);
    expect(sandbox.stats().tokenRequests.copyai.refresh).toBe(calls);
    const [row] = await db.query(`SELECT status, last_error_code FROM connections`);
    expect(row).toEqual({ status: 'needs_reauth', last_error_code: 'invalid_grant' });
  });

  it('invalid_client is a configuration error: the connection stays active', async () => {
    await connect('acme', 'copyai');
    await expire('acme');
    sandbox.failNext('copyai', { kind: 'status', status: 401, error: 'invalid_client' });
    const answer = await read('acme');
    expect(answer.status).toBe(502);
    expect(answer.body.error).toBe('provider_misconfigured');
    const [row] = await db.query(`SELECT status, last_error_code FROM connections`);
    expect(row).toEqual({ status: 'active', last_error_code: 'invalid_client' });
  });

  it('answers bad requests clearly', async () => {
    await connect('acme', 'copyai');
    await connect('acme', 'copper');
    const cases: Array<[string, number, string]> = [
      ['/tokens/bad%20account!', 400, 'invalid_account'],
      [`/tokens/${'a'.repeat(129)}`, 400, 'invalid_account'],
      [`/tokens/${'a'.repeat(1500)}`, 414, 'uri_too_long'],
      [`/tokens/${'a'.repeat(128)}`, 404, 'connection_not_found'],
      ['/tokens/acme', 400, 'provider_ambiguous'],
      ['/tokens/acme?provider=dropbox', 400, 'provider_unknown'],
      ['/tokens/acme?provider=copernica', 404, 'connection_not_found'],
      ['/tokens/nobody', 404, 'connection_not_found'],
      ['/tokens/', 400, 'invalid_account'],
      ['/tokens/acme?provider=copyai&scope=all', 400, 'validation_failed'],
      ['/tokens/acme?provider=copyai&provider=copper', 400, 'validation_failed'],
      ['/tokens/acme?provider=copyai&minValidity=-5', 400, 'validation_failed'],
      ['/tokens/acme?provider=copyai&minValidity=99999999', 400, 'validation_failed'],
      ['/tokens/acme?provider=copyai&minValidity=abc', 400, 'validation_failed'],
    ];
    for (const [path, status, error] of cases) {
      const response = await broker.call(path, { as: 'service' });
      // Fastify refuses a 414 before the route runs; every answer of the route itself is not for caches.
      const cacheControl = status === 414 ? null : 'no-store';
      expect({ path, status: response.status, error: ((await response.json()) as TokenBody).error, cacheControl: response.headers.get('cache-control') }).toEqual({
        path,
        status,
        error,
        cacheControl,
      });
    }
    const ambiguous = (await (await broker.call('/tokens/acme', { as: 'service' })).json()) as { providers: string[] };
    expect(ambiguous.providers).toEqual(['copper', 'copyai']);
    expect((await broker.call('/tokens/acme?provider=copyai')).status).toBe(401);
    expect((await broker.call('/tokens/acme?provider=copyai', { headers: { authorization: 'Bearer nope' } })).status).toBe(401);
    expect((await broker.call('/tokens/acme?provider=copyai', { as: 'admin' })).status).toBe(403);
  });

  it('exposes refresh outcomes, reads and connection counts on /metrics, without accounts or tokens', async () => {
    const scrape = async () => {
      const response = await broker.call('/metrics');
      expect(response.status).toBe(200);
      return response.text();
    };
    const readsCounted = (text: string, outcome: string): number =>
      Number(new RegExp(`^token_broker_token_reads_total\\{provider="copyai",outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    const before = await scrape();
    await connect('acme', 'copyai');
    const token = (await read('acme')).body.accessToken;
    await expire('acme');
    expect((await read('acme')).status).toBe(200);
    const text = await scrape();
    expect(text).toMatch(/token_broker_refresh_total\{provider="copyai",trigger="read",outcome="refreshed"\} [1-9]/);
    expect(text).toMatch(/token_broker_connections\{provider="copyai",status="active"\} 1/);
    expect(readsCounted(text, 'served') - readsCounted(before, 'served')).toBe(2);
    expect(text).not.toContain('acme');
    expect(text).not.toContain(token);

    // Reads are counted between scrapes and added on the next one: none lost, none counted twice.
    await change(`UPDATE connections SET status = 'revoked', access_token_sealed = NULL, refresh_token_sealed = NULL, version = version + 1`);
    expect((await read('acme')).status).toBe(409);
    expect((await read('acme')).status).toBe(409);
    const after = await scrape();
    expect(readsCounted(after, 'served')).toBe(readsCounted(text, 'served'));
    expect(readsCounted(after, 'revoked') - readsCounted(text, 'revoked')).toBe(2);
  });

  it('a token that cannot be opened answers 500 token_unreadable and the broker keeps serving the others', async () => {
    await connect('acme', 'copyai');
    await connect('globex', 'copyai');
    const sealed = await db.query<Array<{ access_token_sealed: string }>>(`SELECT access_token_sealed FROM connections WHERE account = 'acme'`);
    // Flip one character of the sealed value: authenticated encryption must refuse it.
    const value = sealed[0].access_token_sealed;
    const at = value.length - 5;
    const altered = value.slice(0, at) + (value[at] === 'A' ? 'B' : 'A') + value.slice(at + 1);
    await change(`UPDATE connections SET access_token_sealed = $1, version = version + 1 WHERE account = 'acme'`, [altered]);
    const broken = await broker.call('/tokens/acme', { as: 'service' });
    expect(broken.status).toBe(500);
    const body = (await broken.json()) as { error: string; message: string; connectionId: string };
    expect(body.error).toBe('token_unreadable');
    expect(body.message).toMatch(/reconnect the account/);
    expect(body.message).not.toContain(value);
    expect((await read('globex')).status).toBe(200);
  });

  it('a revoked connection answers 409 revoked', async () => {
    await connect('acme', 'copyai');
    expect((await read('acme')).status).toBe(200);
    await change(`UPDATE connections SET status = 'revoked', access_token_sealed = NULL, refresh_token_sealed = NULL, version = version + 1`);
    const answer = await read('acme');
    expect(answer.status).toBe(409);
    expect(answer.body.error).toBe('revoked');
  });

  it('records when a connection was last read, at most once per USAGE_RESOLUTION_MS, never per read', async () => {
    const clock = new ManualClock(Date.now());
    const reader = await startTestBroker({ ...sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false' }, { clock });
    try {
      await connect('acme', 'copyai');
      const lastUsed = async (): Promise<number | null> => {
        await reader.app.get(UsageRecorder).flush();
        const [row] = await db.query(`SELECT last_used_at FROM connections WHERE account = 'acme'`);
        return row.last_used_at ? new Date(row.last_used_at).getTime() : null;
      };
      expect(await lastUsed()).toBeNull();

      expect((await read('acme', '', reader)).status).toBe(200);
      const first = clock.nowMs();
      expect(await lastUsed()).toBe(first);

      clock.advance(USAGE_RESOLUTION_MS / 2);
      for (let i = 0; i < 5; i++) expect((await read('acme', '', reader)).status).toBe(200);
      expect(await lastUsed()).toBe(first);

      clock.advance(USAGE_RESOLUTION_MS / 2);
      expect((await read('acme', '', reader)).status).toBe(200);
      expect(await lastUsed()).toBe(clock.nowMs());
    } finally {
      await reader.close();
    }
  });

  it('with TOKEN_CACHE_MAX_ACCOUNTS=0 reads go to the database and see every change at once', async () => {
    const uncached = await startTestBroker({ ...sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false', TOKEN_CACHE_MAX_ACCOUNTS: '0' });
    try {
      await connect('acme', 'copyai');
      expect((await read('acme', '', uncached)).status).toBe(200);
      // No wait for a NOTIFY: there is no cache to invalidate.
      await db.query(`UPDATE connections SET status = 'needs_reauth', version = version + 1 WHERE account = 'acme'`);
      const answer = await read('acme', '', uncached);
      expect(answer.status).toBe(409);
      expect(answer.body.error).toBe('needs_reauth');
    } finally {
      await uncached.close();
    }
  });
});
