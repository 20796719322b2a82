/**
 * Guarantee 10: a refresh token the provider has rotated is never lost to a failed database
 * write. The broker reaches Postgres through a TCP proxy that cuts every connection while the
 * provider is answering the refresh, and accepts connections again a few seconds later.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { useBrokerSuite } from '../support/broker-suite';
import { connectAccount } from '../support/connect-dance';
import { TcpProxy } from '../support/tcp-proxy';
import { startProxiedTestBroker, TestBroker } from '../support/test-broker';

describe('the database fails right after the provider rotated a refresh token', () => {
  const suite = useBrokerSuite();
  let proxy: TcpProxy;
  let broker: TestBroker;

  beforeAll(async () => {
    ({ broker, proxy } = await startProxiedTestBroker({ ...suite.sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false' }));
  });

  afterAll(async () => {
    await broker?.close();
    await proxy?.close();
  });

  const expire = (account: string): Promise<unknown> =>
    suite.db.query(`UPDATE connections SET expires_at = now() - interval '1 minute', version = version + 1 WHERE account = $1`, [account]);

  it('keeps the issued tokens and stores them once the database is back; the new refresh token works', async () => {
    await connectAccount(broker, 'acme-outage', 'copyai');
    await expire('acme-outage');
    suite.sandbox.configure('copyai', { latencyMs: 1_500 });
    suite.sandbox.resetStats();

    const path = '/tokens/acme-outage?provider=copyai';
    const read = broker.call(path, { as: 'service' });
    const deadline = Date.now() + 10_000;
    while (suite.sandbox.stats().tokenRequests.copyai.refresh === 0 && Date.now() < deadline) await sleep(20);
    expect(suite.sandbox.stats().tokenRequests.copyai.refresh).toBe(1);
    proxy.cutAll(); // the provider is rotating the refresh token right now
    await sleep(3_000); // it has answered; every write of the new tokens fails meanwhile
    proxy.restore();

    const answer = await read;
    expect(answer.status).toBe(200);
    const served = (await answer.json()) as { accessToken: string };
    const check = await fetch(`${suite.sandbox.url}/copyai/_sandbox/check`, { headers: { authorization: `Bearer ${served.accessToken}` } });
    expect(check.status).toBe(200);

    // The stored refresh token is the rotated one: the next refresh succeeds.
    suite.sandbox.configure('copyai', { latencyMs: 0 });
    await expire('acme-outage');
    const again = await broker.call(path, { as: 'service' });
    expect(again.status).toBe(200);
    const stats = suite.sandbox.stats();
    expect(stats.tokenRequests.copyai.refresh).toBe(2);
    expect(stats.invalidGrants).toBe(0);
    const [row] = await suite.db.query<Array<{ status: string; lease_owner: string | null }>>(
      `SELECT status, lease_owner FROM connections WHERE account = 'acme-outage'`,
    );
    expect(row).toEqual({ status: 'active', lease_owner: null });
  });
});
