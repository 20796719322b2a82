/**
 * The audit trail as an operator reads it (DESIGN, "Audit trail"): after a scripted scenario
 * (reads by two services, a read outside the grants, a connect, an admin refresh that fails at the
 * provider, an admin revoke, a request with a wrong key) GET /admin/audit shows exactly those
 * records, with the right actors, outcomes and read counts, newest first, filtered and paged; at
 * LOG_LEVEL=silent as at warn (the records live in Postgres, not in the log). Reads made just
 * before a SIGTERM are in the table after the restart. No record holds a secret.
 */
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { startBrokerProcess } from '../support/broker-process';
import { dance } from '../support/connect-dance';
import { StoredTokens } from '../support/stored-tokens';
import { captureLogs, startTestBroker, TEST_ADMIN_KEY, TEST_ENCRYPTION_KEYS, TEST_SERVICE_KEY, TestBroker } from '../support/test-broker';
import { openTestDataSource, truncateAll } from '../support/test-database';

jest.setTimeout(180_000);

const BILLING_KEY = `bil-${randomBytes(18).toString('base64url')}`;
const CRM_KEY = `crm-${randomBytes(18).toString('base64url')}`;
const WRONG_KEY = `wrong-${randomBytes(18).toString('base64url')}`;
const ACCESS_ENV = {
  SERVICE_API_KEYS: `tests:${TEST_SERVICE_KEY},billing:${BILLING_KEY},crm:${CRM_KEY}`,
  SERVICE_GRANTS: 'tests=*/*,billing=copyai/acme-*,crm=copyai/*',
};

interface AuditItem {
  at: string;
  actor: string;
  actorKind: string;
  action: string;
  account: string | null;
  provider: string | null;
  outcome: string;
  count: number;
  requestId: string | null;
  detail: Record<string, unknown> | null;
}

interface AuditPage {
  items: AuditItem[];
  nextCursor: string | null;
}

/** GET /admin/audit with an admin key. */
async function auditPage(broker: TestBroker, query = ''): Promise<{ status: number; body: AuditPage & Record<string, unknown> }> {
  const response = await broker.call(`/admin/audit${query}`, { as: 'admin' });
  return { status: response.status, body: (await response.json()) as AuditPage & Record<string, unknown> };
}

/** Every record matching `query`, following the cursor. */
async function allRecords(broker: TestBroker, query: string, limit = 200): Promise<AuditItem[]> {
  const items: AuditItem[] = [];
  let cursor: string | null = null;
  do {
    const { status, body } = await auditPage(broker, `?limit=${limit}${query ? `&${query}` : ''}${cursor ? `&cursor=${cursor}` : ''}`);
    expect(status).toBe(200);
    items.push(...body.items);
    cursor = body.nextCursor;
  } while (cursor);
  return items;
}

/** Token-read rows summed per service, account, provider and outcome (a run may straddle a minute). */
function readCounts(items: AuditItem[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items.filter((i) => i.action === 'token.read')) {
    const key = `${item.actor} ${item.account} ${item.provider ?? '-'} ${item.outcome}`;
    counts[key] = (counts[key] ?? 0) + item.count;
  }
  return counts;
}

