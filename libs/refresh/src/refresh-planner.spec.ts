import { ManualClock } from '@app/common';
import { JITTER_FRACTION, LIFETIME_FRACTION, MIN_LEAD_MS, RefreshPlanner } from './refresh-planner';

describe('RefreshPlanner', () => {
  const issued = new Date(Date.UTC(2026, 0, 1));
  const after = (ms: number): Date => new Date(issued.getTime() + ms);
  const planner = (random: number): RefreshPlanner => new RefreshPlanner(new ManualClock(issued.getTime()), () => random);
  const offset = (planned: Date | null): number => planned!.getTime() - issued.getTime();

  it('plans nothing for tokens that do not expire or cannot be refreshed', () => {
    expect(planner(0.5).nextRefreshAt(null, true, issued)).toBeNull();
    expect(planner(0.5).nextRefreshAt(after(3_600_000), false, issued)).toBeNull();
  });

  it('jitters across the whole window, even for lifetimes whose lead would cut the window short', () => {
    for (const lifetimeMs of [120_000, 600_000, 3_600_000]) {
      const lead = Math.min(MIN_LEAD_MS, lifetimeMs * 0.2);
      const plans = [0, 0.5, 0.999].map((r) => offset(planner(r).nextRefreshAt(after(lifetimeMs), true, issued)));
      // Distinct for distinct draws: no draw is pinned to the latest allowed moment.
      expect(new Set(plans).size).toBe(3);
      expect(plans[0]).toBe(lifetimeMs * (LIFETIME_FRACTION - JITTER_FRACTION));
      for (const plan of plans) {
        expect(plan).toBeLessThanOrEqual(Math.min(lifetimeMs * (LIFETIME_FRACTION + JITTER_FRACTION), lifetimeMs - lead));
      }
    }
  });

  it('plans before a refresh token that dies before the access token', () => {
    const planned = offset(planner(0.5).nextRefreshAt(after(3_600_000), true, issued, after(300_000)));
    expect(planned).toBeLessThan(300_000 - 60_000 + 1);
    expect(planned).toBeGreaterThanOrEqual(300_000 * (LIFETIME_FRACTION - JITTER_FRACTION));
  });

  describe('after a refresh that kept a refresh token which expires', () => {
    it('plans one last refresh within the final lead window before it dies', () => {
      const planned = offset(planner(0.5).nextRefreshAtKeepingRefreshToken(after(3_600_000), issued, after(30 * 60_000)));
      expect(planned).toBeGreaterThanOrEqual(30 * 60_000 - MIN_LEAD_MS);
      expect(planned).toBeLessThanOrEqual(30 * 60_000 - MIN_LEAD_MS / 2);
    });

    it('once inside that window, plans by the access token only (no closing in on the deadline)', () => {
      const planned = offset(planner(0.5).nextRefreshAtKeepingRefreshToken(after(3_600_000), issued, after(MIN_LEAD_MS - 1)));
      expect(planned).toBe(offset(planner(0.5).nextRefreshAt(after(3_600_000), true, issued)));
    });

    it('plans by the access token when it comes due before the refresh token', () => {
      const planned = offset(planner(0.5).nextRefreshAtKeepingRefreshToken(after(3_600_000), issued, after(24 * 3_600_000)));
      expect(planned).toBe(3_600_000 * LIFETIME_FRACTION);
    });
  });
});
