/**
 * Proactive refresh (DESIGN guarantee 4) in simulated time: one ManualClock drives the broker
 * and the sandbox, the scheduler is off, and the test runs the sweep after each clock step.
 * Nobody reads a token: whatever keeps them valid is the sweep.
 */
import { ManualClock } from '@app/common';
import { JITTER_FRACTION, LIFETIME_FRACTION, MIN_LEAD_MS, RefreshSweeper, SweepReport } from '@app/refresh';
import { DataSource } from 'typeorm';
import { ProviderSandbox, SandboxProvider } from '../../apps/provider-sandbox/src/provider-sandbox';
import { connectAccount } from '../support/connect-dance';
import { useBrokerSuite } from '../support/broker-suite';
import { TestBroker } from '../support/test-broker';
import { acceptedBySandbox, ms, refreshRows, storedAccessToken } from './refresh-fixtures';

const STEP_MS = 10_000;
const TEN_MINUTES_MS = 10 * 60_000;

describe('refresh sweep, simulated time', () => {
  const clock = new ManualClock(Date.now());
  const suite = useBrokerSuite({ clock });
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let db: DataSource;
  beforeAll(() => ({ sandbox, broker, db } = suite));

  const connect = (account: string, provider: SandboxProvider): Promise<void> => connectAccount(broker, account, provider);
  const sweep = (): Promise<SweepReport> => broker.app.get(RefreshSweeper).sweep();

  it('keeps 2-minute Copy.ai and Copper tokens valid for 10 minutes without a single read', async () => {
    sandbox.configure('copyai', { tokenLifetimeSec: 120 });
    // Copper documents non-expiring tokens, but a response with expires_in + refresh_token must be honoured.
    sandbox.configure('copper', { tokenLifetimeSec: 120, issueRefreshToken: true });
    const accounts = ['a1', 'a2', 'a3', 'a4'];
    for (const account of accounts) {
      await connect(account, 'copyai');
      await connect(account, 'copper');
    }
    const connected = await refreshRows(db);
    expect(connected).toHaveLength(8);
    expect(connected.every((r) => r.next_refresh_at !== null && ms(r.expires_at) === clock.nowMs() + 120_000)).toBe(true);

    let refreshedBySweeps = 0;
    let leastHeadroomMs = Infinity;
    const expiredAt: string[] = [];
    for (let elapsed = STEP_MS; elapsed <= TEN_MINUTES_MS; elapsed += STEP_MS) {
      clock.advance(STEP_MS);
      const report = await sweep();
      refreshedBySweeps += report.outcomes.refreshed ?? 0;
      for (const row of await refreshRows(db)) {
        const headroom = ms(row.expires_at) - clock.nowMs();
        leastHeadroomMs = Math.min(leastHeadroomMs, headroom);
        if (!(headroom > 0) || row.status !== 'active') expiredAt.push(`${row.provider}/${row.account} at +${elapsed / 1000}s (${row.status})`);
      }
    }
    expect(expiredAt).toEqual([]);
    // Refreshed a sweep step or more before expiry, not at the last moment.
    expect(leastHeadroomMs).toBeGreaterThanOrEqual(STEP_MS);

    const rows = await refreshRows(db);
    // ~every 100 s (planned at 75-80 % of 120 s, picked up by the next 10 s step): 6 refreshes each in 10 min.
    // (saveConnected leaves a new row at version 2; each refresh adds one.)
    const refreshCounts = rows.map((r) => ({ row: `${r.provider}/${r.account}`, refreshes: r.version - 2 }));
    expect(refreshCounts.filter((c) => c.refreshes < 5 || c.refreshes > 7)).toEqual([]);
    for (const row of rows) expect(row).toMatchObject({ status: 'active', refresh_failures: 0, last_error_code: null, lease_owner: null });
    const stats = sandbox.stats();
    const refreshCalls = stats.tokenRequests.copyai.refresh + stats.tokenRequests.copper.refresh;
    expect(refreshCalls).toBe(refreshedBySweeps);
    expect(refreshCalls).toBe(rows.reduce((sum, r) => sum + r.version - 2, 0));
    expect(stats.tokenRequests.copyai.refresh).toBeGreaterThanOrEqual(4 * 5);
    expect(stats.tokenRequests.copper.refresh).toBeGreaterThanOrEqual(4 * 5);
    expect(stats.invalidGrants).toBe(0);
    expect(stats.duplicateRefreshUses).toBe(0);

    // The token each row holds now is the one the provider accepts now.
    for (const row of rows) {
      const token = await storedAccessToken(broker, row.account, row.provider);
      expect({ row: `${row.provider}/${row.account}`, accepted: await acceptedBySandbox(sandbox, row.provider as SandboxProvider, token) }).toEqual({
        row: `${row.provider}/${row.account}`,
        accepted: true,
      });
    }
  });

  it('never sweeps tokens that do not expire (Copernica, Copper without expires_in)', async () => {
    await connect('c1', 'copernica');
    await connect('c2', 'copernica');
    await connect('c1', 'copper');
    await connect('c2', 'copper');
    // A Copy.ai connection beside them shows the sweeps really ran.
    sandbox.configure('copyai', { tokenLifetimeSec: 120 });
    await connect('c3', 'copyai');
    const before = await refreshRows(db);
    const nonExpiring = before.filter((r) => r.provider !== 'copyai');
    expect(nonExpiring).toHaveLength(4);
    expect(nonExpiring.every((r) => r.expires_at === null && r.next_refresh_at === null)).toBe(true);

    for (let elapsed = 0; elapsed < TEN_MINUTES_MS; elapsed += 4 * STEP_MS) {
      clock.advance(4 * STEP_MS);
      await sweep();
    }

    const stats = sandbox.stats();
    expect(stats.tokenRequests.copernica.refresh).toBe(0);
    expect(stats.tokenRequests.copper.refresh).toBe(0);
    expect(stats.tokenRequests.copyai.refresh).toBeGreaterThanOrEqual(4);
    const after = await refreshRows(db);
    for (const row of after.filter((r) => r.provider !== 'copyai')) {
      const was = before.find((r) => r.id === row.id)!;
      expect(row).toMatchObject({ status: 'active', version: was.version, next_refresh_at: null, last_refreshed_at: null });
      const token = await storedAccessToken(broker, row.account, row.provider);
      expect(await acceptedBySandbox(sandbox, row.provider as SandboxProvider, token)).toBe(true);
    }
  });

  it.each([
    ['2-minute', 120],
    ['1-hour', 3600],
  ])('spreads the refreshes of %s tokens connected together (jitter)', async (_label, lifetimeSec) => {
    sandbox.configure('copyai', { tokenLifetimeSec: lifetimeSec });
    const count = 8;
    for (let i = 0; i < count; i++) await connect(`batch-${i}`, 'copyai');
    const issuedAt = clock.nowMs();
    const lifetimeMs = lifetimeSec * 1000;
    const planned = (await refreshRows(db)).map((r) => ms(r.next_refresh_at) - issuedAt);

    // All at one instant of the manual clock, yet not one refresh time for all: at most one pair may coincide by chance.
    expect(new Set(planned).size).toBeGreaterThanOrEqual(count - 1);
    for (const offset of planned) {
      // Within the jitter window around the planned share of the lifetime, and never later than the lead allows.
      expect(offset).toBeGreaterThanOrEqual(lifetimeMs * (LIFETIME_FRACTION - JITTER_FRACTION));
      expect(offset).toBeLessThanOrEqual(lifetimeMs * (LIFETIME_FRACTION + JITTER_FRACTION));
      expect(offset).toBeLessThanOrEqual(lifetimeMs - Math.min(MIN_LEAD_MS, lifetimeMs * 0.2));
    }
  });
});
