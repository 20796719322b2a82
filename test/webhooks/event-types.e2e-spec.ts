/**
 * Each lifecycle event type (DESIGN, "Lifecycle events (webhooks)") end to end: a real broker,
 * the provider sandbox and a live receiver, time simulated by a ManualClock shared by the broker
 * and the sandbox (the sweep is driven by hand, as in test/refresh/failures.e2e-spec.ts).
 *
 * Proves: every type fires once when it should, with the right data.status and data.reason
 * (connection.connected for an OAuth connect and for an API key store; needs_reauth on
 * invalid_grant; refresh_failing once per streak of transient failures after the access token
 * expired and never while it was valid; recovered after the refresh that ends such a streak;
 * revoked by a single revoke and by revoke-all, each with its admin action; provider.misconfigured
 * once per invalid_client streak, carrying only the provider, and again after a success ended the
 * streak); no event for a change that did not happen (revoking a revoked connection, another
 * failure of a reported streak); and every delivery received, of every test, verifies with the
 * standardwebhooks verifier.
 *
 * "None more" is checked without waiting for silence: events of one connection (or one provider)
 * are delivered in order, so once a later event of the same stream has arrived, every earlier one
 * has too.
 */
import { ManualClock } from '@app/common';
import { RefreshSweeper, SweepReport } from '@app/refresh';
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { connectAccount } from '../support/connect-dance';
import { ReceivedWebhook, WebhookReceiver } from '../support/webhook-receiver';
import { useWebhookSuite } from '../support/webhook-suite';
import { ms, refreshRow } from '../refresh/refresh-fixtures';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const EVENT_WAIT_MS = 20_000;

type Data = { account?: string; provider?: string; status?: string; reason?: string | null; connection?: Record<string, unknown> };

