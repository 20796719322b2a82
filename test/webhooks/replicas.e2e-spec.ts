/**
 * Webhook delivery across replicas (DESIGN: "delivers it to every WEBHOOK_URLS endpoint, at least
 * once, from any replica (claims with SKIP LOCKED)"), with real broker child processes
 * (test/support/broker-process.ts) on one database and one live receiver.
 *
 * Proves:
 * - a replica SIGKILLed while its deliveries hang at a slow receiver loses none of them: another
 *   replica, started afterwards, delivers every one (the claimed ones once their 15 s lease
 *   lapsed, the queued ones behind them) in each connection's order, with the same webhook-ids;
 * - three replicas sharing the work deliver each of N events, recorded through all three, exactly
 *   once to a healthy receiver: no webhook-id twice, none missing, all listed delivered.
 */
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { DataSource } from 'typeorm';
import { ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { BrokerProcess, startBrokerProcess } from '../support/broker-process';
import { BrokerEndpoint, connectAccount } from '../support/connect-dance';
import { brokerEndpoint } from '../support/test-broker';
import { openTestDataSource, truncateAll } from '../support/test-database';
import { CLIENT_GONE, WebhookReceiver } from '../support/webhook-receiver';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
/** WEBHOOK_TIMEOUT_MS + the lease margin (libs/webhooks): how long a dead replica's claim holds. */
const CLAIM_LEASE_MS = 15_000;

describe('webhook delivery across broker processes', () => {
  let sandbox: ProviderSandbox;
  let db: DataSource;
  let receiver: WebhookReceiver;
  const children: BrokerProcess[] = [];

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    db = await openTestDataSource();
    receiver = await WebhookReceiver.start();
  });
  afterEach(async () => {
    await Promise.all(children.splice(0).map((child) => child.kill()));
    receiver.delayMs = 0;
    receiver.recover();
  });
  afterAll(async () => {
    await receiver?.close();
    await sandbox?.close();
    await db?.destroy();
  });
  beforeEach(async () => {
    await truncateAll(db);
    sandbox.reset();
    receiver.received.length = 0;
    receiver.arrivals.length = 0;
  });

  const replica = async (): Promise<BrokerEndpoint & { child: BrokerProcess }> => {
    const child = await startBrokerProcess({
      ...sandbox.env(),
      REFRESH_SCHEDULER_ENABLED: 'false',
      WEBHOOK_URLS: `${receiver.url}/hooks`,
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_RETRY_BASE_MS: '100',
      WEBHOOK_RETRY_MAX_MS: '500',
    });
    children.push(child);
    return { ...brokerEndpoint(child.url), child };
  };
  const storeKey = async (api: BrokerEndpoint, account: string): Promise<void> => {
    const response = await api.call(`/admin/connections/${account}/credentials?provider=copyai`, {
      as: 'admin',
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apiKey: sandbox.registerApiKey('copyai', {}).apiKey }),
    });
    if (response.status !== 200) throw new Error(`storing a key for ${account}: ${response.status} ${await response.text()}`);
  };
  const recorded = async (): Promise<Array<{ id: string; account: string; type: string }>> =>
    db.query(`SELECT id::text, account, type FROM lifecycle_events ORDER BY seq`);
  const expectAllSigned = (): void => {
    const verifier = new Webhook(SECRET);
    for (const hook of receiver.received) {
      if (hook.answered === CLIENT_GONE) continue;
      verifier.verify(hook.body, { 'webhook-id': hook.webhookId, 'webhook-timestamp': hook.timestamp, 'webhook-signature': hook.signature });
    }
  };

  it('a replica killed with deliveries in flight at a slow receiver: a replica started later delivers them all, in order', async () => {
    // Answers take a minute: the child's first attempts hang (within its 10 s timeout) when it is killed.
    receiver.delayMs = 60_000;
    const doomed = await replica();
    const accounts = ['acme', 'globex', 'initech'];
    for (const account of accounts) await storeKey(doomed, account);
    // Each stream's first event is claimed and in flight...
    await receiver.waitFor('the first attempts to arrive', () => (receiver.arrivals.length >= accounts.length ? true : undefined), 20_000);
    // ...and each stream gets later events, queued behind it (never claimed: order).
    for (const account of accounts) {
      const revoked = await doomed.call(`/admin/connections/${account}/revoke?provider=copyai`, { as: 'admin', method: 'POST' });
      expect(revoked.status).toBe(200);
      await storeKey(doomed, account);
    }
    const events = await recorded();
    expect(events).toHaveLength(3 * accounts.length);
    const claimed = await db.query(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE status = 'pending' AND lease_owner IS NOT NULL`);
    expect(claimed).toEqual([{ n: accounts.length }]);
    expect(new Set(receiver.arrivals)).toEqual(new Set(accounts.map((account) => events.find((e) => e.account === account)!.id)));

    await doomed.child.kill();
    // The receiver saw the sender vanish: nothing was accepted.
    await receiver.waitFor('the hung attempts to end', (all) => (all.length >= accounts.length ? true : undefined));
    expect(receiver.received.map((r) => r.answered)).toEqual(accounts.map(() => CLIENT_GONE));
    receiver.delayMs = 0;

    await replica();
    await receiver.waitFor(
      'every event delivered by the new replica',
      () => (events.every((e) => receiver.acceptedIds().includes(e.id)) ? true : undefined),
      CLAIM_LEASE_MS + 45_000,
    );
    // None was accepted twice.
    const accepted = receiver.received.filter((r) => r.answered === 204).map((r) => r.webhookId);
    expect(accepted).toHaveLength(events.length);
    expect(new Set(accepted).size).toBe(events.length);
    for (const account of accounts) {
      const order = events.filter((e) => e.account === account).map((e) => e.id);
      expect(accepted.filter((id) => order.includes(id))).toEqual(order);
    }
    const rows: Array<{ status: string; attempts: number; n: number }> = await db.query(
      `SELECT status, attempts, count(*)::int AS n FROM webhook_deliveries GROUP BY status, attempts ORDER BY attempts`,
    );
    // The first event of each stream took two attempts (the killed one counted), the rest one.
    expect(rows).toEqual([
      { status: 'delivered', attempts: 1, n: 2 * accounts.length },
      { status: 'delivered', attempts: 2, n: accounts.length },
    ]);
    expectAllSigned();
  });

  it('three replicas deliver each of 30 events, recorded through all three, exactly once', async () => {
    const replicas = await Promise.all([replica(), replica(), replica()]);
    const accounts = Array.from({ length: 30 }, (_, i) => `tenant-${String(i).padStart(2, '0')}`);
    // Spread over the replicas, a few at a time: API key stores and OAuth connects.
    for (let i = 0; i < accounts.length; i += 6) {
      await Promise.all(
        accounts.slice(i, i + 6).map((account, j) => {
          const api = replicas[(i + j) % replicas.length];
          return (i + j) % 5 === 0 ? connectAccount(api, account, 'copyai') : storeKey(api, account);
        }),
      );
    }
    const events = await recorded();
    expect(events).toHaveLength(accounts.length);
    await receiver.waitFor('all 30 events', () => (receiver.acceptedIds().length >= accounts.length ? true : undefined), 60_000);
    // Settle: anything delivered twice would have arrived by the time every delivery is written delivered.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const [{ open }] = await db.query(`SELECT count(*)::int AS open FROM webhook_deliveries WHERE status <> 'delivered'`);
      if (open === 0) break;
      if (Date.now() > deadline) throw new Error(`${open} deliveries not delivered`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const ids = receiver.received.map((r) => r.webhookId);
    expect(receiver.received.every((r) => r.answered === 204)).toBe(true);
    expect(ids).toHaveLength(accounts.length);
    expect(new Set(ids)).toEqual(new Set(events.map((e) => e.id)));
    expect(new Set(receiver.received.map((r) => (r.payload.data as { account: string }).account))).toEqual(new Set(accounts));
    const [{ delivered, attempts }] = await db.query(`SELECT count(*)::int AS delivered, sum(attempts)::int AS attempts FROM webhook_deliveries WHERE status = 'delivered'`);
    expect({ delivered, attempts }).toEqual({ delivered: accounts.length, attempts: accounts.length });
    expectAllSigned();
  });
});
