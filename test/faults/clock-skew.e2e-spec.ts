/**
 * Guarantee 8: replicas compare leases and due times on the database's clock. A replica whose
 * host clock runs a minute ahead must still see another replica's refresh lease as held, and
 * wait for its result instead of presenting the same refresh token a second time.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { useBrokerSuite } from '../support/broker-suite';
import { BrokerProcess, startBrokerProcess } from '../support/broker-process';
import { connectAccount } from '../support/connect-dance';
import { TEST_SERVICE_KEY } from '../support/test-broker';

const SKEW_MS = 60_000;

describe('a replica whose clock runs a minute ahead', () => {
  const suite = useBrokerSuite();
  let ahead: BrokerProcess;

  beforeAll(async () => {
    ahead = await startBrokerProcess({ ...suite.sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false' }, { clockSkewMs: SKEW_MS });
  });

  afterAll(async () => {
    await ahead?.kill();
  });

  it('does not take the refresh lease another replica holds: one refresh, both reads get its token', async () => {
    await connectAccount(suite.broker, 'acme-skew', 'copyai');
    // The token has expired (for both replicas), so the next reads must refresh it.
    await suite.db.query(
      `UPDATE connections SET expires_at = now() - interval '1 minute', version = version + 1 WHERE account = 'acme-skew'`,
    );
    suite.sandbox.configure('copyai', { latencyMs: 3_000 });
    suite.sandbox.resetStats();

    const path = '/tokens/acme-skew?provider=copyai';
    const onTimeRead = suite.broker.call(path, { as: 'service' });
    // The on-time replica holds the lease (30 s, by the database's clock) and waits for the provider.
    const deadline = Date.now() + 10_000;
    while (suite.sandbox.stats().tokenRequests.copyai.refresh === 0 && Date.now() < deadline) await sleep(20);
    expect(suite.sandbox.stats().tokenRequests.copyai.refresh).toBe(1);
    const aheadRead = fetch(`${ahead.url}${path}`, { headers: { authorization: `Bearer ${TEST_SERVICE_KEY}` } });

    const [onTime, fromAhead] = await Promise.all([onTimeRead, aheadRead]);
    expect(onTime.status).toBe(200);
    expect(fromAhead.status).toBe(200);
    const [a, b] = (await Promise.all([onTime.json(), fromAhead.json()])) as Array<{ accessToken: string }>;
    expect(b.accessToken).toBe(a.accessToken);
    const stats = suite.sandbox.stats();
    expect(stats.tokenRequests.copyai.refresh).toBe(1);
    expect(stats.duplicateRefreshUses).toBe(0);
    expect(stats.invalidGrants).toBe(0);
  });
});
