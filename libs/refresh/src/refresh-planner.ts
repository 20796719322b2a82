import { Clock } from '@app/common';
import { Inject, Injectable, Optional } from '@nestjs/common';

/** DI token for the jitter's random source (tests pin it). */
export const JITTER_RANDOM = Symbol('JITTER_RANDOM');

/** Refresh when this share of a token's lifetime has passed, give or take JITTER. */
export const LIFETIME_FRACTION = 0.8;
export const JITTER_FRACTION = 0.05;
/** Never later than this before expiry (capped at a fifth of the lifetime for very short tokens). */
export const MIN_LEAD_MS = 120_000;

/**
 * When a token should be refreshed ahead of its expiry (DESIGN guarantee 4): derived from its
 * lifetime, jittered so a batch connected together does not refresh together. Tokens that do
 * not expire, or that cannot be refreshed, are never scheduled.
 */
@Injectable()
export class RefreshPlanner {
  private readonly random: () => number;

  constructor(
    private readonly clock: Clock,
    @Optional() @Inject(JITTER_RANDOM) random?: () => number,
  ) {
    this.random = random ?? Math.random;
  }

  /**
   * @param refreshTokenExpiresAt when the refresh token itself dies: the refresh is planned
   *   before that too, so a rotating provider hands out a new one in time.
   */
  nextRefreshAt(
    expiresAt: Date | null,
    refreshable: boolean,
    issuedAt: Date = this.clock.now(),
    refreshTokenExpiresAt: Date | null = null,
  ): Date | null {
    if (!refreshable) return null;
    const candidates = [expiresAt, refreshTokenExpiresAt]
      .filter((d): d is Date => d !== null)
      .map((deadline) => this.beforeDeadline(issuedAt.getTime(), deadline.getTime()));
    return candidates.length === 0 ? null : new Date(Math.min(...candidates));
  }

  /**
   * After a refresh that kept the stored refresh token (the provider did not rotate it): no
   * refresh can extend that token's life, so planning "before it dies" again and again would
   * only close in on its deadline in ever shorter steps. Its deadline earns one last refresh
   * shortly before it (in the final MIN_LEAD_MS, jittered), which buys the longest-lived access
   * token possible; once inside that window only the access token counts, and the refresh that
   * then comes due finds the refresh token dead and flags the connection without asking the
   * provider (RefreshEngine).
   */
  nextRefreshAtKeepingRefreshToken(expiresAt: Date | null, issuedAt: Date, refreshTokenExpiresAt: Date | null): Date | null {
    const issued = issuedAt.getTime();
    const forAccess = expiresAt === null ? null : this.beforeDeadline(issued, expiresAt.getTime());
    if (refreshTokenExpiresAt === null || refreshTokenExpiresAt.getTime() - issued <= MIN_LEAD_MS) {
      return forAccess === null ? null : new Date(forAccess);
    }
    const lastUseful = Math.round(refreshTokenExpiresAt.getTime() - MIN_LEAD_MS * (0.5 + 0.5 * this.random()));
    return new Date(forAccess === null ? lastUseful : Math.min(forAccess, lastUseful));
  }

  private beforeDeadline(issued: number, deadline: number): number {
    const lifetime = deadline - issued;
    if (lifetime <= 0) return issued;
    // The jitter window is clipped to the latest allowed moment before it is drawn from, not
    // the draw afterwards: clipping the draw would pin every token of a short lifetime
    // (under ~13 minutes) whose draw fell late onto one shared instant, i.e. half a batch
    // connected together would refresh together.
    const earliest = issued + lifetime * (LIFETIME_FRACTION - JITTER_FRACTION);
    const latest = Math.min(issued + lifetime * (LIFETIME_FRACTION + JITTER_FRACTION), deadline - Math.min(MIN_LEAD_MS, lifetime * 0.2));
    return Math.round(earliest + this.random() * Math.max(0, latest - earliest));
  }
}
