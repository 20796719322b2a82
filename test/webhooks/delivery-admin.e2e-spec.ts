/**
 * Deliveries given up, and the admin routes over deliveries (DESIGN, "Lifecycle events
 * (webhooks)"), with WEBHOOK_MAX_ATTEMPTS=2 against a live receiver.
 *
 * Proves: a delivery whose attempts all fail is `failed` in GET /admin/webhook-deliveries?status=failed
 * (attempts, last status), is audited as webhook.given_up (GET /admin/audit, the endpoint shown
 * without its query), and POST /admin/webhook-deliveries/:id/retry sends it again with the same
 * webhook-id and a fresh budget until delivered; retrying a delivered one is 409
 * delivery_not_failed, an unknown id 404 delivery_not_found, a non-numeric id 400. The list route
 * filters by type, status and account (combined), pages newest first with cursor/limit without
 * losing or repeating a delivery, and refuses bad filters with 400 validation_failed.
 */
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { connectAccount } from '../support/connect-dance';
import { WebhookReceiver } from '../support/webhook-receiver';
import { useWebhookSuite } from '../support/webhook-suite';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const RECEIVER_TOKEN = 'receiver-secret-7d1e';

interface Delivery {
  id: string;
  webhookId: string;
  type: string;
  account: string | null;
  provider: string;
  endpoint: string;
  status: string;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  deliveredAt: string | null;
  nextAttemptAt: string | null;
}
interface Page {
  items: Delivery[];
  nextCursor: string | null;
}

