/**
 * Delivery order per connection (DESIGN: "Events of one connection are delivered in the order
 * they happened"), against a live receiver that refuses everything for a while.
 *
 * Proves: while the receiver fails, several changes to one connection (connect, revoke,
 * reconnect, an API key stored over it, revoke) queue behind the first: only the first event is
 * ever attempted; once the receiver recovers, all of them arrive in the order they happened (the
 * order of lifecycle_events.seq), each accepted exactly once, and no event of the connection is
 * sent before the one before it was accepted. Another connection's events are not held back
 * behind a stream that is still failing.
 */
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { connectAccount } from '../support/connect-dance';
import { ReceivedWebhook, WebhookReceiver } from '../support/webhook-receiver';
import { useWebhookSuite } from '../support/webhook-suite';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

describe('lifecycle events of one connection are delivered in order', () => {
  const webhooks = useWebhookSuite({ env: { WEBHOOK_SECRET: SECRET, WEBHOOK_RETRY_BASE_MS: '100', WEBHOOK_RETRY_MAX_MS: '300' } });
  const suite = webhooks.suite;
  let receiver: WebhookReceiver;
  beforeAll(() => (receiver = webhooks.receiver));

  const admin = (path: string, method = 'POST', body?: unknown): Promise<Response> =>
    suite.broker.call(path, {
      as: 'admin',
      method,
      ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
  const ofAccount = (account: string): ReceivedWebhook[] => receiver.received.filter((r) => (r.payload.data as { account?: string }).account === account);
  /** The recorded events of `account`, in the order they happened. */
  const recorded = async (account: string): Promise<Array<{ id: string; type: string; reason: string }>> =>
    suite.db.query(`SELECT id::text, type, reason FROM lifecycle_events WHERE account = $1 ORDER BY seq`, [account]);
  /** For each attempt, that every earlier event of the stream had already been accepted. */
  const expectNothingSentAhead = (attempts: ReceivedWebhook[], order: string[]): void => {
    const accepted = new Set<string>();
    for (const attempt of attempts) {
      const position = order.indexOf(attempt.webhookId);
      expect(position).toBeGreaterThanOrEqual(0);
      expect(order.slice(0, position).filter((id) => !accepted.has(id))).toEqual([]);
      if (attempt.answered < 300) accepted.add(attempt.webhookId);
    }
  };

  it('queues later changes behind a failing delivery and sends them in order once the receiver recovers', async () => {
    receiver.failUntilRecovered(500);
    await connectAccount(suite.broker, 'acme', 'copyai');
    await receiver.waitFor('the first attempt', (all) => all.length > 0 || undefined);
    expect((await admin('/admin/connections/acme/revoke?provider=copyai')).status).toBe(200);
    await connectAccount(suite.broker, 'acme', 'copyai');
    const key = suite.sandbox.registerApiKey('copyai', {});
    expect((await admin('/admin/connections/acme/credentials?provider=copyai', 'PUT', { apiKey: key.apiKey })).status).toBe(200);
    expect((await admin('/admin/connections/acme/revoke?provider=copyai')).status).toBe(200);
    const events = await recorded('acme');
    expect(events.map((e) => [e.type, e.reason])).toEqual([
      ['connection.connected', 'oauth2'],
      ['connection.revoked', 'connection.revoke'],
      ['connection.connected', 'oauth2'],
      ['connection.connected', 'api_key'],
      ['connection.revoked', 'connection.revoke'],
    ]);
    const order = events.map((e) => e.id);

    // Several retries of the first event go by; none of the later ones is attempted meanwhile.
    await receiver.waitFor('a few retries', (all) => all.length >= 4 || undefined);
    expect(new Set(receiver.received.map((r) => r.webhookId))).toEqual(new Set([order[0]]));

    receiver.recover();
    await receiver.waitFor('every event accepted', () => order.every((id) => receiver.acceptedIds().includes(id)) || undefined, 20_000);
    const attempts = ofAccount('acme');
    expectNothingSentAhead(attempts, order);
    expect(receiver.acceptedIds()).toEqual(order);
    // Accepted exactly once each.
    expect(attempts.filter((a) => a.answered < 300).map((a) => a.webhookId)).toEqual(order);
    expect(attempts.filter((a) => a.answered < 300).map((a) => [a.payload.type, (a.payload.data as { reason: string }).reason])).toEqual(
      events.map((e) => [e.type, e.reason]),
    );
    const verifier = new Webhook(SECRET);
    for (const a of attempts) verifier.verify(a.body, { 'webhook-id': a.webhookId, 'webhook-timestamp': a.timestamp, 'webhook-signature': a.signature });
  });

  it('keeps order under intermittent failures while changes keep coming', async () => {
    const order: string[] = [];
    // Every other answer fails while five changes are made, one after another.
    receiver.failNext(1, 500);
    await connectAccount(suite.broker, 'acme', 'copyai');
    for (let round = 0; round < 2; round++) {
      receiver.failNext(2, 503);
      expect((await admin('/admin/connections/acme/revoke?provider=copyai')).status).toBe(200);
      receiver.failNext(1, 500);
      await connectAccount(suite.broker, 'acme', 'copyai');
    }
    order.push(...(await recorded('acme')).map((e) => e.id));
    expect(order).toHaveLength(5);
    await receiver.waitFor('every event accepted', () => order.every((id) => receiver.acceptedIds().includes(id)) || undefined, 20_000);
    expectNothingSentAhead(ofAccount('acme'), order);
    expect(receiver.acceptedIds()).toEqual(order);
  });

  it("does not hold another connection's events behind a stream that keeps failing", async () => {
    const accountOf = (payload: ReceivedWebhook['payload']): string | undefined => (payload.data as { account?: string }).account;
    receiver.failMatching((payload) => accountOf(payload) === 'acme', 500);
    await connectAccount(suite.broker, 'acme', 'copyai');
    await receiver.waitFor('acme refused', (all) => all.some((r) => r.answered === 500) || undefined);
    await connectAccount(suite.broker, 'globex', 'copyai');
    expect((await admin('/admin/connections/globex/revoke?provider=copyai')).status).toBe(200);
    const globex = (await recorded('globex')).map((e) => e.id);
    await receiver.waitFor('globex accepted while acme keeps failing', () => globex.every((id) => receiver.acceptedIds().includes(id)) || undefined, 20_000);
    expect(receiver.acceptedIds()).toEqual(globex);
    expect(ofAccount('acme').every((r) => r.answered === 500)).toBe(true);
    receiver.recover();
    const [acme] = (await recorded('acme')).map((e) => e.id);
    await receiver.waitFor('acme accepted', () => receiver.acceptedIds().includes(acme) || undefined, 20_000);
  });
});
