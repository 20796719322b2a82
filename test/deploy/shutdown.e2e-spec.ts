/**
 * SIGTERM as Kubernetes sends it (DESIGN "Running it"), to a real broker process in the middle
 * of a sweep: readiness turns 503 at once while the listener keeps answering for the drain, then
 * the sweep's refreshes in flight finish, every lease goes back, the usage of reads made during
 * the drain is written, and the process exits 0 within the grace period.
 */
import { DataSource } from 'typeorm';
import { ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { BrokerProcess, startBrokerProcess } from '../support/broker-process';
import { TEST_SERVICE_KEY } from '../support/test-broker';
import { openTestDataSource, truncateAll } from '../support/test-database';
import { refreshRows, seedDueConnections, waitFor } from '../refresh/refresh-fixtures';

const DRAIN_MS = 3_000;
const TIMEOUT_MS = 15_000;

describe('shutdown on SIGTERM', () => {
  let sandbox: ProviderSandbox;
  let db: DataSource;
  let broker: BrokerProcess | undefined;

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    db = await openTestDataSource();
  });
  afterEach(async () => {
    await broker?.kill();
    broker = undefined;
  });
  afterAll(async () => {
    await sandbox?.close();
    await db?.destroy();
  });
  beforeEach(async () => {
    await truncateAll(db);
    sandbox.reset();
  });

  it('drains (readiness 503 within 1 s, requests still answered), finishes the sweep, releases every lease, flushes usage and exits 0', async () => {
    // Enough slow refreshes that the sweep is still running, leases held, when the signal comes.
    sandbox.configure('copyai', { latencyMs: 300 });
    const seeded = await seedDueConnections(db, sandbox, 60);
    sandbox.resetStats();
    broker = await startBrokerProcess({
      ...sandbox.env(),
      LOG_LEVEL: 'info',
      REFRESH_SCHEDULER_ENABLED: 'true',
      REFRESH_SWEEP_INTERVAL_MS: '200',
      REFRESH_CONCURRENCY: '4',
      REFRESH_BATCH_SIZE: '4',
      SHUTDOWN_DRAIN_MS: String(DRAIN_MS),
      SHUTDOWN_TIMEOUT_MS: String(TIMEOUT_MS),
    });
    const child = broker;
    await waitFor('the sweep to hold leases', async () => ((await refreshRows(db)).some((r) => r.lease_owner !== null) ? true : undefined), 30_000, 20);

    const signalledAt = performance.now();
    child.signal('SIGTERM');

    // Readiness: 503 well before the drain ends, without waiting for a check.
    const notReady = await waitFor(
      'readiness to answer 503',
      async () => {
        const response = await fetch(`${child.url}/health/ready`);
        return response.status === 503 ? { response, at: performance.now() } : undefined;
      },
      DRAIN_MS,
      25,
    );
    expect(notReady.at - signalledAt).toBeLessThan(1_000);
    expect(await notReady.response.json()).toMatchObject({ statusCode: 503, error: 'not_ready', message: 'not ready: shutting down' });
    expect(notReady.response.headers.get('retry-after')).not.toBeNull();

    // Still answering: liveness, and a token read (its usage is pending, to be flushed at exit).
    const live = await fetch(`${child.url}/health/live`);
    expect(live.status).toBe(200);
    const reader = seeded[seeded.length - 1].account;
    const read = await fetch(`${child.url}/tokens/${reader}?provider=copyai`, { headers: { authorization: `Bearer ${TEST_SERVICE_KEY}` } });
    expect(read.status).toBe(200);
    expect(((await read.json()) as { account: string }).account).toBe(reader);
    // A keep-alive client is asked to reconnect, which takes it to another replica.
    expect(read.headers.get('connection')).toBe('close');
    expect(performance.now() - signalledAt).toBeLessThan(DRAIN_MS);

    // Exit 0 within the grace period the manifests give (drain + timeout, well below it here).
    const exited = await Promise.race([child.exit.then(() => true), sleep(DRAIN_MS + TIMEOUT_MS).then(() => false)]);
    expect({ exited, code: child.exitCode(), output: exited && child.exitCode() !== 0 ? child.output() : '' }).toEqual({ exited: true, code: 0, output: '' });
    expect(performance.now() - signalledAt).toBeGreaterThanOrEqual(DRAIN_MS);

    // Nothing left locked, nothing refreshed twice, and the drain-time read's usage written.
    const rows = await refreshRows(db);
    expect(rows.filter((r) => r.lease_owner !== null)).toEqual([]);
    const stats = sandbox.stats();
    expect(stats.duplicateRefreshUses).toBe(0);
    expect(stats.invalidGrants).toBe(0);
    const [usage] = await db.query<Array<{ last_used_at: Date | null }>>(`SELECT last_used_at FROM connections WHERE account = $1 AND provider = 'copyai'`, [reader]);
    expect(usage.last_used_at).not.toBeNull();
    expect(child.output()).toContain('draining: readiness answers 503');
    expect(child.output()).toContain('shut down cleanly');

    // The listener is gone.
    await expect(fetch(`${child.url}/health/live`)).rejects.toThrow();
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