/** Polls until `accept` holds for the records matching `query` (they are written within a few seconds), returning them. */
async function eventually(broker: TestBroker, query: string, accept: (items: AuditItem[]) => boolean): Promise<AuditItem[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const items = await allRecords(broker, query);
    if (accept(items)) return items;
    if (Date.now() > deadline) return items;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe.each(['warn', 'silent'])('the audit trail at LOG_LEVEL=%s', (level) => {
  const logs = captureLogs(level);
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let db: DataSource;

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    broker = await startTestBroker({ ...sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false', LOG_LEVEL: level, ...ACCESS_ENV }, { logger: logs.logger });
    db = await openTestDataSource();
    await truncateAll(db);
  });
  afterAll(async () => {
    await broker?.close();
    await sandbox?.close();
    await db?.destroy();
  });

  const as = (key: string, path: string, init: RequestInit = {}): Promise<Response> =>
    broker.call(path, { ...init, headers: { ...init.headers, authorization: `Bearer ${key}` } });

  it('shows exactly what the scripted scenario did, with actors, outcomes and counts, and nothing secret', async () => {
    logs.claimProcessLogger();
    const secrets = [TEST_SERVICE_KEY, BILLING_KEY, CRM_KEY, WRONG_KEY, TEST_ADMIN_KEY, TEST_ENCRYPTION_KEYS.split(':')[1]];
    secrets.push(...Object.entries(sandbox.env()).filter(([name]) => name.endsWith('_CLIENT_SECRET')).map(([, value]) => value));

    // A connect: the product's service opens the session, the end user goes through the provider.
    const session = await as(BILLING_KEY, '/connect-sessions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ account: 'acme-1', provider: 'copyai' }) });
    expect(session.status).toBe(201);
    const { connectUrl } = (await session.json()) as { connectUrl: string };
    secrets.push(new URL(connectUrl).searchParams.get('session')!);
    const connected = await dance(broker, connectUrl);
    expect(connected.finalBody).toContain('Connected to');
    const stored = await StoredTokens.of(broker.app).find('acme-1', 'copyai');
    secrets.push(stored!.accessToken, stored!.refreshToken!);

    // Reads by two services, and one outside the grants.
    for (let i = 0; i < 3; i++) expect((await as(BILLING_KEY, '/tokens/acme-1')).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await as(CRM_KEY, '/tokens/acme-1?provider=copyai')).status).toBe(200);
    expect((await as(BILLING_KEY, '/tokens/globex?provider=copyai')).status).toBe(403);

    // An admin refresh that fails at the provider, then an admin revoke.
    sandbox.failNext('copyai', { kind: 'status', status: 503 });
    expect((await broker.call('/admin/connections/acme-1/refresh', { as: 'admin', method: 'POST' })).status).toBe(503);
    expect((await broker.call('/admin/connections/acme-1/revoke', { as: 'admin', method: 'POST' })).status).toBe(200);

    // A request with a wrong key.
    expect((await as(WRONG_KEY, '/tokens/acme-1')).status).toBe(401);

    // What the scenario did; this test's own reading of the trail (audit.list, itself audited) aside.
    const scenario = (items: AuditItem[]) => items.filter((i) => i.action !== 'audit.list');
    const complete = (items: AuditItem[]) =>
      scenario(items).filter((i) => i.action !== 'token.read').length >= 5 &&
      sameCounts(readCounts(items), { 'billing acme-1 copyai served': 3, 'crm acme-1 copyai served': 2, 'billing globex copyai not_granted': 1 });
    const all = await eventually(broker, '', complete);
    expect(all.filter((i) => i.action === 'audit.list').every((i) => i.actor === 'ops' && i.outcome === 'ok')).toBe(true);
    const items = scenario(all);

    // Newest first (the events below are listed that way; a read's time is the start of its minute).
    const times = items.map((i) => Date.parse(i.at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(readCounts(items)).toEqual({ 'billing acme-1 copyai served': 3, 'crm acme-1 copyai served': 2, 'billing globex copyai not_granted': 1 });
    const events = items
      .filter((i) => i.action !== 'token.read')
      .map(({ action, actor, actorKind, account, provider, outcome, count }) => ({ action, actor, actorKind, account, provider, outcome, count }));
    expect(events).toEqual(
      [
        { action: 'auth.denied', actor: 'anonymous', actorKind: 'anonymous', account: null, provider: null, outcome: 'unauthenticated', count: 1 },
        { action: 'connection.revoke', actor: 'ops', actorKind: 'admin', account: 'acme-1', provider: 'copyai', outcome: 'revoked', count: 1 },
        { action: 'connection.refresh', actor: 'ops', actorKind: 'admin', account: 'acme-1', provider: 'copyai', outcome: 'provider_unavailable', count: 1 },
        { action: 'connect.callback', actor: 'end_user', actorKind: 'end_user', account: 'acme-1', provider: 'copyai', outcome: 'connected', count: 1 },
        { action: 'connect_session.create', actor: 'billing', actorKind: 'service', account: 'acme-1', provider: 'copyai', outcome: 'created', count: 1 },
      ],
    );
    expect(items.find((i) => i.action === 'auth.denied')?.detail).toEqual({ method: 'GET', path: '/tokens/acme-1' });
    expect(items.find((i) => i.action === 'connection.revoke')?.requestId).toEqual(expect.any(String));

    const everything = JSON.stringify(items);
    for (const secret of secrets) expect(everything).not.toContain(secret);
    // The log shows the same events only when it is not silenced; the table has them either way.
    const auditLines = logs.entries().filter((line) => line.context === 'Audit');
    if (level === 'silent') expect(auditLines).toEqual([]);
    else expect(auditLines.map((line) => line.action)).toEqual(expect.arrayContaining(['connection.revoke', 'connect.callback', 'auth.denied']));
  });

  it('filters by actor, account, provider, action and time, and pages with a cursor', async () => {
    const billing = await allRecords(broker, 'actor=billing');
    expect(billing.map((i) => `${i.action} ${i.outcome}`).sort()).toEqual(['connect_session.create created', 'token.read not_granted', 'token.read served']);
    expect((await allRecords(broker, 'account=globex')).map((i) => [i.actor, i.outcome])).toEqual([['billing', 'not_granted']]);
    expect((await allRecords(broker, 'action=connection.revoke&provider=copyai')).map((i) => i.actor)).toEqual(['ops']);
    expect(await allRecords(broker, `since=${new Date(Date.now() + 3600_000).toISOString()}`)).toEqual([]);
    expect((await allRecords(broker, 'action=auth.denied&until=2020-01-01T00:00:00Z')).length).toBe(0);

    // One record a page: every record once, newest first, the same as one big page.
    const whole = await allRecords(broker, 'action=token.read');
    const paged = await allRecords(broker, 'action=token.read', 1);
    expect(paged).toEqual(whole);
    expect(paged.length).toBeGreaterThanOrEqual(3);

    const bad = await auditPage(broker, '?actor=not%20a%20name&action=nonsense&since=yesterday');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('validation_failed');
    // Reading the trail is audited too, refusals included.
    const reads = await eventually(broker, 'action=audit.list', (items) => items.some((i) => i.outcome === 'validation_failed'));
    expect(reads.some((i) => i.actor === 'ops' && i.outcome === 'ok')).toBe(true);
    expect(reads.some((i) => i.actor === 'ops' && i.outcome === 'validation_failed')).toBe(true);
  });

  it('is for admins only: a service key is refused, and that refusal is audited', async () => {
    const response = await broker.call('/admin/audit', { as: 'service' });
    expect(response.status).toBe(403);
    const denied = await eventually(broker, 'action=auth.denied&actor=tests', (items) => items.length > 0);
    expect(denied.map(({ actorKind, outcome, detail }) => ({ actorKind, outcome, detail }))).toEqual([
      { actorKind: 'service', outcome: 'forbidden', detail: { method: 'GET', path: '/admin/audit' } },
    ]);
  });
});

describe('reads just before a SIGTERM', () => {
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let db: DataSource;

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    broker = await startTestBroker({ ...sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false', ...ACCESS_ENV });
    db = await openTestDataSource();
    await truncateAll(db);
  });
  afterAll(async () => {
    await broker?.close();
    await sandbox?.close();
    await db?.destroy();
  });

  it('are in the audit table after the replica stopped and another started', async () => {
    const session = await broker.call('/connect-sessions', {
      as: 'service',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ account: 'acme-2', provider: 'copyai' }),
    });
    expect((await dance(broker, ((await session.json()) as { connectUrl: string }).connectUrl)).finalBody).toContain('Connected to');

    const replica = await startBrokerProcess({ ...sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false', SHUTDOWN_DRAIN_MS: '100', ...ACCESS_ENV });
    try {
      const reads = await Promise.all(
        Array.from({ length: 7 }, () => fetch(`${replica.url}/tokens/acme-2`, { headers: { authorization: `Bearer ${BILLING_KEY}` } }).then((r) => r.status)),
      );
      expect(reads).toEqual(Array(7).fill(200));
      replica.signal('SIGTERM');
      await replica.exit;
      expect(replica.exitCode()).toBe(0);
    } finally {
      await replica.kill();
    }

    // Nothing waits in memory any more: the stopped replica wrote them on its way out.
    const rows: Array<{ count: number }> = await db.query(`SELECT count FROM audit_events WHERE action = 'token.read' AND actor = 'billing' AND account = 'acme-2'`);
    expect(rows.reduce((sum, row) => sum + row.count, 0)).toBe(7);
    const listed = await allRecords(broker, 'action=token.read&account=acme-2');
    expect(readCounts(listed)).toEqual({ 'billing acme-2 copyai served': 7 });
  });
});

function sameCounts(a: Record<string, number>, b: Record<string, number>): boolean {
  const canonical = (counts: Record<string, number>) => JSON.stringify(Object.entries(counts).sort(([x], [y]) => x.localeCompare(y)));
  return canonical(a) === canonical(b);
}
