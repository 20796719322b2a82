/**
 * Least privilege (DESIGN, "Access control: service grants"): a service key reads tokens and
 * opens connect sessions only inside its SERVICE_GRANTS. The grant is checked before any lookup,
 * so a refusal is `403 not_granted` with the same body whether the account exists or not (and
 * even while the database is unreachable); with no provider named, only the granted providers of
 * the account are considered. Production refuses to start without grants; a development start
 * without them warns.
 */
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { spawnBrokerProcess, startBrokerProcess } from '../support/broker-process';
import { connectAccount } from '../support/connect-dance';
import { TcpProxy } from '../support/tcp-proxy';
import { startProxiedTestBroker, TEST_SERVICE_KEY, TestBroker } from '../support/test-broker';
import { openTestDataSource, truncateAll } from '../support/test-database';

jest.setTimeout(180_000);

const BILLING_KEY = `bil-${randomBytes(18).toString('base64url')}`;
const CRM_KEY = `crm-${randomBytes(18).toString('base64url')}`;
const KEYS = { billing: BILLING_KEY, crm: CRM_KEY, tests: TEST_SERVICE_KEY } as const;
const GRANTS = 'tests=*/*,billing=copyai/acme-*,billing=copper/globex,crm=copper/*';

interface Answer {
  status: number;
  text: string;
  body: Record<string, unknown>;
}

