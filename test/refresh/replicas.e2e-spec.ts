/**
 * The sweep across replicas (DESIGN guarantees 3 and 8), on the real clock: several brokers on
 * one Postgres share the due connections through leases and never refresh one twice; a replica
 * that dies (SIGKILL) or shuts down mid-sweep loses nothing; a read racing the sweep for the
 * same connection waits for it instead of spending the refresh token a second time.
 * Rotation is on throughout: a refresh token presented twice would be an invalid_grant.
 */
import { RefreshSweeper, SweepReport } from '@app/refresh';
import { DataSource } from 'typeorm';
import { ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { BrokerProcess, startBrokerProcess } from '../support/broker-process';
import { startTestBroker, TestBroker } from '../support/test-broker';
import { openTestDataSource, truncateAll } from '../support/test-database';
import { SeededConnection } from '../support/seed-connections';
import {
  acceptedBySandbox,
  mapLimit,
  ms,
  RefreshRow,
  refreshRow,
  refreshRows,
  seedDueConnections,
  storedAccessToken,
  storedAccessTokens,
  waitFor,
} from './refresh-fixtures';

/** saveConnected (and the seeder) leave a new row at version 2; each refresh adds one. */
const SEEDED_VERSION = 2;

describe('refresh sweep across replicas', () => {
  let sandbox: ProviderSandbox;
  let db: DataSource;
  const started: TestBroker[] = [];
  let child: BrokerProcess | undefined;

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    db = await openTestDataSource();
  });
  afterEach(async () => {
    await child?.kill();
    child = undefined;
    for (const broker of started.splice(0)) await broker.close();
  });
  afterAll(async () => {
    await sandbox?.close();
    await db?.destroy();
  });
  beforeEach(async () => {
    await truncateAll(db);
    sandbox.reset();
  });

  const replica = async (env: Record<string, string> = {}): Promise<TestBroker> => {
    const broker = await startTestBroker({
      ...sandbox.env(),
      REFRESH_SCHEDULER_ENABLED: 'false',
      // The budget is not under test here; the default would stretch 2,000 refreshes over minutes.
      REFRESH_PROVIDER_BUDGET_PER_MINUTE: '1000000',
      ...env,
    });
    started.push(broker);
    return broker;
  };
  const sweep = (broker: TestBroker): Promise<SweepReport> => broker.app.get(RefreshSweeper).sweep();
  const refreshedOnce = (rows: RefreshRow[]): RefreshRow[] => rows.filter((r) => r.version === SEEDED_VERSION + 1);
  /**
   * Every stored token is new (not the seeded one, no two alike) and the provider accepts them
   * now (all of them, or an evenly spread sample of `checkAtProvider` when there are many).
   */
  const expectAllNewAndAccepted = async (broker: TestBroker, seeded: SeededConnection[], checkAtProvider = seeded.length): Promise<void> => {
    const stored = await storedAccessTokens(db, broker);
    expect(stored.size).toBe(seeded.length);
    expect(new Set(stored.values()).size).toBe(seeded.length);
    expect(seeded.filter(({ account, accessToken }) => stored.get(account) === accessToken).map((s) => s.account)).toEqual([]);
    const every = Math.max(1, Math.floor(seeded.length / checkAtProvider));
    const sample = seeded.filter((_, i) => i % every === 0);
    const refused = await mapLimit(sample, 8, async ({ account }) => ((await acceptedBySandbox(sandbox, 'copyai', stored.get(account)!)) ? null : account));
    expect(refused.filter((account) => account !== null)).toEqual([]);
  };

  it('three replicas sweep 2,000 due tokens together: each refreshed exactly once, the work shared', async () => {
    sandbox.configure('copyai', { latencyMs: 5 });
    const seeded = await seedDueConnections(db, sandbox, 2000);
    sandbox.resetStats();
    const replicas = await Promise.all([replica(), replica(), replica()]);

    const reports = await Promise.all(replicas.map(sweep));

    const refreshed = reports.map((r) => r.outcomes.refreshed ?? 0);
    expect(refreshed.reduce((a, b) => a + b, 0)).toBe(2000);
    expect(reports.map((r) => r.claimed).reduce((a, b) => a + b, 0)).toBe(2000);
    expect(reports.every((r) => Object.keys(r.outcomes).every((kind) => kind === 'refreshed'))).toBe(true);
    // Shared: every replica did part of it.
    expect(refreshed.every((n) => n > 0)).toBe(true);
    const stats = sandbox.stats();
    expect(stats.tokenRequests.copyai.refresh).toBe(2000);
    expect(stats.duplicateRefreshUses).toBe(0);
    expect(stats.invalidGrants).toBe(0);

    const rows = await refreshRows(db);
    expect(rows).toHaveLength(2000);
    expect(refreshedOnce(rows)).toHaveLength(2000);
    const now = Date.now();
    expect(rows.filter((r) => r.status !== 'active' || r.lease_owner !== null || r.refresh_failures !== 0 || !(ms(r.next_refresh_at) > now))).toEqual([]);
    await expectAllNewAndAccepted(replicas[0], seeded, 200);
  });

  it('a replica killed (SIGKILL) mid-sweep loses nothing: its leases lapse and another replica finishes', async () => {
    const count = 150;
    sandbox.configure('copyai', { latencyMs: 200 });
    const seeded = await seedDueConnections(db, sandbox, count);
    sandbox.resetStats();
    child = await startBrokerProcess({
      ...sandbox.env(),
      REFRESH_SCHEDULER_ENABLED: 'true',
      REFRESH_SWEEP_INTERVAL_MS: '200',
      REFRESH_CONCURRENCY: '5',
      REFRESH_BATCH_SIZE: '10',
      REFRESH_LEASE_MS: '3000',
    });
    const childPid = String(child.pid);
    const heldByChild = (rows: RefreshRow[]): RefreshRow[] => rows.filter((r) => r.lease_owner?.split(':')[1] === childPid);

    // Mid-sweep: the child has refreshed some rows and holds leases on others.
    await waitFor('the child to be part-way through its sweep', async () => {
      const rows = await refreshRows(db);
      return refreshedOnce(rows).length >= 10 && heldByChild(rows).length > 0 ? true : undefined;
    });
    // Freeze the provider before the kill. A rotating refresh the provider has carried out but
    // whose answer dies with the process cannot be recovered by anyone (the new refresh token is
    // gone), so the kill must not land between the provider's answer and the row's update.
    // Requests arriving (or still in their latency) from now on hang unanswered and unprocessed,
    // as if the process died with them in flight; then wait until every answered refresh is stored.
    sandbox.failUntilCleared('copyai', { kind: 'timeout' });
    const atKill = await waitFor('every answered refresh to be stored', async () => {
      const rows = await refreshRows(db);
      const stats = sandbox.stats().tokenRequests.copyai;
      return refreshedOnce(rows).length === stats.refresh - stats.failuresInjected ? rows : undefined;
    });
    const orphaned = heldByChild(atKill);
    expect(orphaned.length).toBeGreaterThan(0);
    // Part-way indeed: some rows were never even claimed by the child.
    expect(atKill.filter((r) => r.version === SEEDED_VERSION && r.lease_owner === null).length).toBeGreaterThan(0);
    const refreshedByChild = refreshedOnce(atKill).length;

    await child.kill();
    sandbox.clearFailures('copyai');

    const survivor = await replica();
    const reports: SweepReport[] = [];
    // The dead child's leases (3 s) keep its rows from everyone until they lapse: sweep until done.
    await waitFor('the survivor to refresh every row', async () => {
      reports.push(await sweep(survivor));
      return refreshedOnce(await refreshRows(db)).length === count ? true : undefined;
    }, 60_000, 250);

    const rows = await refreshRows(db);
    expect(rows).toHaveLength(count);
    expect(rows.filter((r) => r.status !== 'active' || r.version !== SEEDED_VERSION + 1 || r.lease_owner !== null)).toEqual([]);
    expect(reports.reduce((sum, r) => sum + (r.outcomes.refreshed ?? 0), 0)).toBe(count - refreshedByChild);
    const orphanedIds = new Set(orphaned.map((r) => r.id));
    expect(rows.filter((r) => orphanedIds.has(r.id) && r.last_refreshed_at === null)).toEqual([]);
    const stats = sandbox.stats();
    // Answered refreshes: exactly one per row (the hung ones were never carried out).
    expect(stats.tokenRequests.copyai.refresh - stats.tokenRequests.copyai.failuresInjected).toBe(count);
    expect(stats.invalidGrants).toBe(0);
    expect(stats.duplicateRefreshUses).toBe(0);
    await expectAllNewAndAccepted(survivor, seeded);
  });

  it('a replica shut down mid-sweep finishes its calls, gives back every lease, and loses nothing', async () => {
    // 100 rows × 300 ms / 5 at a time: a 6 s sweep, cut short after the first few.
    const count = 100;
    sandbox.configure('copyai', { latencyMs: 300 });
    const seeded = await seedDueConnections(db, sandbox, count);
    sandbox.resetStats();
    const leaving = await replica({ REFRESH_CONCURRENCY: '5' });
    const sweeping = sweep(leaving);
    await waitFor('the sweep to be part-way', async () => {
      const rows = await refreshRows(db);
      return refreshedOnce(rows).length >= 5 && rows.some((r) => r.lease_owner !== null) ? true : undefined;
    });

    await leaving.close();
    started.splice(started.indexOf(leaving), 1);
    const report = await sweeping;

    const afterClose = await refreshRows(db);
    expect(afterClose.filter((r) => r.lease_owner !== null || r.lease_expires_at !== null)).toEqual([]);
    expect(afterClose.filter((r) => r.status !== 'active')).toEqual([]);
    const refreshedBeforeClose = refreshedOnce(afterClose).length;
    expect(report.outcomes.refreshed).toBe(refreshedBeforeClose);
    expect(refreshedBeforeClose).toBeLessThan(count);
    // Every call it started was finished and stored: none lost in flight.
    expect(sandbox.stats().tokenRequests.copyai.refresh).toBe(refreshedBeforeClose);

    // Released, not merely lapsed: another replica takes the rest at once (leases would hold for 30 s).
    const next = await replica();
    sandbox.configure('copyai', { latencyMs: 0 });
    const rest = await sweep(next);
    expect(rest.outcomes).toEqual({ refreshed: count - refreshedBeforeClose });
    const rows = await refreshRows(db);
    expect(refreshedOnce(rows)).toHaveLength(count);
    expect(sandbox.stats()).toMatchObject({ invalidGrants: 0, duplicateRefreshUses: 0 });
    await expectAllNewAndAccepted(next, seeded);
  });

  it('a read of a connection the sweep has claimed waits for the sweep instead of refreshing it too', async () => {
    // 20-minute tokens: a read asking for 25 minutes of validity needs a refresh; a refreshed (1-hour) token does not.
    const seeded = await seedDueConnections(db, sandbox, 6, 1200);
    sandbox.resetStats();
    // One call at a time: the sweep claims the first two rows in due order, calls the provider for
    // the first (slow) and keeps the second queued, leased to it, until that call is back.
    sandbox.configure('copyai', { latencyMs: 3000 });
    const broker = await replica({ REFRESH_CONCURRENCY: '1' });
    const sweeping = sweep(broker);
    const queued = seeded[1].account;
    await waitFor(`${queued} to be claimed`, async () => ((await refreshRow(db, queued, 'copyai')).lease_owner !== null ? true : undefined), 30_000, 10);
    await waitFor('the sweep’s first call to reach the provider', async () => (sandbox.stats().tokenRequests.copyai.refresh >= 1 ? true : undefined), 30_000, 10);
    // The first row's call is out (claims come back oldest due first), the queued row's is not.
    expect(sandbox.stats().tokenRequests.copyai.refresh).toBe(1);
    // From now on a call is quick: a read refreshing on its own would be done long before the sweep's first call returns.
    sandbox.configure('copyai', { latencyMs: 0 });
    const read = await broker.call(`/tokens/${queued}?provider=copyai&minValidity=1500`, { as: 'service' });
    expect(read.status).toBe(200);
    const report = await sweeping;
    expect(report.claimed).toBe(6);
    const rows = await refreshRows(db);
    expect(rows.filter((r) => r.status !== 'active' || r.version !== SEEDED_VERSION + 1 || r.lease_owner !== null)).toEqual([]);
    const served = (await read.json()) as { accessToken: string };
    expect(served.accessToken).toBe(await storedAccessToken(broker, queued, 'copyai'));
    expect(sandbox.stats()).toMatchObject({ invalidGrants: 0, duplicateRefreshUses: 0 });
    expect(sandbox.stats().tokenRequests.copyai.refresh).toBe(6);
    await expectAllNewAndAccepted(broker, seeded);
  });
});
