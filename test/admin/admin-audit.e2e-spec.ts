/**
 * Every admin request leaves an audit line, whatever LOG_LEVEL says and whether it succeeded or
 * not: who (the admin key's name, never its secret), what, on which connection, and the outcome.
 */
import { connectAccount } from '../support/connect-dance';
import { useBrokerSuite } from '../support/broker-suite';
import { captureLogs, TEST_ADMIN_KEY, TestBroker } from '../support/test-broker';

interface AuditLine {
  level: number;
  context: string;
  msg: string;
  action: string;
  actor: string;
  actorKind: string;
  account?: string | null;
  provider?: string | null;
  outcome: string;
  requestId?: string;
  detail?: Record<string, unknown>;
}

describe('admin audit lines at LOG_LEVEL=warn', () => {
  const logs = captureLogs('warn');
  const suite = useBrokerSuite({ logger: logs.logger, env: { LOG_LEVEL: 'warn' } });
  let broker: TestBroker;
  beforeAll(() => ({ broker } = suite));

  /** Runs an admin call and returns its status and the audit lines written meanwhile. */
  const audited = async (path: string, method: 'GET' | 'POST' = 'GET'): Promise<{ status: number; requestId: string | null; audit: AuditLine[] }> => {
    logs.claimProcessLogger();
    const start = logs.lines.length;
    const response = await broker.call(path, { as: 'admin', method });
    await response.text();
    const written = logs.lines.slice(start);
    for (const line of written) expect(line).not.toContain(TEST_ADMIN_KEY);
    const audit = written.map((line) => JSON.parse(line) as AuditLine).filter((entry) => entry.context === 'Audit');
    return { status: response.status, requestId: response.headers.get('x-request-id'), audit };
  };

  it('a failing refresh is audited with its error code', async () => {
    await connectAccount(broker, 'acme', 'copyai');
    suite.sandbox.failNext('copyai', { kind: 'status', status: 503 });

    const { status, requestId, audit } = await audited('/admin/connections/acme/refresh?provider=copyai', 'POST');

    expect(status).toBe(503);
    expect(audit).toEqual([
      expect.objectContaining({
        action: 'connection.refresh',
        actor: 'ops',
        actorKind: 'admin',
        account: 'acme',
        provider: 'copyai',
        outcome: 'provider_unavailable',
        requestId,
      }),
    ]);
    expect(audit[0].msg).toContain('ops');
  });

  it('a refresh refused before it starts (unknown account, bad account id) is audited too', async () => {
    const unknown = await audited('/admin/connections/nobody/refresh', 'POST');
    expect(unknown.status).toBe(404);
    expect(unknown.audit).toEqual([expect.objectContaining({ action: 'connection.refresh', actor: 'ops', account: 'nobody', outcome: 'connection_not_found' })]);

    const invalid = await audited('/admin/connections/not%20valid/refresh', 'POST');
    expect(invalid.status).toBe(400);
    expect(invalid.audit).toEqual([expect.objectContaining({ action: 'connection.refresh', actor: 'ops', outcome: 'invalid_account' })]);
  });

  it('a successful revoke is audited with what happened at the provider and locally', async () => {
    await connectAccount(broker, 'acme', 'copyai');

    const { status, audit } = await audited('/admin/connections/acme/revoke', 'POST');

    expect(status).toBe(200);
    expect(audit).toEqual([
      expect.objectContaining({
        action: 'connection.revoke',
        actor: 'ops',
        actorKind: 'admin',
        account: 'acme',
        provider: 'copyai',
        outcome: 'revoked',
        detail: expect.objectContaining({ erasedLocally: true }) as Record<string, unknown>,
      }),
    ]);
  });

  it('list, get and revoke-all are audited, success or not', async () => {
    await connectAccount(broker, 'globex', 'copper');

    const list = await audited('/admin/connections?provider=copper');
    expect(list.status).toBe(200);
    expect(list.audit).toEqual([expect.objectContaining({ action: 'connections.list', actor: 'ops', provider: 'copper', outcome: 'ok' })]);

    const badList = await audited('/admin/connections?status=nonsense');
    expect(badList.status).toBe(400);
    expect(badList.audit).toEqual([expect.objectContaining({ action: 'connections.list', actor: 'ops', outcome: 'validation_failed' })]);

    const get = await audited('/admin/connections/globex');
    expect(get.status).toBe(200);
    expect(get.audit).toEqual([expect.objectContaining({ action: 'connections.get', actor: 'ops', account: 'globex', provider: 'copper', outcome: 'ok' })]);

    const revokeAll = await audited('/admin/providers/copper/revoke-all', 'POST');
    expect(revokeAll.status).toBe(200);
    expect(revokeAll.audit).toEqual([
      expect.objectContaining({
        action: 'provider.revoke_all',
        actor: 'ops',
        provider: 'copper',
        outcome: 'revoked',
        detail: expect.objectContaining({ processed: 1, erased: 1 }) as Record<string, unknown>,
      }),
    ]);

    const unknownProvider = await audited('/admin/providers/nope/revoke-all', 'POST');
    expect(unknownProvider.status).toBe(404);
    expect(unknownProvider.audit).toEqual([expect.objectContaining({ action: 'provider.revoke_all', outcome: 'provider_not_found' })]);
  });
});
