/**
 * Lifecycle events end to end (DESIGN, "Lifecycle events (webhooks)"): a real broker, the
 * provider sandbox and a live receiver; signatures checked with the standardwebhooks verifier.
 */
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { connectAccount } from '../support/connect-dance';
import { WebhookReceiver } from '../support/webhook-receiver';
import { useWebhookSuite } from '../support/webhook-suite';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

describe('lifecycle events (webhooks)', () => {
  const webhooks = useWebhookSuite({
    path: '/hooks?token=receiver-own-token',
    env: { WEBHOOK_SECRET: SECRET, WEBHOOK_RETRY_BASE_MS: '100', WEBHOOK_RETRY_MAX_MS: '400' },
  });
  const suite = webhooks.suite;
  let receiver: WebhookReceiver;
  beforeAll(() => (receiver = webhooks.receiver));

  it('sends connection.connected, signed so that a Standard Webhooks verifier accepts it, with the admin view and no token', async () => {
    await connectAccount(suite.broker, 'acme', 'copyai');
    const [event] = await receiver.waitFor('connection.connected', (all) => all.length > 0 && all);
    const verified = new Webhook(SECRET).verify(event.body, { 'webhook-id': event.webhookId, 'webhook-timestamp': event.timestamp, 'webhook-signature': event.signature });
    expect(verified).toMatchObject({ type: 'connection.connected', data: { account: 'acme', provider: 'copyai', status: 'active', reason: 'oauth2' } });
    expect(event.payload.data.connection).toMatchObject({ account: 'acme', provider: 'copyai', status: 'active', hasRefreshToken: true });
    expect(event.path).toBe('/hooks?token=receiver-own-token');
    const row: Array<{ access_token_sealed: string }> = await suite.db.query(`SELECT access_token_sealed FROM connections WHERE account = 'acme'`);
    expect(event.body).not.toContain(row[0].access_token_sealed.split('.')[3]);
    expect(event.body).not.toMatch(/access_?token"\s*:/i);
  });

  it('retries a receiver answering 500 with the same webhook-id until it takes it, and lists the delivery', async () => {
    receiver.failNext(2, 500);
    await connectAccount(suite.broker, 'globex', 'copyai');
    const attempts = await receiver.waitFor('three attempts', (all) => all.length >= 3 && all);
    expect(attempts.map((a) => a.answered)).toEqual([500, 500, 204]);
    expect(new Set(attempts.map((a) => a.webhookId)).size).toBe(1);
    const listed = await suite.broker.call('/admin/webhook-deliveries?account=globex', { as: 'admin' });
    expect(listed.status).toBe(200);
    const page = (await listed.json()) as { items: Array<Record<string, unknown>> };
    expect(page.items).toEqual([
      expect.objectContaining({ webhookId: attempts[0].webhookId, type: 'connection.connected', status: 'delivered', attempts: 3, lastStatus: 204, endpoint: receiver.url }),
    ]);
  });
});