describe('service grants', () => {
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let proxy: TcpProxy;
  let db: DataSource;

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    ({ broker, proxy } = await startProxiedTestBroker({
      ...sandbox.env(),
      REFRESH_SCHEDULER_ENABLED: 'false',
      SERVICE_API_KEYS: `tests:${TEST_SERVICE_KEY},billing:${BILLING_KEY},crm:${CRM_KEY}`,
      SERVICE_GRANTS: GRANTS,
    }));
    db = await openTestDataSource();
  });
  afterAll(async () => {
    proxy?.restore();
    await broker?.close();
    await proxy?.close();
    await sandbox?.close();
    await db?.destroy();
  });
  beforeEach(async () => {
    proxy.restore();
    await truncateAll(db);
    sandbox.reset();
  });

  const as = async (service: keyof typeof KEYS, path: string, init: RequestInit = {}): Promise<Answer> => {
    const response = await broker.call(path, { ...init, headers: { ...init.headers, authorization: `Bearer ${KEYS[service]}` } });
    const text = await response.text();
    return { status: response.status, text, body: JSON.parse(text) as Record<string, unknown> };
  };
  const read = (service: keyof typeof KEYS, account: string, provider?: string): Promise<Answer> =>
    as(service, `/tokens/${account}${provider ? `?provider=${provider}` : ''}`);
  const openSession = (service: keyof typeof KEYS, account: string, provider: string): Promise<Answer> =>
    as(service, '/connect-sessions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ account, provider }) });
  const expectNotGranted = (answer: Answer): void => {
    expect(answer.status).toBe(403);
    expect(answer.body).toEqual({ statusCode: 403, error: 'not_granted', message: expect.stringContaining('SERVICE_GRANTS') as string });
  };

  it('serves a token inside the grants, provider named or not', async () => {
    await connectAccount(broker, 'acme-1', 'copyai');
    const named = await read('billing', 'acme-1', 'copyai');
    expect(named.status).toBe(200);
    expect(named.body).toMatchObject({ account: 'acme-1', provider: 'copyai' });
    expect((await read('billing', 'acme-1')).body).toMatchObject({ account: 'acme-1', provider: 'copyai' });
  });

  it('refuses outside the grants with one body, the same whether the account exists or not', async () => {
    const before = [await read('billing', 'initech', 'copyai'), await read('billing', 'initech'), await read('crm', 'initech', 'copyai')];
    await connectAccount(broker, 'initech', 'copyai');
    const after = [await read('billing', 'initech', 'copyai'), await read('billing', 'initech'), await read('crm', 'initech', 'copyai')];
    for (const answer of [...before, ...after]) expectNotGranted(answer);
    expect(after.map((a) => a.text)).toEqual(before.map((a) => a.text));
    expect(before[0].body.message).toBe('the service key "billing" is not granted copyai for account initech (SERVICE_GRANTS)');
    expect(before[1].body.message).toBe('the service key "billing" is not granted any provider for account initech (SERVICE_GRANTS)');
    // The tests key is granted everything and still reads it.
    expect((await read('tests', 'initech', 'copyai')).status).toBe(200);
  });

  it('checks the grant before any lookup: with the database cut off a refusal is still 403, a granted read of an uncached account 503', async () => {
    proxy.cutAll();
    expectNotGranted(await read('billing', 'nobody', 'copyai'));
    expectNotGranted(await read('billing', 'nobody'));
    expectNotGranted(await read('crm', 'acme-1', 'copyai'));
    expectNotGranted(await openSession('billing', 'globex', 'copyai'));
    const granted = await read('billing', 'acme-77', 'copyai');
    expect(granted.status).toBe(503);
    expect(granted.body.error).toBe('database_unavailable');
  });

  it('with no provider named, considers only the granted providers of the account', async () => {
    await connectAccount(broker, 'globex', 'copper');
    await connectAccount(broker, 'globex', 'copyai');
    // billing: copper for globex, copyai only for acme-*.
    expect((await read('billing', 'globex')).body).toMatchObject({ account: 'globex', provider: 'copper' });
    expect((await read('crm', 'globex')).body).toMatchObject({ account: 'globex', provider: 'copper' });
    // Both granted: the caller must say which.
    const ambiguous = await read('tests', 'globex');
    expect(ambiguous.status).toBe(400);
    expect(ambiguous.body).toMatchObject({ error: 'provider_ambiguous', providers: ['copper', 'copyai'] });

    // An account whose only connection is at a provider not granted: not found among the granted ones, and not named.
    await connectAccount(broker, 'acme-5', 'copper');
    const hidden = await read('billing', 'acme-5');
    expect(hidden.status).toBe(404);
    expect(hidden.body).toMatchObject({ error: 'connection_not_found', message: 'account acme-5 has no connection' });
  });

  it('opens connect sessions only inside the grants, with the same refusal whether the account exists or not', async () => {
    const created = await openSession('billing', 'acme-9', 'copyai');
    expect(created.status).toBe(201);
    expect(created.body.connectUrl).toEqual(expect.stringContaining('/connect/copyai?session='));

    const before = [await openSession('billing', 'globex', 'copyai'), await openSession('crm', 'globex', 'copernica')];
    await connectAccount(broker, 'globex', 'copyai');
    const after = [await openSession('billing', 'globex', 'copyai'), await openSession('crm', 'globex', 'copernica')];
    for (const answer of [...before, ...after]) expectNotGranted(answer);
    expect(after.map((a) => a.text)).toEqual(before.map((a) => a.text));
    // An unknown provider is still the 400 it always was, granted or not.
    expect((await openSession('billing', 'acme-1', 'salesforce')).body).toMatchObject({ error: 'provider_unknown' });
    const rows: Array<{ account: string; created_by: string }> = await db.query('SELECT account, created_by FROM connect_sessions ORDER BY created_at');
    expect(rows.filter((r) => r.created_by !== 'tests')).toEqual([{ account: 'acme-9', created_by: 'billing' }]);
  });
});

describe('SERVICE_GRANTS at start-up', () => {
  const production = {
    NODE_ENV: 'production',
    PUBLIC_URL: 'http://localhost:3000',
    CONNECT_RETURN_ORIGINS: 'http://localhost:*',
  };

  it('is required in production: the broker refuses to start and says why', async () => {
    const child = await spawnBrokerProcess(production);
    await child.exit;
    expect(child.exitCode()).toBe(78);
    expect(child.output()).toContain('SERVICE_GRANTS: required in production');
  });

  it('starts in production with *=*/* (allow-all said explicitly)', async () => {
    const child = await startBrokerProcess({ ...production, SERVICE_GRANTS: '*=*/*' });
    try {
      expect(child.output()).not.toContain('SERVICE_GRANTS');
    } finally {
      await child.stop();
    }
  });

  it('outside production, unset, lets every service key do everything and warns at start', async () => {
    const child = await startBrokerProcess({ NODE_ENV: 'development' });
    try {
      expect(child.output()).toContain('SERVICE_GRANTS is unset: every service key may read every token');
      const response = await fetch(`${child.url}/tokens/anyone`, { headers: { authorization: `Bearer ${TEST_SERVICE_KEY}` } });
      expect(response.status).toBe(404);
    } finally {
      await child.stop();
    }
  });
});
