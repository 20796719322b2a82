/**
 * Copernica REST v4: GET /tokens/:account?provider=copernica&api=v4 answers a JWT the broker
 * mints from the stored token (OAuth) or key (api_key) at the sandbox's authentication service,
 * keeps sealed, serves from its cache and mints again ahead of expiry: never one mint per read,
 * one at a time across replicas, not again after a restart. Time is a ManualClock shared by the
 * brokers and the sandbox: expiry and the sweep's plan are reached by moving it.
 */
import { ManualClock } from '@app/common';
import { RefreshSweeper } from '@app/refresh';
import { DataSource } from 'typeorm';
import { ProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { useBrokerSuite } from '../support/broker-suite';
import { connectAccount } from '../support/connect-dance';
import { captureLogs, startTestBroker, TestBroker } from '../support/test-broker';

interface TokenAnswer {
  status: number;
  text: string;
  body: {
    accessToken: string;
    tokenType: string;
    expiresAt: string | null;
    authMode: string;
    apply: { headers: Record<string, string>; query: Record<string, string> };
    error?: string;
    message?: string;
  };
}

const DAY_MS = 86_400_000;

/** The `exp` a JWT carries, as an instant. */
function jwtExp(jwt: string): number {
  return (JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8')) as { exp: number }).exp * 1000;
}

describe('Copernica REST v4 JWTs (GET /tokens?api=v4)', () => {
  const logs = captureLogs('debug');
  const clock = new ManualClock(Date.now());
  const suite = useBrokerSuite({ clock, logger: logs.logger });
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let db: DataSource;
  const jwtsSeen = new Set<string>();
  beforeAll(() => ({ sandbox, broker, db } = suite));
  beforeEach(() => logs.claimProcessLogger());

  const read = async (account: string, query = 'provider=copernica&api=v4', on: TestBroker = broker): Promise<TokenAnswer> => {
    const response = await on.call(`/tokens/${account}?${query}`, { as: 'service' });
    const text = await response.text();
    const answer = { status: response.status, text, body: JSON.parse(text) as TokenAnswer['body'] };
    if (answer.status === 200 && query.includes('api=v4')) jwtsSeen.add(answer.body.accessToken);
    return answer;
  };
  const mints = (): number => sandbox.stats().derivedTokenMints.copernica;
  const acceptedByV4 = async (jwt: string): Promise<boolean> =>
    (await fetch(`${sandbox.url}/copernica/v4/_sandbox/check`, { headers: { authorization: `Bearer ${jwt}` } })).status === 200;
  const stored = async (account: string) =>
    (
      await db.query(`SELECT derived_token_sealed, derived_expires_at, derived_refresh_at, status, last_error_code FROM connections WHERE account = $1`, [account])
    )[0] as { derived_token_sealed: string | null; derived_expires_at: Date | null; derived_refresh_at: Date | null; status: string; last_error_code: string | null };
  const storeApiKey = async (account: string): Promise<string> => {
    const { apiKey } = sandbox.registerApiKey('copernica');
    const response = await broker.call(`/admin/connections/${account}/credentials?provider=copernica`, {
      as: 'admin',
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apiKey }),
    });
    expect(response.status).toBe(200);
    return apiKey;
  };

  it('answers a JWT minted from the OAuth token: Bearer, expiresAt from its exp, valid at v4; served from the cache afterwards', async () => {
    await connectAccount(broker, 'acme', 'copernica');
    const v2 = await read('acme', 'provider=copernica');
    expect(v2.body.apply).toEqual({ headers: {}, query: { access_token: v2.body.accessToken } });

    const first = await read('acme');
    expect(first.status).toBe(200);
    const jwt = first.body.accessToken;
    expect(jwt).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(first.body).toMatchObject({ tokenType: 'Bearer', authMode: 'oauth2', expiresAt: new Date(jwtExp(jwt)).toISOString() });
    expect(first.body.apply).toEqual({ headers: { Authorization: `Bearer ${jwt}` }, query: {} });
    expect(jwtExp(jwt)).toBe(Math.floor(clock.nowMs() / 1000) * 1000 + DAY_MS);
    expect(await acceptedByV4(jwt)).toBe(true);
    expect(mints()).toBe(1);

    for (let i = 0; i < 20; i++) expect((await read('acme')).body.accessToken).toBe(jwt);
    // The provider may be left out when the account has one connection.
    expect((await read('acme', 'api=v4')).body.accessToken).toBe(jwt);
    expect(mints()).toBe(1);
    const row = await stored('acme');
    expect(row.derived_token_sealed).not.toContain(jwt.split('.')[2]);
    expect(row.derived_expires_at?.getTime()).toBe(jwtExp(jwt));
  });

  it('mints from a stored API key too', async () => {
    await storeApiKey('acme');
    const answer = await read('acme');
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ tokenType: 'Bearer', authMode: 'api_key' });
    expect(await acceptedByV4(answer.body.accessToken)).toBe(true);
    expect(mints()).toBe(1);
  });

  it('takes the JWT whether the service answers it as text, a JSON string or a JSON object; 24 h when it has no exp', async () => {
    await storeApiKey('acme');
    sandbox.configure('copernica', { derivedTokenAnswer: 'json-object', derivedTokenLifetimeSec: null });
    const noExp = await read('acme');
    expect(noExp.status).toBe(200);
    expect(new Date(noExp.body.expiresAt!).getTime()).toBe(clock.nowMs() + DAY_MS);
    sandbox.configure('copernica', { derivedTokenAnswer: 'json-string', derivedTokenLifetimeSec: 3600 });
    await storeApiKey('globex');
    const asString = await read('globex');
    expect(new Date(asString.body.expiresAt!).getTime()).toBe(jwtExp(asString.body.accessToken));
    expect(await acceptedByV4(asString.body.accessToken)).toBe(true);
  });

  it('refuses api=v4 for another provider (400 api_not_supported) and any other api value (400)', async () => {
    const { apiKey, userEmail } = sandbox.registerApiKey('copper');
    await broker.call('/admin/connections/globex/credentials?provider=copper', {
      as: 'admin',
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apiKey, userEmail }),
    });
    const copper = await read('globex', 'provider=copper&api=v4');
    expect(copper.status).toBe(400);
    expect(copper.body.error).toBe('api_not_supported');
    expect((await read('globex', 'api=v4')).body.error).toBe('api_not_supported');
    const v3 = await read('globex', 'provider=copernica&api=v3');
    expect(v3.status).toBe(400);
    expect(v3.body).toMatchObject({ error: 'validation_failed', message: 'api must be v4' });
    expect(mints()).toBe(0);
  });

  it('50 concurrent reads of a connection without a JWT cause exactly one mint', async () => {
    await connectAccount(broker, 'acme', 'copernica');
    sandbox.configure('copernica', { latencyMs: 100 });
    const answers = await Promise.all(Array.from({ length: 50 }, () => read('acme')));
    expect(answers.map((a) => a.status)).toEqual(Array(50).fill(200));
    expect(new Set(answers.map((a) => a.body.accessToken)).size).toBe(1);
    expect(mints()).toBe(1);
  });

  it('two replicas on one database mint once between them; a restarted broker serves the stored JWT without minting', async () => {
    await storeApiKey('acme');
    sandbox.configure('copernica', { latencyMs: 100 });
    const second = await startTestBroker({ ...sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false' }, { clock });
    try {
      const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => read('acme', undefined, i % 2 ? second : broker)));
      expect(answers.every((a) => a.status === 200)).toBe(true);
      expect(new Set(answers.map((a) => a.body.accessToken)).size).toBe(1);
      expect(mints()).toBe(1);
    } finally {
      await second.close();
    }
    const restarted = await startTestBroker({ ...sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false' }, { clock });
    try {
      const after = await read('acme', undefined, restarted);
      expect(after.status).toBe(200);
      expect(mints()).toBe(1);
    } finally {
      await restarted.close();
    }
  });

  it('a 2-minute JWT is minted again ahead of its expiry by the sweep, with no read, at the planned fraction of its life', async () => {
    sandbox.configure('copernica', { derivedTokenLifetimeSec: 120 });
    await connectAccount(broker, 'acme', 'copernica');
    const mintedAt = clock.nowMs();
    const first = (await read('acme')).body.accessToken;
    const { derived_refresh_at: plannedAt } = await stored('acme');
    // 80 % of its life give or take 5 %, and never later than a fifth of it before it expires. The
    // JWT's `exp` is in whole seconds, so its life may be up to a second short of 120 s.
    expect(plannedAt!.getTime() - mintedAt).toBeGreaterThanOrEqual(0.75 * 119_000);
    expect(plannedAt!.getTime() - mintedAt).toBeLessThanOrEqual(0.8 * 120_000);

    const sweeper = broker.app.get(RefreshSweeper);
    clock.set(plannedAt!.getTime() - 1_000);
    expect((await sweeper.sweep()).claimed).toBe(0);
    clock.set(plannedAt!.getTime() + 1);
    const report = await sweeper.sweep();
    expect(report.outcomes).toEqual({ refreshed: 1 });
    expect(mints()).toBe(2);
    expect(clock.nowMs()).toBeLessThan(jwtExp(first));

    const next = await read('acme');
    expect(next.body.accessToken).not.toBe(first);
    expect(jwtExp(next.body.accessToken)).toBe(clock.nowMs() - (clock.nowMs() % 1000) + 120_000);
    expect(await acceptedByV4(next.body.accessToken)).toBe(true);
    expect(mints()).toBe(2);
  });

  it('a refusal (401) from the authentication service makes the connection needs_reauth', async () => {
    await connectAccount(broker, 'acme', 'copernica');
    sandbox.failNext('copernica', { kind: 'status', status: 401, error: 'invalid_token' }, 1, 'authenticate');
    const refused = await read('acme');
    expect(refused.status).toBe(409);
    expect(refused.body.error).toBe('needs_reauth');
    expect(await stored('acme')).toMatchObject({ status: 'needs_reauth', last_error_code: 'authentication_refused' });
    expect((await read('acme', 'provider=copernica')).status).toBe(409);
  });

  it('5xx and timeouts are transient: the still-valid JWT keeps being served, an expired one is 503, and it recovers', async () => {
    sandbox.configure('copernica', { derivedTokenLifetimeSec: 1200 });
    await storeApiKey('acme');
    const jwt = (await read('acme')).body.accessToken;
    sandbox.failUntilCleared('copernica', { kind: 'status', status: 503 }, 'authenticate');
    // It does not last the half hour asked for: a mint is tried, fails, and the valid JWT is served.
    const stillValid = await read('acme', 'provider=copernica&api=v4&minValidity=1800');
    expect(stillValid.status).toBe(200);
    expect(stillValid.body.accessToken).toBe(jwt);
    expect(await stored('acme')).toMatchObject({ status: 'active', last_error_code: 'derived_token_unavailable' });

    clock.advance(1_300_000);
    const expired = await read('acme');
    expect(expired.status).toBe(503);
    expect(expired.body.error).toBe('provider_unavailable');
    expect(expired.text).not.toContain(jwt);

    sandbox.clearFailures('copernica');
    clock.advance(16 * 60_000);
    const recovered = await read('acme');
    expect(recovered.status).toBe(200);
    expect(recovered.body.accessToken).not.toBe(jwt);
    expect(await stored('acme')).toMatchObject({ status: 'active', last_error_code: null });
  });

  it('keeps every JWT out of the database in plaintext and out of every log line', async () => {
    await connectAccount(broker, 'acme', 'copernica');
    await storeApiKey('globex');
    expect((await read('acme')).status).toBe(200);
    expect((await read('globex')).status).toBe(200);
    const tables: Array<{ tablename: string }> = await db.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`);
    let dump = '';
    for (const { tablename } of tables) {
      const rows: Array<{ row: string }> = await db.query(`SELECT t::text AS row FROM "${tablename}" t`);
      dump += rows.map((r) => r.row).join('\n');
    }
    expect(dump).toContain('globex');
    const logText = logs.lines.join('\n');
    expect(jwtsSeen.size).toBeGreaterThan(5);
    for (const jwt of jwtsSeen) {
      // The signature part alone is unique to each JWT; its header is the same for all.
      const signature = jwt.split('.')[2];
      expect(dump).not.toContain(signature);
      expect(logText).not.toContain(signature);
    }
  });
});
