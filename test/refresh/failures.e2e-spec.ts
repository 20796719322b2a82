/**
 * What the sweep does when a refresh fails (DESIGN guarantee 5), in simulated time: transient
 * failures back off (growing, jittered, honouring Retry-After) without hammering the provider
 * while the stored token keeps being served; invalid_grant ends the connection's refreshes for
 * good; invalid_client leaves the connection intact. And refresh tokens that expire themselves.
 */
import { ManualClock } from '@app/common';
import { BACKOFF_BASE_MS, MISCONFIGURED_RETRY_MS, RefreshSweeper, SweepReport } from '@app/refresh';
import { DataSource } from 'typeorm';
import { ProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { connectAccount } from '../support/connect-dance';
import { useBrokerSuite } from '../support/broker-suite';
import { TestBroker } from '../support/test-broker';
import { acceptedBySandbox, ms, RefreshRow, refreshRow, storedAccessToken } from './refresh-fixtures';

describe('refresh sweep failures, simulated time', () => {
  const clock = new ManualClock(Date.now());
  const suite = useBrokerSuite({ clock });
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let db: DataSource;
  beforeAll(() => ({ sandbox, broker, db } = suite));

  const connect = async (account: string): Promise<RefreshRow> => {
    await connectAccount(broker, account, 'copyai');
    return row(account);
  };
  const row = (account: string): Promise<RefreshRow> => refreshRow(db, account, 'copyai');
  const sweep = (): Promise<SweepReport> => broker.app.get(RefreshSweeper).sweep();
  const refreshCalls = (): number => sandbox.stats().tokenRequests.copyai.refresh;
  /** Moves the clock to the row's planned refresh time (never backwards). */
  const untilDue = async (account: string): Promise<void> => {
    const { next_refresh_at } = await row(account);
    if (next_refresh_at === null) throw new Error(`${account} has no planned refresh`);
    clock.set(Math.max(clock.nowMs(), ms(next_refresh_at)));
  };
  const read = async (account: string): Promise<{ status: number; accessToken?: string }> => {
    const response = await broker.call(`/tokens/${account}?provider=copyai`, { as: 'service' });
    return { status: response.status, ...((await response.json()) as { accessToken?: string }) };
  };

  it('backs off a provider answering 503, growing and without hammering it, keeps serving, and recovers', async () => {
    await connect('acme');
    const served = await read('acme');
    expect(served.status).toBe(200);
    await untilDue('acme');
    sandbox.failUntilCleared('copyai', { kind: 'status', status: 503 });

    const delays: number[] = [];
    for (let failure = 1; failure <= 4; failure++) {
      const callsBefore = refreshCalls();
      const failedAt = clock.nowMs();
      const report = await sweep();
      expect(report.outcomes).toEqual({ transient: 1 });
      expect(refreshCalls()).toBe(callsBefore + 1);
      const failed = await row('acme');
      expect(failed).toMatchObject({ status: 'active', refresh_failures: failure, last_error_code: 'provider_unavailable', lease_owner: null });
      expect(failed.last_error_message).toContain('503');
      const delay = ms(failed.next_refresh_at) - clock.nowMs();
      // Exponential with jitter: the n-th consecutive failure waits between half and all of base × 2^(n-1).
      expect(delay).toBeGreaterThanOrEqual((BACKOFF_BASE_MS * 2 ** (failure - 1)) / 2);
      expect(delay).toBeLessThanOrEqual(BACKOFF_BASE_MS * 2 ** (failure - 1));
      delays.push(delay);

      // Within the backoff window: sweeps (and reads) do not call the provider again, and the still-valid token is served.
      for (const fraction of [0, 0.25, 0.5, 0.9]) {
        clock.set(failedAt + delay * fraction);
        const idle = await sweep();
        expect(idle.claimed).toBe(0);
      }
      const meanwhile = await read('acme');
      expect(meanwhile).toMatchObject({ status: 200, accessToken: served.accessToken });
      expect(refreshCalls()).toBe(callsBefore + 1);
      await untilDue('acme');
    }
    for (let i = 1; i < delays.length; i++) expect(delays[i]).toBeGreaterThanOrEqual(delays[i - 1]);
    expect(delays[3]).toBeGreaterThan(delays[0]);

    sandbox.clearFailures('copyai');
    const report = await sweep();
    expect(report.outcomes).toEqual({ refreshed: 1 });
    const recovered = await row('acme');
    expect(recovered).toMatchObject({ status: 'active', refresh_failures: 0, last_error_code: null, last_error_message: null });
    expect(ms(recovered.next_refresh_at)).toBeGreaterThan(clock.nowMs() + 30 * 60_000);
    const token = await storedAccessToken(broker, 'acme', 'copyai');
    expect(token).not.toBe(served.accessToken);
    expect(await acceptedBySandbox(sandbox, 'copyai', token)).toBe(true);
    expect(sandbox.stats()).toMatchObject({ invalidGrants: 0, duplicateRefreshUses: 0 });
  });

  it('honours Retry-After from a 429', async () => {
    await connect('acme');
    await untilDue('acme');
    sandbox.failNext('copyai', { kind: 'status', status: 429, retryAfterSec: 900 });
    const report = await sweep();
    expect(report.outcomes).toEqual({ transient: 1 });
    const limited = await row('acme');
    expect(limited).toMatchObject({ refresh_failures: 1, last_error_code: 'provider_unavailable' });
    expect(ms(limited.next_refresh_at)).toBeGreaterThanOrEqual(clock.nowMs() + 900_000);
    const calls = refreshCalls();

    clock.advance(899_000);
    expect((await sweep()).claimed).toBe(0);
    expect(refreshCalls()).toBe(calls);

    await untilDue('acme');
    expect((await sweep()).outcomes).toEqual({ refreshed: 1 });
    expect(refreshCalls()).toBe(calls + 1);
    expect(await row('acme')).toMatchObject({ status: 'active', refresh_failures: 0, last_error_code: null });
  });

  it('invalid_grant makes the connection needs_reauth and no later sweep calls the provider for it', async () => {
    await connect('acme');
    await connect('globex');
    await untilDue('acme');
    await untilDue('globex');
    sandbox.failNext('copyai', { kind: 'status', status: 400, error: 'invalid_grant' });
    const report = await sweep();
    expect(report.claimed).toBe(2);
    expect(report.outcomes).toEqual({ needs_reauth: 1, refreshed: 1 });
    const rows = [await row('acme'), await row('globex')];
    const dead = rows.find((r) => r.status === 'needs_reauth')!;
    expect(dead).toMatchObject({ last_error_code: 'invalid_grant', next_refresh_at: null, lease_owner: null });
    const alive = rows.find((r) => r.status === 'active')!;

    // A day later, with the live one refreshed all along, the dead one was never tried again.
    const callsPerLive: number[] = [];
    for (let hour = 0; hour < 24; hour++) {
      const before = refreshCalls();
      clock.advance(60 * 60_000);
      await sweep();
      callsPerLive.push(refreshCalls() - before);
    }
    expect(callsPerLive.every((calls) => calls === 1)).toBe(true);
    expect(await row(dead.account)).toMatchObject({ status: 'needs_reauth', version: dead.version });
    expect((await row(alive.account)).status).toBe('active');
    expect((await read(dead.account)).status).toBe(409);
    expect(sandbox.stats().invalidGrants).toBe(0);
  });

  it('invalid_client keeps the connection active and looks again only minutes later', async () => {
    await connect('acme');
    await untilDue('acme');
    sandbox.failUntilCleared('copyai', { kind: 'status', status: 401, error: 'invalid_client' });
    expect((await sweep()).outcomes).toEqual({ misconfigured: 1 });
    const failed = await row('acme');
    expect(failed).toMatchObject({ status: 'active', last_error_code: 'invalid_client', lease_owner: null });
    expect(ms(failed.next_refresh_at)).toBe(clock.nowMs() + MISCONFIGURED_RETRY_MS);
    const calls = refreshCalls();
    for (let minute = 1; minute < MISCONFIGURED_RETRY_MS / 60_000; minute++) {
      clock.advance(60_000);
      await sweep();
    }
    expect(refreshCalls()).toBe(calls);
    sandbox.clearFailures('copyai');
    await untilDue('acme');
    expect((await sweep()).outcomes).toEqual({ refreshed: 1 });
  });

  it('refreshes before a rotating refresh token expires, so it never dies', async () => {
    // 1-hour access tokens, but refresh tokens that live 5 minutes: the refresh token sets the pace.
    sandbox.configure('copyai', { tokenLifetimeSec: 3600, refreshTokenLifetimeSec: 300, rotateRefreshTokens: true });
    const connected = await connect('acme');
    expect(ms(connected.refresh_token_expires_at)).toBe(clock.nowMs() + 300_000);
    expect(ms(connected.next_refresh_at)).toBeLessThan(ms(connected.refresh_token_expires_at));

    const before = refreshCalls();
    for (let step = 0; step < 90; step++) {
      clock.advance(20_000);
      await sweep();
      const current = await row('acme');
      expect(current.status).toBe('active');
      expect(ms(current.refresh_token_expires_at)).toBeGreaterThan(clock.nowMs());
    }
    // 30 minutes at one refresh per 225-240 s (+ up to one 20 s step): 7 or 8 refreshes, no more.
    expect(refreshCalls() - before).toBeGreaterThanOrEqual(7);
    expect(refreshCalls() - before).toBeLessThanOrEqual(8);
    expect(sandbox.stats()).toMatchObject({ invalidGrants: 0, duplicateRefreshUses: 0 });
    expect(await acceptedBySandbox(sandbox, 'copyai', await storedAccessToken(broker, 'acme', 'copyai'))).toBe(true);
  });

  it('refreshes once before a non-rotating refresh token expires, then flags the connection without presenting the dead token', async () => {
    // The provider keeps the refresh token (no rotation) and it dies after 5 minutes: refreshing cannot extend it.
    sandbox.configure('copyai', { tokenLifetimeSec: 3600, refreshTokenLifetimeSec: 300, rotateRefreshTokens: false });
    const connected = await connect('acme');
    const refreshTokenDiesAt = ms(connected.refresh_token_expires_at);

    const before = refreshCalls();
    // 10 minutes: one refresh shortly before the refresh token dies, none after (nothing to gain).
    for (let step = 0; step < 60; step++) {
      clock.advance(10_000);
      await sweep();
      expect((await row('acme')).status).toBe('active');
    }
    expect(refreshCalls() - before).toBe(1);
    const refreshed = await row('acme');
    expect(ms(refreshed.last_refreshed_at)).toBeLessThan(refreshTokenDiesAt);
    expect(ms(refreshed.refresh_token_expires_at)).toBe(refreshTokenDiesAt);
    const lastToken = await storedAccessToken(broker, 'acme', 'copyai');
    expect(await acceptedBySandbox(sandbox, 'copyai', lastToken)).toBe(true);
    expect((await read('acme')).status).toBe(200);

    // When the next refresh comes due the refresh token is dead: flagged, and the provider never sees it.
    await untilDue('acme');
    expect((await sweep()).outcomes).toEqual({ needs_reauth: 1 });
    expect(await row('acme')).toMatchObject({ status: 'needs_reauth', last_error_code: 'refresh_token_expired', next_refresh_at: null });
    expect(refreshCalls() - before).toBe(1);
    expect(sandbox.stats()).toMatchObject({ invalidGrants: 0, duplicateRefreshUses: 0 });
  });
});
