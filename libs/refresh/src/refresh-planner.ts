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

  nextRefreshAt(expiresAt: Date | null, refreshable: boolean, issuedAt: Date = this.clock.now()): Date | null {
    if (!expiresAt || !refreshable) return null;
    const issued = issuedAt.getTime();
    const lifetime = expiresAt.getTime() - issued;
    if (lifetime <= 0) return new Date(issued);
    const fraction = LIFETIME_FRACTION + (this.random() * 2 - 1) * JITTER_FRACTION;
    const target = issued + lifetime * fraction;
    const latest = expiresAt.getTime() - Math.min(MIN_LEAD_MS, lifetime * 0.2);
    return new Date(Math.max(issued, Math.min(target, latest)));
  }
}