describe('lifecycle event types, each fired once when it should', () => {
  const clock = new ManualClock(Date.now());
  const webhooks = useWebhookSuite({ clock, env: { WEBHOOK_SECRET: SECRET, WEBHOOK_RETRY_BASE_MS: '100', WEBHOOK_RETRY_MAX_MS: '400' } });
  const suite = webhooks.suite;
  let receiver: WebhookReceiver;
  beforeAll(() => (receiver = webhooks.receiver));
  afterEach(() => {
    // Every delivery this test received is signed with WEBHOOK_SECRET, as a receiver checks it.
    const verifier = new Webhook(SECRET);
    for (const hook of receiver.received) {
      const verified = verifier.verify(hook.body, { 'webhook-id': hook.webhookId, 'webhook-timestamp': hook.timestamp, 'webhook-signature': hook.signature });
      expect(verified).toEqual(hook.payload);
    }
  });

  const sweep = (): Promise<SweepReport> => suite.broker.app.get(RefreshSweeper).sweep();
  const untilDue = async (account: string): Promise<void> => {
    const { next_refresh_at } = await refreshRow(suite.db, account, 'copyai');
    if (next_refresh_at === null) throw new Error(`${account} has no planned refresh`);
    clock.set(Math.max(clock.nowMs(), ms(next_refresh_at)));
  };
  const data = (hook: ReceivedWebhook): Data => hook.payload.data;
  /** What arrived for `account`, one entry per webhook-id (type, status, reason), in arrival order. */
  const stream = (account: string): Array<[string, string | undefined, string | null | undefined]> => {
    const seen = new Set<string>();
    const out: Array<[string, string | undefined, string | null | undefined]> = [];
    for (const hook of receiver.received) {
      if (data(hook).account !== account || seen.has(hook.webhookId)) continue;
      seen.add(hook.webhookId);
      out.push([hook.payload.type, data(hook).status, data(hook).reason]);
    }
    return out;
  };
  const waitForEvent = (type: string, account?: string): Promise<ReceivedWebhook> =>
    receiver.waitFor(
      `${type}${account ? ` of ${account}` : ''}`,
      (all) => all.find((hook) => hook.payload.type === type && (account === undefined || data(hook).account === account)),
      EVENT_WAIT_MS,
    );
  const admin = (path: string, method = 'POST', body?: unknown): Promise<Response> =>
    suite.broker.call(path, {
      as: 'admin',
      method,
      ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });

  it('connection.connected for an OAuth connect (reason oauth2) and for an API key stored by an admin (reason api_key)', async () => {
    await connectAccount(suite.broker, 'acme', 'copyai');
    const oauth = await waitForEvent('connection.connected', 'acme');
    expect(oauth.payload.data).toMatchObject({ account: 'acme', provider: 'copyai', status: 'active', reason: 'oauth2' });
    expect(data(oauth).connection).toMatchObject({ account: 'acme', provider: 'copyai', status: 'active', authMode: 'oauth2' });

    const key = suite.sandbox.registerApiKey('copyai', {});
    const stored = await admin('/admin/connections/globex/credentials?provider=copyai', 'PUT', { apiKey: key.apiKey });
    expect(stored.status).toBe(200);
    const apiKey = await waitForEvent('connection.connected', 'globex');
    expect(apiKey.payload.data).toMatchObject({ account: 'globex', provider: 'copyai', status: 'active', reason: 'api_key' });
    expect(data(apiKey).connection).toMatchObject({ authMode: 'api_key' });
    expect(apiKey.body).not.toContain(key.apiKey);

    // Storing a key over the OAuth grant is a connect again.
    const replacing = await admin('/admin/connections/acme/credentials?provider=copyai', 'PUT', { apiKey: suite.sandbox.registerApiKey('copyai', {}).apiKey });
    expect(replacing.status).toBe(200);
    await receiver.waitFor('acme connected twice', () => stream('acme').length >= 2 || undefined, EVENT_WAIT_MS);
    expect(stream('acme')).toEqual([
      ['connection.connected', 'active', 'oauth2'],
      ['connection.connected', 'active', 'api_key'],
    ]);
    expect(stream('globex')).toEqual([['connection.connected', 'active', 'api_key']]);
  });

  it('connection.needs_reauth when the refresh is answered invalid_grant', async () => {
    await connectAccount(suite.broker, 'acme', 'copyai');
    await untilDue('acme');
    suite.sandbox.failNext('copyai', { kind: 'status', status: 400, error: 'invalid_grant' });
    expect((await sweep()).outcomes).toEqual({ needs_reauth: 1 });
    const hook = await waitForEvent('connection.needs_reauth', 'acme');
    expect(hook.payload.data).toMatchObject({ account: 'acme', provider: 'copyai', status: 'needs_reauth', reason: 'invalid_grant' });
    // Reconnecting afterwards: the later event of the stream arrives after needs_reauth, and nothing else came between.
    await connectAccount(suite.broker, 'acme', 'copyai');
    await receiver.waitFor('the reconnect', () => stream('acme').length >= 3 || undefined, EVENT_WAIT_MS);
    expect(stream('acme')).toEqual([
      ['connection.connected', 'active', 'oauth2'],
      ['connection.needs_reauth', 'needs_reauth', 'invalid_grant'],
      ['connection.connected', 'active', 'oauth2'],
    ]);
  });

  it('connection.refresh_failing once per streak, only once the token has expired; connection.recovered after the refresh that ends it', async () => {
    await connectAccount(suite.broker, 'acme', 'copyai');
    const connected = await refreshRow(suite.db, 'acme', 'copyai');
    const expiresAt = ms(connected.expires_at);
    await untilDue('acme');
    suite.sandbox.failUntilCleared('copyai', { kind: 'status', status: 503 });

    // Failures while the token is still valid: reads are served, nothing to report.
    let failuresBeforeExpiry = 0;
    for (;;) {
      const { next_refresh_at } = await refreshRow(suite.db, 'acme', 'copyai');
      if (ms(next_refresh_at) >= expiresAt) break;
      await untilDue('acme');
      expect((await sweep()).outcomes).toEqual({ transient: 1 });
      failuresBeforeExpiry++;
    }
    expect(failuresBeforeExpiry).toBeGreaterThan(0);
    expect(await suite.db.query(`SELECT type FROM lifecycle_events WHERE type <> 'connection.connected'`)).toEqual([]);

    // Past expiry: three more failures, one report.
    for (let i = 0; i < 3; i++) {
      await untilDue('acme');
      expect(clock.nowMs()).toBeGreaterThanOrEqual(expiresAt);
      expect((await sweep()).outcomes).toEqual({ transient: 1 });
    }
    const failing = await waitForEvent('connection.refresh_failing', 'acme');
    expect(failing.payload.data).toMatchObject({ account: 'acme', status: 'active', reason: 'provider_unavailable' });
    expect((await suite.broker.call('/tokens/acme?provider=copyai', { as: 'service' })).status).toBe(503);

    suite.sandbox.clearFailures('copyai');
    await untilDue('acme');
    expect((await sweep()).outcomes).toEqual({ refreshed: 1 });
    const recovered = await waitForEvent('connection.recovered', 'acme');
    expect(recovered.payload.data).toMatchObject({ account: 'acme', status: 'active', reason: 'refreshed' });
    // Another refresh later is not a recovery.
    await untilDue('acme');
    expect((await sweep()).outcomes).toEqual({ refreshed: 1 });

    // A second streak is reported again, and ends again.
    suite.sandbox.failUntilCleared('copyai', { kind: 'status', status: 503 });
    clock.set(ms((await refreshRow(suite.db, 'acme', 'copyai')).expires_at) + 1_000);
    expect((await sweep()).outcomes).toEqual({ transient: 1 });
    await untilDue('acme');
    expect((await sweep()).outcomes).toEqual({ transient: 1 });
    suite.sandbox.clearFailures('copyai');
    await untilDue('acme');
    expect((await sweep()).outcomes).toEqual({ refreshed: 1 });
    await receiver.waitFor('the second recovery', () => stream('acme').length >= 5 || undefined, EVENT_WAIT_MS);
    expect(stream('acme')).toEqual([
      ['connection.connected', 'active', 'oauth2'],
      ['connection.refresh_failing', 'active', 'provider_unavailable'],
      ['connection.recovered', 'active', 'refreshed'],
      ['connection.refresh_failing', 'active', 'provider_unavailable'],
      ['connection.recovered', 'active', 'refreshed'],
    ]);
  });

  it('connection.revoked with reason connection.revoke, and no second event for revoking it again', async () => {
    await connectAccount(suite.broker, 'acme', 'copyai');
    expect((await admin('/admin/connections/acme/revoke?provider=copyai')).status).toBe(200);
    const again = await admin('/admin/connections/acme/revoke?provider=copyai');
    expect(again.status).toBeLessThan(500);
    const revoked = await waitForEvent('connection.revoked', 'acme');
    expect(revoked.payload.data).toMatchObject({ account: 'acme', provider: 'copyai', status: 'revoked', reason: 'connection.revoke' });
    expect(data(revoked).connection).toMatchObject({ status: 'revoked', hasRefreshToken: false });
    await connectAccount(suite.broker, 'acme', 'copyai');
    await receiver.waitFor('the reconnect', () => stream('acme').length >= 3 || undefined, EVENT_WAIT_MS);
    expect(stream('acme')).toEqual([
      ['connection.connected', 'active', 'oauth2'],
      ['connection.revoked', 'revoked', 'connection.revoke'],
      ['connection.connected', 'active', 'oauth2'],
    ]);
  });

  it('connection.revoked with reason provider.revoke_all for each connection revoke-all ends, none for one already revoked', async () => {
    for (const account of ['acme', 'globex', 'initech']) await connectAccount(suite.broker, account, 'copyai');
    expect((await admin('/admin/connections/initech/revoke?provider=copyai')).status).toBe(200);
    const all = await admin('/admin/providers/copyai/revoke-all');
    expect(all.status).toBe(200);
    for (const account of ['acme', 'globex']) {
      const hook = await waitForEvent('connection.revoked', account);
      expect(hook.payload.data).toMatchObject({ account, provider: 'copyai', status: 'revoked', reason: 'provider.revoke_all' });
    }
    // Running it again finds nothing to revoke and records nothing.
    expect((await admin('/admin/providers/copyai/revoke-all')).status).toBe(200);
    for (const account of ['acme', 'globex', 'initech']) await connectAccount(suite.broker, account, 'copyai');
    await receiver.waitFor('the reconnects', () => ['acme', 'globex', 'initech'].every((a) => stream(a).length >= 3) || undefined, EVENT_WAIT_MS);
    for (const account of ['acme', 'globex']) {
      expect(stream(account)).toEqual([
        ['connection.connected', 'active', 'oauth2'],
        ['connection.revoked', 'revoked', 'provider.revoke_all'],
        ['connection.connected', 'active', 'oauth2'],
      ]);
    }
    expect(stream('initech')).toEqual([
      ['connection.connected', 'active', 'oauth2'],
      ['connection.revoked', 'revoked', 'connection.revoke'],
      ['connection.connected', 'active', 'oauth2'],
    ]);
  });

  it('provider.misconfigured once per invalid_client streak, with only the provider, and again after a success ended the streak', async () => {
    for (const account of ['acme', 'globex', 'initech']) await connectAccount(suite.broker, account, 'copyai');
    await untilDue('acme');
    await untilDue('globex');
    await untilDue('initech');
    suite.sandbox.failUntilCleared('copyai', { kind: 'status', status: 401, error: 'invalid_client' });
    expect((await sweep()).outcomes).toEqual({ misconfigured: 3 });
    // More of the same streak, minutes later.
    await untilDue('acme');
    expect((await sweep()).outcomes).toEqual({ misconfigured: 3 });
    const misconfigured = (): ReceivedWebhook[] => receiver.ofType('provider.misconfigured').filter((h, i, all) => all.findIndex((o) => o.webhookId === h.webhookId) === i);
    const first = await waitForEvent('provider.misconfigured');
    expect(first.payload.data).toEqual({ provider: 'copyai' });

    // The client credentials work again for one refresh: the streak is over.
    suite.sandbox.clearFailures('copyai');
    await untilDue('acme');
    expect((await sweep()).outcomes.refreshed).toBeGreaterThan(0);
    suite.sandbox.failUntilCleared('copyai', { kind: 'status', status: 401, error: 'invalid_client' });
    clock.advance(60 * 60_000);
    const report = await sweep();
    expect(report.outcomes.misconfigured).toBeGreaterThan(0);
    await receiver.waitFor('a second provider.misconfigured', () => misconfigured().length >= 2 || undefined, EVENT_WAIT_MS);
    expect(misconfigured().map((h) => h.payload.data)).toEqual([{ provider: 'copyai' }, { provider: 'copyai' }]);
    expect(await suite.db.query(`SELECT count(*)::int AS n FROM lifecycle_events WHERE type = 'provider.misconfigured'`)).toEqual([{ n: 2 }]);
    // No connection event came of invalid_client.
    for (const account of ['acme', 'globex', 'initech']) expect(stream(account).map(([type]) => type).filter((t) => t !== 'connection.connected')).toEqual([]);
  });
});
