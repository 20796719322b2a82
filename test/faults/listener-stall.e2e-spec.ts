/**
 * Guarantee 9: once a revoke is committed, no replica serves the old token for longer than a
 * few seconds, even when its change notifications silently stop arriving. The replica under
 * test reaches Postgres through a TCP proxy that freezes its LISTEN connection: no error, no
 * close, nothing delivered, as with a half-open connection behind a dead NAT entry.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { useBrokerSuite } from '../support/broker-suite';
import { connectAccount } from '../support/connect-dance';
import { TcpProxy } from '../support/tcp-proxy';
import { startProxiedTestBroker, TestBroker } from '../support/test-broker';

const LISTENER = 'token-broker-listener';

/** Reads until the status is `wanted` or the deadline passes; returns the last status seen. */
async function readUntil(broker: TestBroker, path: string, wanted: number, deadlineMs: number): Promise<number> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const status = (await broker.call(path, { as: 'service' })).status;
    if (status === wanted || Date.now() > deadline) return status;
    await sleep(200);
  }
}

describe('a replica whose change listener stalls silently', () => {
  const suite = useBrokerSuite();
  let proxy: TcpProxy;
  let replica: TestBroker;

  beforeAll(async () => {
    ({ broker: replica, proxy } = await startProxiedTestBroker({ ...suite.sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false' }));
  });

  afterAll(async () => {
    await replica?.close();
    await proxy?.close();
  });

  it('stops serving a token revoked on another replica within seconds, and trusts its cache again once a listener delivers', async () => {
    await connectAccount(suite.broker, 'acme-stall', 'copyai');
    const path = '/tokens/acme-stall?provider=copyai';
    expect((await replica.call(path, { as: 'service' })).status).toBe(200); // now cached on the replica

    expect(proxy.freeze(LISTENER)).toBe(1);
    const revoked = await suite.broker.call('/admin/connections/acme-stall/revoke?provider=copyai', { method: 'POST', as: 'admin' });
    expect(revoked.status).toBe(200);

    // Before the heartbeat, the replica served the cached token for the cache's whole TTL (minutes).
    expect(await readUntil(replica, path, 409, 15_000)).toBe(409);
    const body = (await (await replica.call(path, { as: 'service' })).json()) as { error: string };
    expect(body.error).toBe('revoked');

    // Reconnects stay frozen until the network heals; then a listener that delivers takes over,
    // and a change on the other replica reaches this one's cache through it.
    proxy.restore();
    await connectAccount(suite.broker, 'acme-stall', 'copyai');
    expect(await readUntil(replica, path, 200, 15_000)).toBe(200);
    const deadline = Date.now() + 15_000;
    while (proxy.count(LISTENER) === 0 && Date.now() < deadline) await sleep(100);
    expect(proxy.count(LISTENER)).toBeGreaterThanOrEqual(1);
    await sleep(1_500); // a heartbeat round trip on the new listener
    expect((await replica.call(path, { as: 'service' })).status).toBe(200);
    await suite.broker.call('/admin/connections/acme-stall/revoke?provider=copyai', { method: 'POST', as: 'admin' });
    expect(await readUntil(replica, path, 409, 5_000)).toBe(409);
  });
});
