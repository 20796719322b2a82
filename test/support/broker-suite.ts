/**
 * The setup most end-to-end suites share: a provider sandbox, a broker on it (with the refresh
 * scheduler off unless `env` turns it on), a connection to the test database, and a clean slate
 * (empty tables, sandbox reset) before each test. Call it inside `describe`; the fields are set
 * once its `beforeAll` has run, so suites read them in their own hooks and tests.
 */
import { ManualClock } from '@app/common';
import { BrokerLogger } from '@app/observability';
import { DataSource } from 'typeorm';
import { ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { startTestBroker, TestBroker } from './test-broker';
import { openTestDataSource, truncateAll } from './test-database';

export interface BrokerSuite {
  sandbox: ProviderSandbox;
  broker: TestBroker;
  db: DataSource;
}

export function useBrokerSuite(options: { env?: Record<string, string>; clock?: ManualClock; logger?: BrokerLogger } = {}): BrokerSuite {
  const suite = {} as BrokerSuite;
  const { clock, logger } = options;
  beforeAll(async () => {
    // Empty before the broker starts too: its webhook dispatcher would pick up events other suites left.
    suite.db = await openTestDataSource();
    await truncateAll(suite.db);
    suite.sandbox = await startProviderSandbox(clock ? { clock: () => clock.nowMs() } : {});
    suite.broker = await startTestBroker({ ...suite.sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false', ...options.env }, { clock, logger });
  });
  afterAll(async () => {
    await suite.broker?.close();
    await suite.sandbox?.close();
    await suite.db?.destroy();
  });
  beforeEach(async () => {
    await truncateAll(suite.db);
    suite.sandbox.reset();
  });
  return suite;
}
