/**
 * The setup the webhook suites share: a WebhookReceiver, and a broker suite (useBrokerSuite)
 * whose WEBHOOK_URLS point at it (`path`, `/hooks` by default). The receiver starts before the
 * broker reads WEBHOOK_URLS (a getter defers the read), and is emptied and made healthy again
 * before each test. `env` adds the suite's own settings (WEBHOOK_SECRET, retry timing, ...).
 * Call it inside `describe`; the fields are set once its `beforeAll` hooks have run.
 */
import { ManualClock } from '@app/common';
import { BrokerSuite, useBrokerSuite } from './broker-suite';
import { WebhookReceiver } from './webhook-receiver';

export interface WebhookSuite {
  suite: BrokerSuite;
  receiver: WebhookReceiver;
}

export function useWebhookSuite(options: { path?: string; env?: Record<string, string>; clock?: ManualClock } = {}): WebhookSuite {
  const webhooks = {} as WebhookSuite;
  beforeAll(async () => (webhooks.receiver = await WebhookReceiver.start()));
  afterAll(() => webhooks.receiver?.close());
  webhooks.suite = useBrokerSuite({
    clock: options.clock,
    env: {
      get WEBHOOK_URLS() {
        return `${webhooks.receiver.url}${options.path ?? '/hooks'}`;
      },
      ...options.env,
    },
  });
  beforeEach(() => {
    webhooks.receiver.received.length = 0;
    webhooks.receiver.recover();
  });
  return webhooks;
}
