/**
 * A replica without WEBHOOK_URLS records events but leaves them for replicas that have endpoints
 * (during a rolling change that adds the setting, say): it must not dispatch them to nobody.
 */
import { randomBytes } from 'node:crypto';
import { connectAccount } from '../support/connect-dance';
import { useBrokerSuite } from '../support/broker-suite';
import { eventually } from '../support/service-tier';
import { startTestBroker, TestBroker } from '../support/test-broker';
import { WebhookReceiver } from '../support/webhook-receiver';

describe('a replica without WEBHOOK_URLS', () => {
  // This suite's broker has no WEBHOOK_URLS.
  const suite = useBrokerSuite();
  let receiver: WebhookReceiver;
  let withEndpoint: TestBroker | undefined;
  beforeAll(async () => (receiver = await WebhookReceiver.start()));
  afterAll(async () => {
    await withEndpoint?.close();
    await receiver.close();
  });

  it('leaves recorded events undispatched, and a replica with an endpoint later delivers them', async () => {
    await connectAccount(suite.broker, 'acme', 'copyai');
    // Longer than the dispatchers' 1 s poll, and the NOTIFY reached this replica at once.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const rows: Array<{ type: string; dispatched: boolean }> = await suite.db.query(`SELECT type, dispatched FROM lifecycle_events`);
    expect(rows).toEqual([{ type: 'connection.connected', dispatched: false }]);

    withEndpoint = await startTestBroker({
      ...suite.sandbox.env(),
      REFRESH_SCHEDULER_ENABLED: 'false',
      WEBHOOK_URLS: `${receiver.url}/hooks`,
      WEBHOOK_SECRET: `whsec_${randomBytes(32).toString('base64')}`,
    });
    const [delivered] = await eventually('the event delivered by the replica with an endpoint', () => (receiver.acceptedIds().length > 0 ? receiver.received : undefined));
    expect(delivered.payload).toMatchObject({ type: 'connection.connected', data: { account: 'acme', provider: 'copyai' } });
  });
});
