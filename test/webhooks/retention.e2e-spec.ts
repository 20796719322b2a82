/**
 * Lifecycle events are kept AUDIT_RETENTION_DAYS: the hourly prune deletes older events whose
 * deliveries are all finished, and keeps any with a delivery still pending.
 */
import { WebhookDispatcher } from '@app/webhooks';
import { randomBytes } from 'node:crypto';
import { connectAccount } from '../support/connect-dance';
import { WebhookReceiver } from '../support/webhook-receiver';
import { useWebhookSuite } from '../support/webhook-suite';

describe('lifecycle event retention', () => {
  const webhooks = useWebhookSuite({ env: { WEBHOOK_SECRET: `whsec_${randomBytes(32).toString('base64')}`, AUDIT_RETENTION_DAYS: '30' } });
  const suite = webhooks.suite;
  let receiver: WebhookReceiver;
  beforeAll(() => (receiver = webhooks.receiver));

  it('prunes delivered events past the retention, keeps pending ones and recent ones', async () => {
    // Only this test's accounts count: the broker may have delivered events other suites left behind before the tables were emptied.
    const of = (account: string) => (all: typeof receiver.received) => all.some((r) => r.payload.data.account === account);
    await connectAccount(suite.broker, 'delivered-old', 'copyai');
    await receiver.waitFor('the first event', of('delivered-old'));
    receiver.failUntilRecovered(503);
    await connectAccount(suite.broker, 'pending-old', 'copyai');
    await receiver.waitFor('an attempt at the second', of('pending-old'));
    await connectAccount(suite.broker, 'recent', 'copyai');
    await suite.db.query(`UPDATE lifecycle_events SET occurred_at = now() - interval '31 days' WHERE account IN ('delivered-old', 'pending-old')`);

    const pruned = await suite.broker.app.get(WebhookDispatcher).prune(new Date());

    expect(pruned).toBe(1);
    const left: Array<{ account: string }> = await suite.db.query(`SELECT account FROM lifecycle_events ORDER BY account`);
    expect(left.map((row) => row.account)).toEqual(['pending-old', 'recent']);
    const deliveries: Array<{ n: number }> = await suite.db.query(`SELECT count(*)::int AS n FROM webhook_deliveries`);
    expect(deliveries[0].n).toBe(2);
    receiver.recover();
  });
});