describe('webhook deliveries given up, retried and listed', () => {
  const webhooks = useWebhookSuite({
    path: `/hooks?token=${RECEIVER_TOKEN}`,
    env: { WEBHOOK_SECRET: SECRET, WEBHOOK_RETRY_BASE_MS: '100', WEBHOOK_RETRY_MAX_MS: '200', WEBHOOK_MAX_ATTEMPTS: '2' },
  });
  const suite = webhooks.suite;
  let receiver: WebhookReceiver;
  beforeAll(() => (receiver = webhooks.receiver));

  const get = async (query: string): Promise<{ status: number; body: Page & { error?: string; message?: string } }> => {
    const response = await suite.broker.call(`/admin/webhook-deliveries${query}`, { as: 'admin' });
    return { status: response.status, body: (await response.json()) as Page & { error?: string; message?: string } };
  };
  const retry = async (id: string): Promise<{ status: number; body: Delivery & { error?: string } }> => {
    const response = await suite.broker.call(`/admin/webhook-deliveries/${id}/retry`, { as: 'admin', method: 'POST' });
    return { status: response.status, body: (await response.json()) as Delivery & { error?: string } };
  };
  /** Polls the list until `check` holds (generous deadline; nothing is timed). */
  const listUntil = async (query: string, check: (items: Delivery[]) => boolean, what: string): Promise<Delivery[]> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const { status, body } = await get(query);
      expect(status).toBe(200);
      if (check(body.items)) return body.items;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(body.items)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  it('gives up after WEBHOOK_MAX_ATTEMPTS, audits it, and a retry delivers it with the same webhook-id', async () => {
    receiver.failUntilRecovered(503);
    await connectAccount(suite.broker, 'acme', 'copyai');
    const [failed] = await listUntil('?status=failed', (items) => items.length === 1, 'the delivery to fail');
    expect(failed).toMatchObject({
      type: 'connection.connected',
      account: 'acme',
      provider: 'copyai',
      status: 'failed',
      attempts: 2,
      lastStatus: 503,
      deliveredAt: null,
      nextAttemptAt: null,
      endpoint: receiver.url,
    });
    expect(JSON.stringify(failed)).not.toContain(RECEIVER_TOKEN);
    expect(receiver.received.map((r) => [r.webhookId, r.answered])).toEqual([
      [failed.webhookId, 503],
      [failed.webhookId, 503],
    ]);

    // Audited (the audit writer flushes every 2 s).
    const deadline = Date.now() + 20_000;
    let audit: Array<Record<string, unknown>> = [];
    while (audit.length === 0) {
      const response = await suite.broker.call('/admin/audit?action=webhook.given_up', { as: 'admin' });
      expect(response.status).toBe(200);
      audit = ((await response.json()) as { items: Array<Record<string, unknown>> }).items;
      if (audit.length === 0 && Date.now() > deadline) throw new Error('no webhook.given_up audit record');
      if (audit.length === 0) await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(audit).toEqual([
      expect.objectContaining({
        action: 'webhook.given_up',
        actor: 'system',
        account: 'acme',
        provider: 'copyai',
        outcome: '503',
        detail: expect.objectContaining({ deliveryId: failed.id, webhookId: failed.webhookId, type: 'connection.connected', attempts: 2 }),
      }),
    ]);
    expect(JSON.stringify(audit)).not.toContain(RECEIVER_TOKEN);

    // Nothing more is attempted on its own.
    const attemptsSoFar = receiver.received.length;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(receiver.received.length).toBe(attemptsSoFar);

    // Retried while the receiver still fails: a fresh budget of two attempts, then failed again.
    const first = await retry(failed.id);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ id: failed.id, webhookId: failed.webhookId, status: 'pending', attempts: 0 });
    await receiver.waitFor('two more attempts', (all) => all.length >= attemptsSoFar + 2 || undefined, 20_000);
    await listUntil('?status=failed', (items) => items.length === 1 && items[0].attempts === 2, 'the delivery to fail again');

    // Retried once the receiver is back: delivered, same webhook-id, a payload that verifies.
    receiver.recover();
    const second = await retry(failed.id);
    expect(second.status).toBe(200);
    const accepted = await receiver.waitFor('the retried delivery accepted', (all) => all.find((r) => r.answered === 204), 20_000);
    expect(accepted.webhookId).toBe(failed.webhookId);
    expect(new Webhook(SECRET).verify(accepted.body, { 'webhook-id': accepted.webhookId, 'webhook-timestamp': accepted.timestamp, 'webhook-signature': accepted.signature })).toMatchObject({
      type: 'connection.connected',
      data: { account: 'acme' },
    });
    const [delivered] = await listUntil('?account=acme', (items) => items[0]?.status === 'delivered', 'the delivery to be delivered');
    expect(delivered).toMatchObject({ id: failed.id, webhookId: failed.webhookId, status: 'delivered', attempts: 1, lastStatus: 204, lastError: null });
    expect((await get('?status=failed')).body.items).toEqual([]);

    // Only a failed delivery can be retried.
    const notFailed = await retry(failed.id);
    expect(notFailed.status).toBe(409);
    expect(notFailed.body).toMatchObject({ error: 'delivery_not_failed' });
    const unknown = await retry('987654321');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ error: 'delivery_not_found' });
    for (const bad of ['abc', '0', '-1', '1.5', '99999999999999999999']) {
      const refused = await retry(bad);
      expect([bad, refused.status, refused.body.error]).toEqual([bad, 400, 'validation_failed']);
    }
  });

  it('lists deliveries newest first, filtered by type, status and account, paged by cursor without gaps or repeats', async () => {
    for (const account of ['acme', 'globex', 'initech']) await connectAccount(suite.broker, account, 'copyai');
    expect((await suite.broker.call('/admin/connections/acme/revoke?provider=copyai', { as: 'admin', method: 'POST' })).status).toBe(200);
    // One delivery given up: globex's revoke, sent while the receiver fails.
    await receiver.waitFor('the three connects', () => receiver.acceptedIds().length >= 4 || undefined, 20_000);
    receiver.failUntilRecovered(500);
    expect((await suite.broker.call('/admin/connections/globex/revoke?provider=copyai', { as: 'admin', method: 'POST' })).status).toBe(200);
    await listUntil('?status=failed', (items) => items.length === 1, 'globex revoke to fail');
    receiver.recover();

    const all = (await get('')).body;
    expect(all.nextCursor).toBeNull();
    expect(all.items.map((d) => [d.type, d.account, d.status])).toEqual([
      ['connection.revoked', 'globex', 'failed'],
      ['connection.revoked', 'acme', 'delivered'],
      ['connection.connected', 'initech', 'delivered'],
      ['connection.connected', 'globex', 'delivered'],
      ['connection.connected', 'acme', 'delivered'],
    ]);
    const ids = all.items.map((d) => Number(d.id));
    expect([...ids].sort((a, b) => b - a)).toEqual(ids);

    expect((await get('?type=connection.revoked')).body.items.map((d) => d.account)).toEqual(['globex', 'acme']);
    expect((await get('?account=globex')).body.items.map((d) => d.type)).toEqual(['connection.revoked', 'connection.connected']);
    expect((await get('?status=delivered&type=connection.revoked')).body.items.map((d) => d.account)).toEqual(['acme']);
    expect((await get('?status=failed&account=acme')).body.items).toEqual([]);
    expect((await get('?status=pending')).body.items).toEqual([]);
    expect((await get('?type=provider.misconfigured')).body.items).toEqual([]);
    // An empty value counts as absent.
    expect((await get('?status=&type=&account=')).body.items).toHaveLength(5);

    // Pages of two: every delivery once, in the same order.
    const paged: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: Page = (await get(`?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).body;
      expect(page.items.length).toBeLessThanOrEqual(2);
      paged.push(...page.items.map((d) => d.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== null && pages < 10);
    expect(paged).toEqual(all.items.map((d) => d.id));
    expect(pages).toBe(3);
    // Paging combines with a filter.
    const firstDelivered = (await get('?status=delivered&limit=3')).body;
    const restDelivered = (await get(`?status=delivered&limit=3&cursor=${firstDelivered.nextCursor}`)).body;
    expect([...firstDelivered.items, ...restDelivered.items].map((d) => d.account)).toEqual(['acme', 'initech', 'globex', 'acme']);
    expect(restDelivered.nextCursor).toBeNull();
  });

  it.each([
    ['?status=bogus', /status must be one of pending, delivered, failed/],
    ['?type=connection.exploded', /type must be one of connection\.connected/],
    ['?account=' + encodeURIComponent('not an account!'), /account/],
    ['?limit=0', /limit/],
    ['?limit=abc', /limit/],
    ['?limit=100000', /limit/],
    ['?cursor=abc', /cursor/],
    ['?cursor=0', /cursor/],
    ['?colour=blue', /colour/],
  ])('GET /admin/webhook-deliveries%s is 400 validation_failed', async (query, message) => {
    const { status, body } = await get(query);
    expect(status).toBe(400);
    expect(body.error).toBe('validation_failed');
    expect(body.message).toMatch(message);
  });

  it('lists every problem of a query at once', async () => {
    const { status, body } = await get('?status=bogus&type=nope&limit=0');
    expect(status).toBe(400);
    expect(body.error).toBe('validation_failed');
    expect(body.message).toMatch(/status/);
    expect(body.message).toMatch(/type/);
    expect(body.message).toMatch(/limit/);
  });

  it('needs an admin key', async () => {
    expect((await suite.broker.call('/admin/webhook-deliveries')).status).toBe(401);
    expect((await suite.broker.call('/admin/webhook-deliveries', { as: 'service' })).status).toBe(403);
    expect((await suite.broker.call('/admin/webhook-deliveries/1/retry', { as: 'service', method: 'POST' })).status).toBe(403);
  });
});
